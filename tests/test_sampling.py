"""pulse.sampling's grids, and `pulse sample`, the command that draws them from a generator."""

import numpy as np
import torch
from click.testing import CliRunner
from PIL import Image

from pulse.cli.sample import sample_command
from pulse.sampling import image_grid


def test_image_grid_places_each_image_between_white_gaps():
    images = torch.rand(5, 3, 8, 6)
    grid = np.asarray(image_grid(images, columns=3, gap=2), dtype=np.float64) / 255
    assert grid.shape == (2 * (8 + 2) + 2, 3 * (6 + 2) + 2, 3)  # 2 rows of 3, gaps around every image
    for i, image in enumerate(images):
        top, left = 2 + (i // 3) * 10, 2 + (i % 3) * 8
        tile = grid[top:top + 8, left:left + 6].transpose(2, 0, 1)
        assert np.abs(tile - image.numpy()).max() <= 0.5 / 255 + 1e-6  # 8-bit rounding only
    assert (grid[:2] == 1).all() and (grid[12:, 2 * 8 + 2:] == 1).all()  # gaps and the empty sixth cell are white


def test_sample_writes_the_same_grid_for_the_same_seed(tiny_generator_file, tmp_path):
    def grid(seed, name):
        args = ["--generator", str(tiny_generator_file), "--n", "6", "--seed", str(seed), "--device", "cpu",
                "--out", str(tmp_path / name)]
        result = CliRunner().invoke(sample_command, args)
        assert result.exit_code == 0, result.output
        return Image.open(tmp_path / name)

    a, b, c = grid(0, "a.png"), grid(0, "b.png"), grid(1, "c.png")
    assert a.size == (3 * 34 + 2, 2 * 34 + 2)  # 3 columns x 2 rows of 32 px with 2 px gaps
    assert np.array_equal(np.asarray(a), np.asarray(b)) and not np.array_equal(np.asarray(a), np.asarray(c))
    missing = CliRunner().invoke(sample_command, ["--generator", str(tmp_path / "no.pt"), "--out", "x.png"])
    assert missing.exit_code == 2 and "generator file not found" in missing.output
    bundled = CliRunner().invoke(sample_command, ["--generator", "pulse-faces-128", "--n", "2", "--device", "cpu",
                                                  "--output", str(tmp_path / "bundled.png")])  # a registry name
    assert bundled.exit_code == 0, bundled.output
    assert Image.open(tmp_path / "bundled.png").size == (2 * 128 + 6, 128 + 4)  # two 128-px faces, 2-px gaps


def test_truncation_pulls_samples_towards_the_average_face(tiny_generator_file):
    from pulse.models.generator_file import load_generator
    from pulse.sampling import sample_images

    g = load_generator(tiny_generator_file).generator
    full, none = sample_images(g, 6, seed=3), sample_images(g, 6, seed=3, truncation=1.0)
    half, zero = sample_images(g, 6, seed=3, truncation=0.5), sample_images(g, 6, seed=3, truncation=0.0)
    assert torch.equal(full, none)
    spread = [x.std(0).mean().item() for x in (full, half, zero)]  # how much the faces differ from each other
    assert spread[0] > spread[1] > spread[2]
    args = ["--generator", str(tiny_generator_file), "--n", "2", "--truncation", "1.5", "--output", "x.png"]
    assert CliRunner().invoke(sample_command, args).exit_code == 2
