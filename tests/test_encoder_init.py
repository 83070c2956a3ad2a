"""Searches started from a latent encoder (``--init encoder``): in the search, the API, the commands and the
registry. The tiny encoder (``tiny_encoder_file``) was trained for x4 on the tiny generator and recommends 30 steps."""

import json
import shutil
import textwrap

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from pulse.api import Upsampler
from pulse.cli import main
from pulse.errors import EXIT_USAGE, PulseError
from pulse.imageio import quantize
from pulse.models.encoder import load_encoder
from pulse.models.generator_file import gaussian_fit, load_generator, save_generator
from pulse.resample import resize
from pulse.search import SearchOptions, initial_state, search
from pulse.weights import registry as weights_registry
from pulse.weights.download import sha256_file


def drawn_lr(generator_file, n, seed=42):
    """n 8 px LR faces the tiny generator drew itself (quantised as files are)."""
    g = load_generator(generator_file).generator
    with torch.no_grad():
        hr = (g(z=torch.randn(n, g.style_dim, generator=torch.Generator().manual_seed(seed))) + 1) / 2
    return quantize(resize(hr.clamp(0, 1), 8))


def test_the_encoder_start_reaches_eps_in_fewer_steps_on_the_generators_own_faces(tiny_generator_file,
                                                                                 tiny_encoder_file):
    model, encoder = load_generator(tiny_generator_file), load_encoder(tiny_encoder_file)
    lr = drawn_lr(tiny_generator_file, 10)
    steps = {}
    for init in ("random", "encoder"):
        needed = []
        for i in range(len(lr)):  # one face a search: early stop then counts this face's steps alone
            options = SearchOptions(steps=100, early_stop=True, init=init)
            start = encoder.encode(lr[i:i + 1]) if init == "encoder" else None
            result = search(model, lr[i:i + 1], [i], options, start=start)[0]
            needed.append(result.steps if result.success else 100)
        steps[init] = sum(needed) / len(needed)
    assert steps["encoder"] < 0.75 * steps["random"], steps


def test_each_sample_starts_near_the_encoders_latent_but_from_its_own_seed(tiny_generator_file):
    model = load_generator(tiny_generator_file)
    guess = torch.randn(1, 1, model.generator.style_dim).expand(3, -1, -1)
    options = SearchOptions(init="encoder", spread=0.3)
    latent, _, _ = initial_state(model, [0, 1, 2], options, "cpu", start=guess)
    direction = guess[0, 0] / guess[0, 0].norm()
    cosines = latent.detach() @ direction / latent.detach().norm(dim=-1)
    assert (cosines > 0.9).all()  # near the guess, on every style row
    assert not torch.equal(latent[0], latent[1]) and not torch.equal(latent[1], latent[2])
    torch.testing.assert_close(latent.norm(dim=-1), torch.full(latent.shape[:2], model.generator.style_dim ** 0.5))
    same, _, _ = initial_state(model, [0, 1], SearchOptions(init="encoder", spread=0.0), "cpu", start=guess[:2])
    torch.testing.assert_close(same[0], same[1])
    with pytest.raises(ValueError, match="init 'encoder' starts from the encoder's latents"):
        search(model, torch.rand(1, 3, 8, 8), [0], SearchOptions(init="encoder", steps=1))


def test_samples_after_the_first_keep_the_coarse_rows_and_draw_the_finer_ones_from_their_seed(tiny_generator_file):
    model = load_generator(tiny_generator_file)
    n_styles = model.generator.n_styles
    # a fixed guess: the test must not depend on the global RNG, i.e. on which tests ran before it
    guess = torch.randn(1, 1, model.generator.style_dim, generator=torch.Generator().manual_seed(0))
    guess = guess.expand(2, -1, -1)
    options = SearchOptions(init="encoder", guided_rows=2)
    latent, _, _ = initial_state(model, [5, 6], options, "cpu", start=guess, samples=[0, 1])
    first_alone, _, _ = initial_state(model, [5], options, "cpu", start=guess[:1])
    torch.testing.assert_close(latent[0], first_alone[0])  # the first sample: the encoder's face, every row guided
    direction = guess[0, 0] / guess[0, 0].norm()
    cosines = latent[1].detach() @ direction / latent[1].detach().norm(dim=-1)
    assert (cosines[:2] > 0.9).all() and (cosines[2:].abs() < 0.3).all(), cosines
    random_start, _, _ = initial_state(model, [6], SearchOptions(), "cpu")  # the same seed, started at random
    torch.testing.assert_close(latent[1, 2:], random_start[0, 2:] * model.generator.style_dim ** 0.5
                               / random_start[0, 2:].norm(dim=-1, keepdim=True))
    all_guided, _, _ = initial_state(model, [6], SearchOptions(init="encoder", guided_rows=n_styles), "cpu",
                                     start=guess[:1], samples=[1])
    assert (all_guided.detach() @ direction / all_guided.detach().norm(dim=-1) > 0.9).all()
    with pytest.raises(ValueError, match="guided_rows must be >= 0"):
        SearchOptions(guided_rows=-1)


