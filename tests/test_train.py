"""The trainer on tiny synthetic faces: steps, exact resume, export, fine-tuning, torchrun, bad input."""

import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import TINY
from pulse.training import checkpoint as checkpoint_module
from pulse.training.augment import ADA_INTERVAL, ada_step, diff_augment, parse_policy
from pulse.training.checkpoint import load_checkpoint, save_checkpoint
from pulse.cli import main as pulse_main
from pulse.training.dataset import DataOrder, FaceData
from pulse.training.discriminators import Discriminator, DiscriminatorConfig
from pulse.errors import PulseError
from pulse.imageio import load_image
from pulse.models.generator_file import load_generator, read_generator_file
from pulse.training.config import TrainConfig
from pulse.training.loop import Trainer, train
from pulse.cli.sample import sample_command
from pulse.cli.train import train_command

ARCH = dict(TINY, style_dim=32, channels=[32, 16, 16, 8])  # smaller than conftest's TINY: steps are the cost
STEPS_KIMG = 0.08  # 20 steps of 4 images
OPTIONS = dict(ARCH, batch=4, kimg=STEPS_KIMG, checkpoint_every=0.04, snapshot_every=0.032, log_every=0.004,
               fit_samples=2000, device="cpu", seed=3)
LOSSES = ("loss_g", "loss_d", "r1", "real_logit", "fake_logit")


def blob(rng, size=32, mode="RGB") -> Image.Image:
    """A coloured disc on a flat background: enough structure for D to tell real from noise."""
    y, x = np.mgrid[0:size, 0:size]
    cy, cx = rng.uniform(size / 4, 3 * size / 4, 2)
    inside = ((y - cy) ** 2 + (x - cx) ** 2 < rng.uniform(size / 8, size / 3) ** 2)[..., None]
    pixels = np.where(inside, rng.integers(0, 256, 3), rng.integers(0, 256, 3)).astype(np.uint8)
    return Image.fromarray(pixels).convert(mode)


