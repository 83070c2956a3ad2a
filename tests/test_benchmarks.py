"""The GPU benchmarks run end to end on CPU, so a lent GPU's minutes are never lost to a broken script."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_script(name, *args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}  # this tree's pulse, not an installed one
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *map(str, args)], capture_output=True,
                          text=True, timeout=300, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_gpu_speed_batched_fp32_search_reproduces_the_reference_loop_face_by_face():
    out = run_script("gpu_speed.py", "--device", "cpu", "--arch", "compact128", "--batches", "1,2,auto",
                     "--steps", 3, "--reference-faces", 2, "--modes", "eager", "--precisions", "fp32")
    assert "--batch-size auto picks 8" in out
    rows = [line.split("|")[1:-1] for line in out.splitlines() if re.match(r"\| \d+ \| fp32", line)]
    assert [int(r[0]) for r in rows] == [1, 2, 8]
    # same start, same objective: pulse's rows equal PULSE's one-face loop (to print precision)
    assert all(r[-1].split()[0] in ("+0.00", "-0.00") for r in rows), rows
    assert re.search(r"headline \(compact128\): [\d.]+x the reference loop's faces/s", out)


def test_train_speed_runs():
    out = run_script("train_speed.py", "--device", "cpu", "--batch", 2, "--resolution", 32, "--seconds", 0.5,
                     "--warmup", 1)
    assert re.search(r"^[\d.]+ img/s \(\d+ steps", out, re.M)


def test_sr_speed_prints_a_row_per_batch():
    out = run_script("sr_speed.py", "--device", "cpu", "--batches", "1,4", "--seconds", 0.2)
    rows = [line.split("|")[1:-1] for line in out.splitlines() if re.match(r"\| \d+ \| \d+", line)]
    assert [int(r[0]) for r in rows] == [1, 4] and all(float(r[1]) > 0 for r in rows)
    assert "x8 (16 -> 128 px)" in out


def load_benchmark(name):
    """A benchmark script as a module; its folder on the path, as when it runs (they import each other)."""
    import importlib.util

    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sharpness_is_one_for_the_hr_images_and_low_for_blurred_ones():
    import torch

    from pulse.resample import resize

    module = load_benchmark("sr_artifacts")
    noise = torch.rand(4, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    kernel = torch.tensor([1.0, 4, 6, 4, 1]) / 16  # a mild binomial blur: detail left at every frequency
    blur = lambda x, k: torch.nn.functional.conv2d(x.reshape(-1, 1, 128, 128), k.outer(k)[None, None],
                                                   padding=len(k) // 2).reshape(x.shape)
    hr = blur(noise, kernel)
    assert module.sharpness_ratio(hr, hr, 8) == 1.0
    assert module.sharpness_ratio(hr.flip(-1), hr, 8) == pytest.approx(1.0, rel=1e-4)  # where, not how much
    wide = torch.ones(17) / 17  # 17-px box: passes almost nothing above 8 cycles per 128 px
    assert module.sharpness_ratio(blur(hr, wide), hr, 8) < 0.1
    bicubic = resize(resize(hr, 16), 128)  # what an SR network without any detail gives
    assert module.sharpness_ratio(bicubic, hr, 8) < 0.3
    assert 0.3 < module.sharpness_ratio(blur(hr, kernel), hr, 8) < 0.9  # a little blurrier: a little less
    assert module.sharpness_ratio(hr + 0.1 * torch.randn_like(hr), hr, 8) > 1.3  # invented noise counts too


def test_sr_artifacts_finds_a_grid_pattern_and_not_a_face(tmp_path):
    import torch
    from PIL import Image

    module = load_benchmark("sr_artifacts")
    smooth = torch.nn.functional.interpolate(torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0)),
                                             size=128, mode="bicubic", align_corners=False).clamp(0, 1)
    checker = (torch.arange(128) // 4 % 2).float()  # period 8 px: the LR grid of x8 from 16 px
    patterned = (smooth + 3 / 255 * (checker[:, None] + checker[None, :] - 1)).clamp(0, 1)
    plain, grid = module.periodic_share(smooth, 8), module.periodic_share(patterned, 8)
    assert (grid > 10 * plain).all(), (plain, grid)

    for k, image in enumerate(smooth):
        Image.fromarray((image.permute(1, 2, 0) * 255).round().byte().numpy()).save(tmp_path / f"{k}.png")
    out = run_script("sr_artifacts.py", "--data", tmp_path)
    rows = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| ") and "‰" not in line]
    assert rows[:2] == ["HR (the faces themselves)", "bicubic"] and rows[2].endswith("pulse-sr-x8.pt"), out
    sharpness = [float(line.split("|")[-2]) for line in out.splitlines() if line.startswith("| ") and "‰" not in line]
    assert sharpness[0] == 1.0 and sharpness[1] < 0.5, out


def test_sr_rule_names_what_fails(tmp_path, import_test_extra):
    import_test_extra("dlib", "dlib")
    module = load_benchmark("sr_rule")
    bicubic = {"psnr": 22.5, "same": 0.24, "detected": 0.66, "grid": 0.1, "sharpness": 0.04}
    good = {"psnr": 23.0, "same": 0.30, "detected": 0.98, "grid": 0.12, "sharpness": 0.8}
    assert module.verdict(good, bicubic, hr_grid=0.1) == "passes"
    assert module.verdict(dict(good, sharpness=0.42), bicubic, 0.1) == "fails: sharpness"
    assert module.verdict(dict(good, grid=0.14, psnr=22.0, detected=0.96), bicubic, 0.1) == (
        "fails: grid, PSNR, detected")
    assert module.verdict(dict(good, sharpness=1.31, same=0.2), bicubic, 0.1) == "fails: sharpness, same person"

    import torch
    from PIL import Image

    noise = torch.rand(2, 128, 128, 3, generator=torch.Generator().manual_seed(0))
    for k, image in enumerate(noise):
        Image.fromarray((image * 255).round().byte().numpy()).save(tmp_path / f"{k}.png")
    out = run_script("sr_rule.py", "--data", tmp_path, "--degraded")
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith(f"| {tmp_path.name}")]
    assert [(r[1].strip(), r[2].strip()[-14:]) for r in rows] == [
        ("clean", "bicubic"), ("clean", "pulse-sr-x8.pt"), ("degraded", "bicubic"), ("degraded", "pulse-sr-x8.pt")]
    assert "detected" in rows[1][-1] and rows[0][-1].strip() == rows[3][-1].strip() == ""  # noise is no face


def test_sr_degraded_figure_draws_each_face_clean_then_degraded(tmp_path):
    import torch
    from PIL import Image

    faces = tmp_path / "faces"
    faces.mkdir()
    noise = torch.rand(128, 128, 3, generator=torch.Generator().manual_seed(0))
    Image.fromarray((noise * 255).round().byte().numpy()).save(faces / "a.png")
    out = run_script("sr_degraded_figure.py", "--data", faces, "--faces", 1, "--out", tmp_path / "grid.png")
    rows = re.findall(r"a\.png (clean|degraded) (pulse-sr-x8(?:-degraded)?)\.pt: PSNR [0-9.]+ dB", out)
    assert rows == [("clean", "pulse-sr-x8"), ("clean", "pulse-sr-x8-degraded"),
                    ("degraded", "pulse-sr-x8"), ("degraded", "pulse-sr-x8-degraded")]
    assert Image.open(tmp_path / "grid.png").size == (5 * 128, 16 + 2 * 128)


def test_encoder_train_speed_prints_costs_and_the_recipes_hours():
    out = run_script("encoder_train_speed.py", "--layout", "pulse-compact-128", "--steps", 1, "--batch", 2,
                     "--real-batch", 1, "--device", "cpu")
    row = out.strip().splitlines()[-1]
    cells = [cell.replace(",", "").split() for cell in row.strip("| ").split(" | ")]
    assert [cell[1::2] for cell in cells] == [["ms", "GFLOP"], ["ms", "GFLOP"], ["h", "TFLOP"]]
    assert all(float(value) > 0 for cell in cells for value in cell[0::2])