def test_samples_after_the_first_differ_more_than_with_every_row_guided(tiny_generator_file, tiny_encoder_file):
    upsampler = Upsampler(tiny_generator_file, device="cpu", encoder=tiny_encoder_file)
    lr = drawn_lr(tiny_generator_file, 1)[0]

    def apart(**options):  # mean pixel distance between the samples after the first
        results = upsampler.run([lr], scale=4, samples=3, seed=0, steps=1, **options)[0]
        pixels = [torch.from_numpy(np.asarray(r.image, dtype=np.float32)) for r in results]
        return (pixels[1] - pixels[2]).abs().mean(), pixels[0]

    every_row = load_generator(tiny_generator_file).generator.n_styles
    (varied, first), (alike, first_too) = apart(), apart(guided_rows=every_row)
    assert varied > 1.5 * alike, (varied, alike)
    assert torch.equal(first, first_too)  # the first sample does not depend on the other samples' starts


def test_the_api_starts_from_the_given_encoder_with_its_settings_and_samples_still_differ(tiny_generator_file,
                                                                                        tiny_encoder_file):
    upsampler = Upsampler(tiny_generator_file, device="cpu", encoder=tiny_encoder_file)
    options = upsampler.search_options(4)
    assert (options.init, options.steps) == ("encoder", 30)  # the encoder's recommended steps
    assert upsampler.search_options(4, steps=7).steps == 7  # the user's win
    assert (upsampler.search_options(4, init="random").init, upsampler.search_options(4, init="random").steps) == (
        "random", 100)  # without the encoder, its settings do not apply either
    lr = drawn_lr(tiny_generator_file, 1)[0]
    results = upsampler.run([lr], scale=4, samples=3, seed=0, steps=5)[0]
    pixels = [torch.from_numpy(np.asarray(r.image, dtype=np.float32)) for r in results]
    assert all((a - b).abs().mean() > 1 for i, a in enumerate(pixels) for b in pixels[i + 1:])
    again = Upsampler(tiny_generator_file, device="cpu", encoder=load_encoder(tiny_encoder_file))
    same = again.run([lr], scale=4, samples=1, seed=0, steps=5)[0][0].image
    assert np.array_equal(np.asarray(same), np.asarray(results[0].image))  # same seed, same face


def test_an_encoder_for_another_generator_or_scale_is_refused_in_one_line(tiny_generator, tiny_encoder_file,
                                                                         tiny_generator_file, tmp_path):
    other = tiny_generator(seed=3)
    save_generator(tmp_path / "other.pt", other, gaussian_fit(other.mapping, other.style_dim, samples=1000), {})
    with pytest.raises(PulseError, match="an encoder for another generator .*not other.pt's"):
        Upsampler(tmp_path / "other.pt", device="cpu", encoder=tiny_encoder_file).search_options(4)
    with pytest.raises(PulseError, match="an encoder for x4, not x2"):
        Upsampler(tiny_generator_file, device="cpu", encoder=tiny_encoder_file).search_options(2)
    with pytest.raises(PulseError, match="init encoder: no encoder for tiny.pt at x4 is installed"):
        Upsampler(tiny_generator_file, device="cpu").search_options(4, init="encoder")


def write_encoder_registry(folder, encoder_file):
    """A registry beside a copy of the encoder that lists it as installed (shipped) for the tiny generator at x4."""
    shutil.copy(encoder_file, folder / "encoder.pt")
    path = folder / "registry.toml"
    path.write_text(textwrap.dedent(f"""
        [models.tiny-encoder-x4]
        kind = "encoder"
        resolution = 32
        scale = 4
        generator = "tiny"
        licence = "test"
        description = "the tiny test encoder"

        [[models.tiny-encoder-x4.files]]
        name = "encoder.pt"
        path = "encoder.pt"
        sha256 = "{sha256_file(encoder_file)}"
        size = {encoder_file.stat().st_size}
    """))
    return path


