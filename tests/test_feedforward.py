"""The feed-forward methods behind the search's calls: API, `pulse run`/`restore`/`eval --method srresnet|srgan`, the registry's
sr-model entries. The network here is untrained (its output is exactly pulse's bicubic upscale), which makes
every number checkable against bicubic."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import pulse
from pulse.api import open_upsampler
from pulse.cli import main
from pulse.errors import EXIT_USAGE, PulseError
from pulse.evaluation.metrics import psnr
from pulse.feedforward import FeedForwardUpsampler
from pulse.imageio import pil_to_tensor, tensor_to_pil
from pulse.models.srresnet import SRResNet, SRResNetConfig, save_sr_model
from pulse.resample import resize
from pulse.weights.registry import load_registry


@pytest.fixture(scope="module")
def sr_file(tmp_path_factory):
    """An untrained x4 SR model for 32 px faces (8 px LR)."""
    path = tmp_path_factory.mktemp("sr") / "sr4.pt"
    torch.manual_seed(0)
    save_sr_model(path, SRResNet(SRResNetConfig(scale=4, channels=8, blocks=1)),
                  {"hr_size": 32, "lr_size": 8, "method": "srresnet"})
    return path


@pytest.fixture
def lr_faces(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "lr"
    folder.mkdir()
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    return folder


def bicubic(path, size):
    return tensor_to_pil(resize(pil_to_tensor(Image.open(path).convert("RGB")), size))


def test_untrained_network_delivers_bicubic_with_measured_consistency(sr_file, lr_faces):
    upsampler = open_upsampler("srresnet", sr_file, "cpu", scale=4)
    assert isinstance(upsampler, FeedForwardUpsampler) and upsampler.resolution == 32
    paths = sorted(lr_faces.iterdir())
    results = upsampler.run(paths, scale=4, eps=1.0)
    for path, (result,) in zip(paths, results):
        assert result.image.size == (32, 32)
        assert np.array_equal(np.asarray(result.image), np.asarray(bicubic(path, 32)))
        lr = pil_to_tensor(Image.open(path))
        mse = float((resize(pil_to_tensor(result.image), 8) - lr).pow(2).mean())
        assert result.lr_mse == pytest.approx(mse) and result.success and result.steps == 0


def test_api_upsample_with_method_srresnet(sr_file, lr_faces):
    image = pulse.upsample(lr_faces / "a.png", scale=4, generator=sr_file, device="cpu", method="srresnet")
    assert np.array_equal(np.asarray(image), np.asarray(bicubic(lr_faces / "a.png", 32)))


@pytest.mark.parametrize("request_, message", [
    (dict(samples=3), "samples 3: srresnet is deterministic"),
    (dict(scale=8), "enlarges x4 only, not x8"),
    (dict(steps=5), "steps: search options; srresnet does not search"),
])
def test_what_the_network_cannot_do_is_refused(sr_file, lr_faces, request_, message):
    upsampler = FeedForwardUpsampler(sr_file, scale=4, device="cpu")
    with pytest.raises(PulseError, match=message):
        upsampler.run([lr_faces / "a.png"], **{"scale": 4, **request_})


def test_both_methods_take_one_eps_per_image_or_one_for_all(sr_file, lr_faces, tiny_generator_file):
    """One shape behind both methods: a list of eps values must match the images, for the search as for srgan."""
    inputs = [lr_faces / "a.png", lr_faces / "b.png"]
    for upsampler in (FeedForwardUpsampler(sr_file, scale=4, device="cpu"),
                      pulse.Upsampler(tiny_generator_file, device="cpu")):
        with pytest.raises(PulseError, match="eps: 1 values for more images"):
            upsampler.run(inputs, scale=4, eps=[0.5], **({} if upsampler.method == "srresnet" else {"steps": 1}))
        loose, strict = (r[0].success for r in upsampler.run(
            inputs, scale=4, eps=[1.0, 1e-12], **({} if upsampler.method == "srresnet" else {"steps": 1})))
        assert loose and not strict, upsampler.method


def test_the_methods_share_what_is_below_them_and_not_each_other():
    import subprocess
    import sys

    code = "import sys, pulse.feedforward; print('pulse.api' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_stream_reports_a_bad_input_and_goes_on(sr_file, lr_faces):
    (lr_faces / "broken.png").write_bytes(b"\x89PNG garbage")
    inputs = [lr_faces / "a.png", lr_faces / "broken.png", lr_faces / "b.png"]
    found = dict(FeedForwardUpsampler(sr_file, scale=4, device="cpu").stream(inputs, scale=4))
    assert isinstance(found[1], PulseError) and "broken.png" in str(found[1])
    assert [r.image.size for r in found[0] + found[2]] == [(32, 32), (32, 32)]


def test_cli_run_method_srresnet_writes_marked_outputs_and_resumes(sr_file, lr_faces, tmp_path):
    out = tmp_path / "out"
    args = ["run", "--input", str(lr_faces), "--output", str(out), "--scale", "4", "--method", "srresnet",
            "--sr-model", str(sr_file), "--device", "cpu", "--eps", "1", "--grid"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in (out / "report.jsonl").read_text().splitlines()]
    assert {line["output"] for line in lines} == {"a.png", "b.png"}
    assert all(line["method"] == "srresnet" and line["made_with"]["method"] == "srresnet" for line in lines)
    assert Image.open(out / "a.png").size == (32, 32)
    assert Image.open(out / "grid" / "a.png").width == 3 * 32  # LR | bicubic | srresnet
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and "0 processed, 2 skipped" in again.stderr


@pytest.mark.parametrize("scale", [8, 4])
def test_the_bundled_networks_run_at_x8_and_x4_and_beat_bicubic(astronaut, tmp_path, scale):
    """Each method finds the registry's file for the scale (its sha256 in the report); each output is closer to
    the real face than bicubic's; a scale nothing was trained for is refused in one line, nothing written."""
    hr = resize(pil_to_tensor(astronaut.crop((150, 30, 330, 210))).unsqueeze(0), 128)
    lr = tmp_path / "lr"
    lr.mkdir()
    tensor_to_pil(resize(hr, 128 // scale)[0]).save(lr / "face.png")
    lr_face = pil_to_tensor(Image.open(lr / "face.png")).unsqueeze(0)
    bicubic_psnr = psnr(resize(lr_face, 128).clamp(0, 1)[0], hr[0])
    for method, name in (("srresnet", f"pulse-sr-x{scale}"), ("srgan", f"pulse-srgan-x{scale}")):
        out = tmp_path / method
        result = CliRunner().invoke(main, ["run", "--input", str(lr), "--output", str(out), "--scale", str(scale),
                                           "--method", method, "--device", "cpu"])
        assert result.exit_code == 0, result.output
        assert f"{method} ({name}.pt)" in result.stderr.splitlines()[0]
        (line,) = [json.loads(text) for text in (out / "report.jsonl").read_text().splitlines()]
        shipped = Path(__file__).resolve().parents[1] / "weights" / f"{name}.pt"
        assert line["method"] == method and line["success"]
        assert line["made_with"]["model_sha256"] == hashlib.sha256(shipped.read_bytes()).hexdigest()
        output = pil_to_tensor(Image.open(out / "face.png"))
        assert output.shape[-1] == 128 and psnr(output, hr[0]) > bicubic_psnr + 1, (method, psnr(output, hr[0]))
    refused = CliRunner().invoke(main, ["run", "--input", str(lr), "--output", str(tmp_path / "x2"), "--scale",
                                        "2", "--method", "srgan", "--device", "cpu"])
    assert refused.exit_code == EXIT_USAGE and "no srgan network for scale 2" in refused.stderr
    assert not (tmp_path / "x2" / "face.png").exists()


@pytest.mark.parametrize("scale", [8, 4])
def test_the_bundled_network_for_degraded_inputs_wins_on_them(astronaut, scale):
    """pulse-sr-xS-degraded against pulse-sr-xS on one real face degraded as `pulse eval --degraded` does it (four
    fixed draws of blur, resize, noise, JPEG): closer to the true face on average; on the clean input it still
    beats bicubic, and the default srresnet network is still pulse-sr-xS."""
    from pulse.training.degrade import degradation_generator, degrade

    hr = resize(pil_to_tensor(astronaut.crop((150, 30, 330, 210))).unsqueeze(0), 128)
    hr = pil_to_tensor(tensor_to_pil(hr[0]))  # 8-bit, as eval's faces
    names = (f"pulse-sr-x{scale}-degraded", f"pulse-sr-x{scale}")
    gains = []
    for draw in range(4):
        lr = degrade(hr[None], 128 // scale, degradation_generator(0, draw))[0]
        scores = [psnr(pil_to_tensor(pulse.upsample(lr, scale, method="srresnet", generator=name, device="cpu")), hr)
                  for name in names]
        gains.append(scores[0] - scores[1])
    assert np.mean(gains) > 0.3, gains
    clean = pil_to_tensor(tensor_to_pil(resize(hr[None], 128 // scale)[0].clamp(0, 1)))
    bicubic_psnr = psnr(resize(clean[None], 128).clamp(0, 1)[0], hr)
    out = pulse.upsample(clean, scale, method="srresnet", generator=names[0], device="cpu")
    assert psnr(pil_to_tensor(out), hr) > bicubic_psnr + 1
    from pulse.weights.resolve import open_sr_model

    assert Path(open_sr_model(None, scale).source).name == f"{names[1]}.pt"


@pytest.mark.parametrize("extra, message", [
    (["--steps", "5"], "--steps: search option(s); --method srresnet does not search"),
    (["--samples", "2"], "samples 2: srresnet is deterministic"),
    (["--scale", "8"], "enlarges x4 only, not x8"),
])
def test_cli_run_refuses_what_srresnet_cannot_do(sr_file, lr_faces, tmp_path, extra, message):
    args = ["run", "--input", str(lr_faces), "--output", str(tmp_path / "out"), "--scale", "4", "--method", "srresnet",
            "--sr-model", str(sr_file), "--device", "cpu", *extra]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == EXIT_USAGE and message in result.stderr
    assert not (tmp_path / "out" / "a.png").exists()


def test_cli_eval_scores_srresnet_as_a_row(sr_file, astronaut, tmp_path):
    data = tmp_path / "hr"
    data.mkdir()
    astronaut.crop((150, 30, 330, 210)).save(data / "face.png")
    out = tmp_path / "eval"
    result = CliRunner().invoke(main, ["eval", "--data", str(data), "--output", str(out), "--scale", "4",
                                       "--methods", "bicubic,srresnet", "--sr-model", str(sr_file), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    rows = {line.split(",")[1]: line.split(",") for line in (out / "metrics.csv").read_text().splitlines()[1:]}
    assert set(rows) == {"bicubic", "srresnet"}
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    psnr = header.index("psnr")
    assert rows["srresnet"][psnr] == rows["bicubic"][psnr]  # the untrained network is bicubic
    assert "| metric | bicubic | srresnet |" in (out / "summary.md").read_text()


def write_registry(folder, sr_file, extra=""):
    (folder / "sr4.pt").write_bytes(sr_file.read_bytes())
    (folder / "registry.toml").write_text(
        '[models.tiny-sr-x4]\nkind = "sr-model"\nmethod = "srresnet"\nresolution = 32\nscale = 4\nlicence = "test"\n'
        f'description = "test"\n{extra}\n[[models.tiny-sr-x4.files]]\nname = "sr4.pt"\npath = "sr4.pt"\n')
    return folder / "registry.toml"


def test_default_sr_model_is_the_registrys_for_the_scale(sr_file, tmp_path, monkeypatch):
    monkeypatch.setenv("PULSE_REGISTRY", str(write_registry(tmp_path, sr_file)))
    assert FeedForwardUpsampler(None, scale=4, device="cpu").scale == 4
    assert FeedForwardUpsampler("tiny-sr-x4", scale=4, device="cpu").scale == 4
    with pytest.raises(PulseError, match=r"no srresnet network for scale 2; the registry has: .*srresnet x4 \(tiny-sr"):
        FeedForwardUpsampler(None, scale=2, device="cpu")
    with pytest.raises(PulseError, match=r"no srgan network for scale 2; the registry has: .*srresnet x4 \(tiny-sr-x4\)"):
        FeedForwardUpsampler(None, scale=2, device="cpu", method="srgan")


def test_a_network_for_degraded_inputs_is_chosen_by_name_only(sr_file, tmp_path, monkeypatch):
    """A registry sr-model marked for degraded inputs never becomes the method's default, wherever it is listed;
    by name it runs, `pulse weights list` says how to choose it, and the field is checked."""
    path = write_registry(tmp_path, sr_file)
    clean = path.read_text()
    degraded = clean.replace("tiny-sr-x4", "tiny-sr-x4-degraded").replace('description = "test"\n',
                                                                         'description = "test"\ninputs = "degraded"\n')
    path.write_text(clean + "\n" + degraded)  # listed last: a last-one-wins lookup would take it
    monkeypatch.setenv("PULSE_REGISTRY", str(path))
    assert [m.inputs for m in load_registry(path).values()] == [None, "degraded"]
    assert FeedForwardUpsampler("tiny-sr-x4-degraded", scale=4, device="cpu").scale == 4
    from pulse.weights.resolve import open_sr_model

    monkeypatch.setattr("pulse.weights.resolve.locate", lambda model, cache: Path(f"/{model.name}"))
    with pytest.raises(PulseError, match="/tiny-sr-x4:"):  # the clean one is what the default reaches for
        open_sr_model(None, 4)
    with pytest.raises(PulseError, match="/tiny-sr-x4-degraded:"):
        open_sr_model("tiny-sr-x4-degraded", 4)
    monkeypatch.undo()
    monkeypatch.setenv("PULSE_REGISTRY", str(path))
    listed = CliRunner().invoke(main, ["weights", "list"]).output
    assert "for degraded inputs, chosen by name: --method srresnet --sr-model tiny-sr-x4-degraded" in listed
    path.write_text(clean.replace('description = "test"\n', 'description = "test"\ninputs = "blurry"\n'))
    with pytest.raises(PulseError, match="inputs \\(clean or degraded\\) is given for sr-model entries only"):
        load_registry(path)


def test_the_method_names_say_which_network_it_is(sr_file, lr_faces, tmp_path):
    """srresnet is the pixel-loss network, srgan the adversarially trained one: neither name runs the other."""
    with pytest.raises(PulseError, match="a pixel-loss \\(srresnet\\) network; use --method srresnet"):
        FeedForwardUpsampler(sr_file, scale=4, device="cpu", method="srgan")
    adversarial = tmp_path / "gan.pt"
    torch.manual_seed(0)
    save_sr_model(adversarial, SRResNet(SRResNetConfig(scale=4, channels=8, blocks=1)),
                  {"hr_size": 32, "lr_size": 8, "stage": "gan"})
    assert FeedForwardUpsampler(adversarial, scale=4, device="cpu", method="srgan").method == "srgan"
    with pytest.raises(PulseError, match="an adversarially trained \\(srgan\\) network; use --method srgan"):
        FeedForwardUpsampler(adversarial, scale=4, device="cpu")
    from pulse.weights.resolve import open_sr_model  # the benchmarks compare networks of both kinds side by side

    assert [open_sr_model(f, 4, method=None).method for f in (sr_file, adversarial)] == ["srresnet", "srgan"]
    base = ["run", "--input", str(lr_faces), "--output", str(tmp_path / "out"), "--scale", "4", "--device", "cpu"]
    wrong = CliRunner().invoke(main, [*base, "--method", "srresnet", "--generator", str(sr_file)])
    assert wrong.exit_code == EXIT_USAGE and "give the srresnet network with --sr-model" in wrong.stderr
    wrong = CliRunner().invoke(main, [*base, "--sr-model", str(sr_file)])
    assert wrong.exit_code == EXIT_USAGE and "pulse searches --generator" in wrong.stderr


def test_registry_sr_model_needs_its_scale(sr_file, tmp_path):
    path = write_registry(tmp_path, sr_file)
    path.write_text(path.read_text().replace("scale = 4\n", ""))
    with pytest.raises(PulseError, match="scale is given for sr-model and encoder entries, and only for them"):
        load_registry(path)
    path = write_registry(tmp_path, sr_file)
    path.write_text(path.read_text().replace('method = "srresnet"\n', 'method = "esrgan"\n'))
    with pytest.raises(PulseError, match="method \\(srresnet or srgan\\) is given for sr-model entries"):
        load_registry(path)


def test_weights_info_describes_an_sr_model_by_name_or_file(sr_file, tmp_path, monkeypatch):
    result = CliRunner().invoke(main, ["weights", "info", str(sr_file)])
    assert result.exit_code == 0 and "architecture: srresnet x4, width 8, 1 residual blocks" in result.output
    monkeypatch.setenv("PULSE_REGISTRY", str(write_registry(tmp_path, sr_file)))
    result = CliRunner().invoke(main, ["weights", "info", "tiny-sr-x4"])
    assert result.exit_code == 0 and "hr_size: 32" in result.output
