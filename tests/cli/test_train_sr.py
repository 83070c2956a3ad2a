"""`pulse train-sr`: a short run writes its checkpoint, log, grid and SR file; export; one-line errors."""

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pulse.cli import main
from pulse.errors import EXIT_OK, EXIT_USAGE
from pulse.models.srresnet import load_sr_model

# no perceptual term: the command works without the eval extra (tests/training tests the VGG16 trunk)
TINY = ["--scale", "2", "--hr-size", "32", "--channels", "8", "--blocks", "1", "--batch", "4", "--d-width", "8",
        "--perceptual-weight", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """Four 32-px images with a little structure (smooth gradients and a disc)."""
    folder = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:32, 0:32] / 31
    for i in range(4):
        base = np.stack([x, y, x * y], -1) * rng.uniform(0.3, 1, 3)
        disc = (y - rng.uniform(0.3, 0.7)) ** 2 + (x - rng.uniform(0.3, 0.7)) ** 2 < 0.04
        Image.fromarray(np.uint8(255 * np.where(disc[..., None], 1 - base, base))).save(folder / f"face{i}.png")
    return folder


def run(*args):
    return CliRunner().invoke(main, ["train-sr", *map(str, args)])


def test_a_short_run_writes_checkpoint_log_grid_and_sr_file(faces, tmp_path):
    out = tmp_path / "run"
    result = run("--data", faces, "--output", out, *TINY, "--kimg", "0.016", "--pixel-kimg", "0.008",
                 "--checkpoint-every", "0.008", "--log-every", "0.004")
    assert result.exit_code == EXIT_OK, result.output
    assert (out / "latest.ckpt").is_file() and len((out / "log.jsonl").read_text().splitlines()) == 6  # 4 + 2 metrics
    assert sorted(p.name for p in out.glob("samples-*.png")) == [
        "samples-000000.000kimg.png", "samples-000000.008kimg.png", "samples-000000.016kimg.png"]
    assert "gan  L1" in result.output and "psnr_bicubic" in result.output  # the status and metric lines
    model = load_sr_model(out / "sr.pt")
    assert (model.scale, model.metadata["lr_size"], model.metadata["stage"]) == (2, 16, "gan")
    assert model.metadata["training_commands"][0]["command"].startswith("pulse ")

    exported = run("export", out / "latest.ckpt", "--output", tmp_path / "half.pt", "--half")
    assert exported.exit_code == EXIT_OK, exported.output
    assert load_sr_model(tmp_path / "half.pt").scale == 2
    assert (tmp_path / "half.pt").stat().st_size < (out / "sr.pt").stat().st_size


@pytest.mark.parametrize("args, message", [
    (["--scale", "3"], "--scale 3: choose 2, 4 or 8"),
    (["--hr-size", "24"], "--hr-size 24: a power of two"),
    (["--perceptual-layers", "conv9"], "--perceptual-layers 'conv9': choose one or more of relu1_2"),
    (["--lr", "-1"], "--lr -1.0: out of range"),
])
def test_bad_options_are_one_line_errors(faces, tmp_path, args, message):
    result = run("--data", faces, "--output", tmp_path / "run", *TINY, *args)
    lines = result.output.strip().splitlines()
    assert result.exit_code == EXIT_USAGE and len(lines) == 1 and lines[0].startswith(f"error: {message}"), lines
    assert not (tmp_path / "run").exists()


def test_missing_data_and_options_before_export_are_usage_errors(tmp_path):
    assert "Missing option '--data'" in run("--output", tmp_path).output
    misplaced = run("--scale", "2", "export", tmp_path / "x.ckpt", "--output", tmp_path / "y.pt")
    assert misplaced.exit_code == EXIT_USAGE and "not before a subcommand" in misplaced.output
    missing = run("export", tmp_path / "x.ckpt", "--output", tmp_path / "y.pt")
    assert missing.exit_code == EXIT_USAGE and len(missing.output.strip().splitlines()) == 1