def test_an_installed_encoder_is_used_by_default_and_said(tiny_generator_file, tiny_encoder_file, tmp_path,
                                                          monkeypatch):
    monkeypatch.setenv(weights_registry.REGISTRY_ENV, str(write_encoder_registry(tmp_path, tiny_encoder_file)))
    folder = tmp_path / "lr"
    folder.mkdir()
    for i, face in enumerate(drawn_lr(tiny_generator_file, 2)):
        Image.fromarray((face.permute(1, 2, 0) * 255).round().byte().numpy()).save(folder / f"{i}.png")
    args = ["run", "--input", str(folder), "--scale", "4", "--generator", str(tiny_generator_file), "--device",
            "cpu", "--steps", "3"]
    result = CliRunner().invoke(main, [*args, "--output", str(tmp_path / "out")])
    assert result.exit_code in (0, 3), result.output
    assert "(3 steps from encoder encoder.pt)" in result.stderr.splitlines()[0]
    line = json.loads((tmp_path / "out" / "report.jsonl").read_text().splitlines()[-1])
    assert line["made_with"]["search"]["init"] == "encoder"
    assert line["made_with"]["encoder_sha256"] == sha256_file(tiny_encoder_file)

    result = CliRunner().invoke(main, [*args, "--output", str(tmp_path / "random"), "--init", "random"])
    assert "(3 steps from random starts)" in result.stderr.splitlines()[0]
    line = json.loads((tmp_path / "random" / "report.jsonl").read_text().splitlines()[-1])
    assert line["made_with"]["search"]["init"] == "random" and "encoder_sha256" not in line["made_with"]

    result = CliRunner().invoke(main, [*args, "--output", str(tmp_path / "early"), "--early-stop", "--eps", "1"])
    assert "(up to 3 steps, each face stopping once within eps from encoder encoder.pt)" in result.stderr.splitlines()[0]
    lines = [json.loads(text) for text in (tmp_path / "early" / "report.jsonl").read_text().splitlines()]
    assert [line["steps"] for line in lines if "steps" in line] == [1, 1]  # eps 1: every face is done at once

    listing = CliRunner().invoke(main, ["weights", "list"])
    assert "tiny-encoder-x4" in listing.output and "starts the searches of tiny at x4" in listing.output
    info = CliRunner().invoke(main, ["weights", "info", "tiny-encoder-x4"])
    assert info.exit_code == 0 and "latent encoder: 8 px LR" in info.output


def test_init_encoder_without_one_is_a_one_line_error(tiny_generator_file, tmp_path):
    Image.new("RGB", (8, 8), "grey").save(tmp_path / "a.png")
    result = CliRunner().invoke(main, ["run", "--input", str(tmp_path / "a.png"), "--output", str(tmp_path / "o"),
                                       "--scale", "4", "--generator", str(tiny_generator_file), "--init", "encoder"])
    assert result.exit_code == EXIT_USAGE
    assert result.stderr.strip() == ("error: init encoder: no encoder for tiny.pt at x4 is installed; train one with "
                                     "`pulse train-encoder` and pass it with --encoder FILE")
    result = CliRunner().invoke(main, ["run", "--input", str(tmp_path / "a.png"), "--output", str(tmp_path / "o"),
                                       "--method", "srresnet", "--encoder", "x.pt"])
    assert result.exit_code == EXIT_USAGE and "--encoder: search option(s); --method srresnet does not search" in (
        result.stderr)


def test_restore_and_eval_start_from_the_encoder(tiny_generator_file, tiny_encoder_file, tmp_path):
    from pulse.imageio import tensor_to_pil

    faces = tmp_path / "hr"
    faces.mkdir()
    g = load_generator(tiny_generator_file).generator
    with torch.no_grad():
        hr = (g(z=torch.randn(2, g.style_dim, generator=torch.Generator().manual_seed(5))) + 1) / 2
    for i, face in enumerate(hr.clamp(0, 1)):
        tensor_to_pil(face).save(faces / f"face{i}.png")
    result = CliRunner().invoke(main, ["eval", "--data", str(faces), "--scale", "4", "--output", str(tmp_path / "e"),
                                       "--generator", str(tiny_generator_file), "--encoder", str(tiny_encoder_file),
                                       "--methods", "bicubic,pulse", "--device", "cpu", "--grid-faces", "0"])
    assert result.exit_code == 0, result.output
    assert "pulse: 30 steps from encoder starts" in result.stdout


@pytest.mark.parametrize("scale", [8, 4])
def test_the_bundled_generator_starts_from_its_bundled_encoder_at_x8_and_x4(tmp_path, scale):
    """`pulse run` on the bundled generator picks the registry's encoder for the scale by itself, says so, takes
    its settings, and records the file's sha256; the encoder's face is nearer the input than random starts'."""
    from pathlib import Path

    from pulse.weights.resolve import resolve_file

    bundled = resolve_file(f"pulse-encoder-x{scale}")
    face = Image.open(Path(__file__).resolve().parents[1] / "examples" / "lr_faces" / "astronaut.png").convert("RGB")
    folder = tmp_path / "lr"
    folder.mkdir()
    face.resize((128 // scale,) * 2, Image.Resampling.BICUBIC).save(folder / "face.png")
    args = ["run", "--input", str(folder), "--scale", str(scale), "--device", "cpu", "--steps", "1", "--no-early-stop"]
    result = CliRunner().invoke(main, [*args, "--output", str(tmp_path / "enc")])
    assert result.exit_code in (0, 3), result.output
    assert f"(1 steps from encoder pulse-encoder-x{scale}.pt)" in result.stderr.splitlines()[0]
    line = json.loads((tmp_path / "enc" / "report.jsonl").read_text())
    assert line["made_with"]["encoder_sha256"] == sha256_file(bundled)
    assert line["made_with"]["search"]["noise_lr_scale"] == load_encoder(bundled).search_defaults["noise_lr_scale"]
    CliRunner().invoke(main, [*args, "--output", str(tmp_path / "random"), "--init", "random"])
    started = json.loads((tmp_path / "random" / "report.jsonl").read_text())
    assert line["lr_psnr"] > started["lr_psnr"] + 2, (line["lr_psnr"], started["lr_psnr"])