def jpeg_bytes(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """24 PNGs in nested folders and a stored zip shard of 8 JPEGs named like the real shards."""
    root = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    for i in range(24):
        folder = root / f"part{i % 2}"
        folder.mkdir(exist_ok=True)
        blob(rng).save(folder / f"face{i:02d}.png")
    with zipfile.ZipFile(root / "train-00.zip", "w", zipfile.ZIP_STORED) as shard:
        for i in range(8):
            shard.writestr(f"celeba_{i:06d}.jpg", jpeg_bytes(blob(rng)))
    return root


@pytest.fixture(scope="module")
def full_run(faces, tmp_path_factory):
    """20 uninterrupted steps (the run folder); the checkpoint after 10 of them is kept as halfway.ckpt beside it.

    One trainer runs to 0.04 kimg, then on to 0.08: its state never leaves memory, so this is the uninterrupted
    run, and the copy of its step-10 checkpoint is what a resume starts from.
    """
    runs = tmp_path_factory.mktemp("runs")
    trainer = Trainer(TrainConfig(**dict(OPTIONS, data=[str(faces)], out=str(runs / "full"), kimg=STEPS_KIMG / 2)))
    trainer.run()
    shutil.copy(runs / "full" / "latest.ckpt", runs / "halfway.ckpt")
    trainer.config.kimg = STEPS_KIMG
    trainer.run()
    return runs / "full"


def read_log(run):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_twenty_steps_give_finite_losses_and_move_g_ema(faces, full_run):
    log = read_log(full_run)
    assert [entry["step"] for entry in log] == list(range(1, 21))
    assert all(np.isfinite(entry[k]) for entry in log for k in ("loss_g", "loss_d", "real_logit", "fake_logit"))
    assert [entry["r1"] is not None for entry in log].count(True) == 2  # lazy R1: steps 0 and 16
    trained = load_checkpoint(full_run / "latest.ckpt")
    assert (trained["progress"]["nimg"], trained["progress"]["step"]) == (80, 20)
    start = Trainer(TrainConfig(**dict(OPTIONS, data=[str(faces)], out=str(full_run)))).G_ema.state_dict()
    moved = [k for k, v in trained["G_ema"].items() if v.is_floating_point() and not torch.equal(v, start[k])]
    assert len(moved) > len(start) // 2
    grids = sorted(p.name for p in full_run.glob("samples-*.png"))
    assert grids == ["samples-000000.000kimg.png", "samples-000000.032kimg.png", "samples-000000.040kimg.png",
                     "samples-000000.064kimg.png", "samples-000000.080kimg.png"]


def test_learning_rates_given_with_resume_take_effect(full_run, tmp_path):
    """The optimizers' saved state holds the old rates; the ones given on the command line must win."""
    lines = []
    out = tmp_path / "slower"
    train({"kimg": STEPS_KIMG * 3 / 4, "out": str(out), "g_lr": 0.001, "d_lr": 0.0005},
          resume=full_run.parent / "halfway.ckpt", report=lines.append)
    latest = load_checkpoint(out / "latest.ckpt")
    assert [g["lr"] for g in latest["opt_G"]["param_groups"]] == [0.001]
    assert [g["lr"] for g in latest["opt_D"]["param_groups"]] == [0.0005]
    assert any("G learning rate 0.0025 at the checkpoint, 0.001 from here on" in line for line in lines)
    same = tmp_path / "same"
    train({"kimg": STEPS_KIMG * 3 / 4, "out": str(same)}, resume=full_run.parent / "halfway.ckpt")
    assert [g["lr"] for g in load_checkpoint(same / "latest.ckpt")["opt_G"]["param_groups"]] == [0.0025]


def test_snapshots_are_kept_while_latest_moves_on(full_run):
    snapshots = sorted(full_run.glob("snapshot-*.ckpt"))
    assert [p.name for p in snapshots] == ["snapshot-000000.032kimg.ckpt", "snapshot-000000.064kimg.ckpt"]
    kept = [load_checkpoint(p) for p in snapshots]
    assert [k["progress"]["nimg"] for k in kept] == [32, 64]
    latest = load_checkpoint(full_run / "latest.ckpt")
    assert not all(torch.equal(kept[0]["G_ema"][k], v) for k, v in latest["G_ema"].items())


def test_resume_reproduces_the_uninterrupted_run(full_run, tmp_path):
    out = tmp_path / "resumed"
    out.mkdir()
    # as if the run had crashed after logging step 20 but before its checkpoint: lines past step 10 go
    (out / "log.jsonl").write_text((full_run / "log.jsonl").read_text() + '{"kimg": 0.0')
    train({"kimg": STEPS_KIMG, "out": str(out)}, resume=full_run.parent / "halfway.ckpt",  # the rest: checkpoint's
          command="pulse train --resume halfway.ckpt")
    resumed, full = read_log(out), read_log(full_run)
    assert [e["step"] for e in resumed] == list(range(1, 21))
    assert [[e[k] for k in LOSSES] for e in resumed[10:]] == [[e[k] for k in LOSSES] for e in full[10:]]
    a, b = load_checkpoint(out / "latest.ckpt"), load_checkpoint(full_run / "latest.ckpt")
    assert all(torch.equal(a["G_ema"][k], b["G_ema"][k]) for k in a["G_ema"])
    history = load_generator(out / "generator.pt").metadata["training_commands"]  # the whole run, not the last leg
    assert history == [{"from_kimg": 0.0, "command": ""},
                       {"from_kimg": STEPS_KIMG / 2, "command": "pulse train --resume halfway.ckpt"}]
    old = torch.load(out / "latest.ckpt", weights_only=True)  # as version 1 wrote it: the last command only
    old["version"], old["run"]["command"] = 1, old["run"].pop("commands")[-1]["command"]
    torch.save(old, tmp_path / "v1.ckpt")
    assert load_checkpoint(tmp_path / "v1.ckpt")["run"]["commands"] == [
        {"from_kimg": None, "command": "pulse train --resume halfway.ckpt"}]


def test_export_writes_a_generator_that_renders_and_upsamples(full_run, tmp_path):
    result = CliRunner().invoke(train_command, ["export", str(full_run / "latest.ckpt"), "--out",
                                                str(tmp_path / "g.pt"), "--half", "--fit-samples", "3000",
                                                "--search-default", "loss=100*L2+0.01*GEOCROSS"])
    assert result.exit_code == 0, result.output
    payload = read_generator_file(tmp_path / "g.pt")
    assert payload["config"]["architecture"] == "stylegan2"  # the default
    assert {t.dtype for t in payload["state_dict"].values() if t.is_floating_point()} == {torch.float16}
    assert payload["gaussian_fit"]["samples"] == 3000
    meta = payload["metadata"]
    assert (meta["alignment"], meta["resolution"], meta["kimg"]) == ("ffhq", 32, STEPS_KIMG)
    assert "non-commercial research" in meta["licence"] and "32 images" in meta["data"]
    assert meta["search_defaults"] == {"loss": "100*L2+0.01*GEOCROSS"}
    info = CliRunner().invoke(pulse_main, ["weights", "info", str(tmp_path / "g.pt")])
    assert info.exit_code == 0, info.output
    assert "architecture: stylegan2, 32 px" in info.output and "stored as float16" in info.output
    assert "recommended search settings: loss=100*L2+0.01*GEOCROSS\n" in info.output
    assert "trained from 0 kimg" in info.output
    model = load_generator(tmp_path / "g.pt")
    image = model.generator(z=torch.randn(2, ARCH["style_dim"]))
    assert image.shape == (2, 3, 32, 32) and torch.isfinite(image).all()
    assert load_generator(full_run / "generator.pt").metadata["kimg"] == STEPS_KIMG  # written at the end

    from pulse.api import Upsampler

    results = Upsampler(generator=tmp_path / "g.pt", device="cpu").run([Image.new("RGB", (8, 8), (120, 90, 80))],
                                                                       scale=4, steps=5)
    assert results[0][0].image.size == (32, 32) and np.isfinite(results[0][0].lr_mse)

    bad = CliRunner().invoke(train_command, ["export", str(full_run / "latest.ckpt"), "--out", str(tmp_path / "h.pt"),
                                             "--search-default", "learning_rate=fast"])
    assert bad.exit_code == 2 and "'learning_rate=fast': 'fast' is not a valid float" in bad.output
    assert not (tmp_path / "h.pt").exists()


def test_init_starts_g_and_g_ema_from_the_generator_file(faces, tiny_generator_file, tmp_path):
    loaded = load_generator(tiny_generator_file)
    trainer = Trainer(TrainConfig(**dict(OPTIONS, data=[str(faces)], out=str(tmp_path))), init=loaded)
    file_state = loaded.generator.state_dict()
    for net in (trainer.G, trainer.G_ema):
        assert all(torch.equal(v, file_state[k]) for k, v in net.state_dict().items())
    trainer.train_step()
    assert not torch.equal(trainer.G.synthesis.torgb.weight, file_state["synthesis.torgb.weight"])
    with pytest.raises(PulseError, match="channels=64,32,16,8.*8,8,8,8"):
        train(dict(data=[str(faces)], out=str(tmp_path / "x"), channels=[8, 8, 8, 8]), init=tiny_generator_file)


def test_torchrun_two_processes_train_and_only_rank_zero_writes(faces, tmp_path):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "pulse",
               "train", "--data", str(faces), "--out", str(out), "--device", "cpu", "--kimg", "0.016",
               "--batch", "8", "--grad-accum", "2", "--log-every", "0.008", "--checkpoint-every", "0.008",
               "--fit-samples", "1000", "--resolution", "32", "--style-dim", "32", "--mapping-layers", "2",
               "--channels", "32,16,16,8"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("training ") == 1  # one process reports
    assert sorted(p.name for p in out.iterdir()) == ["generator.pt", "latest.ckpt", "log.jsonl",
                                                     "samples-000000.000kimg.png", "samples-000000.008kimg.png",
                                                     "samples-000000.016kimg.png"]
    assert [e["step"] for e in read_log(out)] == [1, 2]
    state = load_checkpoint(out / "latest.ckpt")
    assert len(state["processes"]) == 2 and state["progress"]["nimg"] == 16
    ranks = [s["rng"]["torch"] for s in state["processes"]]
    assert not torch.equal(*ranks)  # each process draws its own latents and augmentations


def test_ctrl_c_saves_a_checkpoint_that_resumes(faces, tmp_path):
    out = tmp_path / "stopped"
    command = [sys.executable, "-m", "pulse", "train", "--data", str(faces), "--out", str(out), "--device", "cpu",
               "--kimg", "100", "--batch", "4", "--log-every", "0.004", "--checkpoint-every", "50",
               "--resolution", "32", "--style-dim", "32", "--mapping-layers", "2", "--channels", "32,16,16,8"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # as from a terminal, whatever launched pytest (a background job starts with SIGINT ignored)
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while not ((out / "log.jsonl").is_file() and len(read_log(out)) >= 3):
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            pytest.fail(f"training did not log 3 steps: {process.communicate()[1][-2000:]}")
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    stderr = process.communicate(timeout=120)[1]
    assert process.returncode == 130 and "interrupted: at" in stderr and "--resume" in stderr, stderr[-2000:]
    state = load_checkpoint(out / "latest.ckpt")
    logged = read_log(out)
    assert state["progress"]["step"] == logged[-1]["step"] >= 3  # saved after the last finished step
    assert not (out / "generator.pt").exists()
    resumed = CliRunner().invoke(train_command, ["--resume", str(out / "latest.ckpt"), "--kimg",
                                                 str((state["progress"]["nimg"] + 8) / 1000), "--fit-samples", "1000"])
    assert resumed.exit_code == 0, resumed.output
    assert read_log(out)[-1]["step"] == state["progress"]["step"] + 2 and (out / "generator.pt").is_file()


def test_corrupt_shard_members_are_skipped_with_a_count(tmp_path):
    rng = np.random.default_rng(1)
    good = jpeg_bytes(blob(rng))
    with zipfile.ZipFile(tmp_path / "train-00.zip", "w", zipfile.ZIP_STORED) as shard:
        for i in range(3):
            shard.writestr(f"aaf_{i}.jpg", jpeg_bytes(blob(rng)))
        shard.writestr("aaf_truncated.jpg", good[: len(good) // 3])
        shard.writestr("aaf_garbage.jpg", b"not an image at all")
    cached = FaceData([tmp_path / "train-00.zip"], 32, cache_bytes=2**30)
    assert cached.cached and len(cached) == 3 and cached.counts.corrupt == 2
    assert "2 corrupt skipped" in cached.summary()
    streamed = FaceData([tmp_path], 32, cache_bytes=0)  # over budget: decoded batch by batch
    order = DataOrder(len(streamed), seed=0)
    batch = streamed.take(order, 8, "cpu")
    assert batch.shape == (8, 3, 32, 32) and batch.dtype == torch.uint8
    assert streamed.counts.corrupt == 2


def test_mixed_sizes_and_modes_become_rgb_at_the_resolution(tmp_path):
    rng = np.random.default_rng(2)
    blob(rng, 64).save(tmp_path / "big.png")
    blob(rng, 40, "L").save(tmp_path / "grey.png")
    blob(rng, 48, "RGBA").crop((0, 0, 48, 32)).save(tmp_path / "wide_alpha.png")
    blob(rng, 32, "P").save(tmp_path / "palette.png")
    data = FaceData([tmp_path], 32, cache_bytes=2**30)
    batch = data.take(DataOrder(len(data), seed=0), 4, "cpu")
    assert batch.shape == (4, 3, 32, 32)
    # 64 and 40 px resized; 48x32 cropped to 32x32 (no resize); L, RGBA and P converted
    assert (data.counts.resized, data.counts.cropped, data.counts.converted) == (2, 1, 3)


def test_training_decodes_images_exactly_as_inference_does(tmp_path):
    """Alpha on white and 16-bit scaling must match load_image, or G learns faces users never give it."""
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (32, 32, 4), dtype=np.uint8)
    rgba[..., 3] = np.linspace(0, 255, 32, dtype=np.uint8)  # a real gradient of transparency
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    Image.fromarray(rng.integers(0, 65536, (32, 32), dtype=np.uint16)).save(tmp_path / "deep.png")
    data = FaceData([tmp_path], 32, cache_bytes=2**30)
    assert data.cached and data.counts.converted == 2
    for source, pixels in zip(data.sources, data._images):
        with pytest.warns(UserWarning):
            expected = np.asarray(load_image(source.container))
        assert np.array_equal(pixels.permute(1, 2, 0).numpy(), expected), source


def test_data_order_is_a_permutation_per_epoch_and_resumes_exactly():
    order = DataOrder(10, seed=5)
    first, _ = order.next(10)
    assert sorted(first.tolist()) == list(range(10))
    order.next(3)
    saved = order.state_dict()
    expected, flips = order.next(12)
    again = DataOrder(10, seed=5)
    again.load_state_dict(saved)
    got, got_flips = again.next(12)
    assert torch.equal(got, expected) and torch.equal(got_flips, flips)


def test_augmentation_keeps_shape_and_passes_gradients():
    torch.manual_seed(0)
    x = torch.rand(6, 3, 32, 32, requires_grad=True)
    y = diff_augment(x, parse_policy("color,translation,cutout"))
    assert y.shape == x.shape
    y.square().sum().backward()
    assert x.grad.abs().sum() > 0
    cut = diff_augment(torch.ones(64, 3, 32, 32), ("cutout",))
    assert 0.15 < (cut == 0).float().mean() < 0.3  # a 16x16 hole, partly outside the image
    with pytest.raises(ValueError, match="unknown augmentation rotate"):
        parse_policy("color,rotate")


def test_discriminator_mirrors_the_generator_widths():
    d = Discriminator(DiscriminatorConfig(32, [64, 32, 16, 8]))
    assert d.from_rgb[0].weight.shape[0] == 8 and d.head[-1].weight.shape == (1, 64)
    assert d(torch.randn(6, 3, 32, 32)).shape == (6,)


def test_checkpoint_save_that_fails_keeps_the_previous_one(full_run, tmp_path, monkeypatch):
    latest = tmp_path / "latest.ckpt"
    latest.write_bytes((full_run / "latest.ckpt").read_bytes())
    before = latest.read_bytes()

    def disk_full(obj, path):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", disk_full)
    with pytest.raises(PulseError, match="No space left on device.*previous checkpoint is intact"):
        save_checkpoint(latest, {"progress": {}})
    assert latest.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["latest.ckpt"]


@pytest.mark.parametrize("args, message", [
    (["--data", "{faces}", "--resolution", "100"], "power of two"),
    (["--data", "{empty}"], "no training images found"),
    (["--data", "{missing}"], "no such data folder"),
    (["--data", "{faces}", "--batch", "6", "--grad-accum", "4"], "must be a multiple"),
    (["--resume", "{generator}"], "not a pulse training checkpoint"),
    (["--resume", "{checkpoint}", "--channels", "64,32,16,16"], "made with channels=32,16,16,8"),
    (["--data", "{faces}", "--out", "{run}"], "already holds a training run"),
])
def test_bad_input_is_one_clear_line(args, message, faces, full_run, tiny_generator_file, tmp_path):
    (tmp_path / "empty").mkdir()
    paths = dict(faces=faces, empty=tmp_path / "empty", missing=tmp_path / "nope", generator=tiny_generator_file,
                 checkpoint=full_run / "latest.ckpt", run=full_run)
    given = [a.format(**paths) for a in args]
    base = ["--out", str(tmp_path / "run"), "--device", "cpu", "--kimg", "0.004", "--batch", "4"]
    if "--resume" not in given:
        base += ["--resolution", "32", "--style-dim", "32", "--mapping-layers", "2", "--channels", "32,16,16,8"]
    result = CliRunner().invoke(train_command, base + given)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1]


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


def test_generator_metrics_go_into_the_log(faces, tmp_path):
    out = tmp_path / "measured"
    train(dict(OPTIONS, data=[str(faces)], out=str(out), kimg=0.032, metrics_every=0.016, metrics_samples=12,
               snapshot_every=0, checkpoint_every=0.032))
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    measured = [line for line in lines if "metrics" in line]
    assert [m["kimg"] for m in measured] == [0.016, 0.032]
    for m in measured:
        scores = m["metrics"]
        assert scores["samples"] == 12 and scores["reals"] == 12
        assert scores["fd"] > 0 and 0 <= scores["precision"] <= 1 and 0 <= scores["recall"] <= 1
        assert 0 <= scores["detected"] <= 1 and scores["diversity"] > 0
    assert all("loss_g" in line for line in lines if "metrics" not in line)  # loss lines keep their shape


def test_ada_controller_and_partial_augmentation():
    assert ada_step(0.0, real_sign=0.9, target=0.6, images=64) == pytest.approx(64 / 100_000)
    assert ada_step(0.0, real_sign=0.1, target=0.6, images=64) == 0.0  # never below 0
    assert ada_step(1.0, real_sign=0.9, target=0.6, images=64) == 1.0  # nor above 1
    x = torch.ones(400, 3, 16, 16)
    assert torch.equal(diff_augment(x, ("cutout",), p=0.0), x)
    cut = (diff_augment(x, ("cutout",), p=0.5) == 0).flatten(1).any(1).float().mean()
    assert 0.4 < cut < 0.6  # about half the images


def test_adaptive_augmentation_rises_while_d_is_sure_and_resumes(faces, tmp_path):
    # a target of 0.01: D calls the reals real from the first steps, so p must rise from 0
    train(dict(OPTIONS, data=[str(faces)], out=str(tmp_path / "ada"), kimg=0.064, ada_target=0.01,
               augment="color,translation,cutout", snapshot_every=0))
    logged = [e["augment_p"] for e in read_log(tmp_path / "ada") if "augment_p" in e]
    assert logged[0] == 0 and max(logged) > 0  # starts without augmentation, raised when D was sure
    step = OPTIONS["batch"] * ADA_INTERVAL / 100_000
    assert all(abs(round((b - a) / step) * step - (b - a)) < 1e-6 for a, b in zip(logged, logged[1:]))
    assert load_checkpoint(tmp_path / "ada" / "latest.ckpt")["progress"]["augment_p"] == pytest.approx(logged[-1])
