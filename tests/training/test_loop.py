"""The trainer on tiny synthetic faces: steps, exact resume, fine-tuning, metrics, torchrun, Ctrl-C, and
`pulse train`'s one-line errors."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pulse.cli.train import train_command
from pulse.errors import PulseError
from pulse.models.generator_file import load_generator
from pulse.training.checkpoint import load_checkpoint
from pulse.training.config import TrainConfig
from pulse.training.discriminators import Discriminator, ResidualDiscriminator
from pulse.training.loop import Trainer, train

LOSSES = ("loss_g", "loss_d", "r1", "real_logit", "fake_logit")


def test_twenty_steps_give_finite_losses_and_move_g_ema(faces, full_run, train_options, read_log):
    log = read_log(full_run)
    assert [entry["step"] for entry in log] == list(range(1, 21))
    assert all(np.isfinite(entry[k]) for entry in log for k in ("loss_g", "loss_d", "real_logit", "fake_logit"))
    assert [entry["r1"] is not None for entry in log].count(True) == 2  # lazy R1: steps 0 and 16
    trained = load_checkpoint(full_run / "latest.ckpt")
    assert (trained["progress"]["nimg"], trained["progress"]["step"]) == (80, 20)
    start = Trainer(TrainConfig(**dict(train_options, data=[str(faces)], out=str(full_run)))).G_ema.state_dict()
    moved = [k for k, v in trained["G_ema"].items() if v.is_floating_point() and not torch.equal(v, start[k])]
    assert len(moved) > len(start) // 2
    grids = sorted(p.name for p in full_run.glob("samples-*.png"))
    assert grids == ["samples-000000.000kimg.png", "samples-000000.032kimg.png", "samples-000000.040kimg.png",
                     "samples-000000.064kimg.png", "samples-000000.080kimg.png"]


def test_learning_rates_given_with_resume_take_effect(full_run, tmp_path, steps_kimg):
    """The optimizers' saved state holds the old rates; the ones given on the command line must win."""
    lines = []
    out = tmp_path / "slower"
    train({"kimg": steps_kimg * 3 / 4, "out": str(out), "g_lr": 0.001, "d_lr": 0.0005},
          resume=full_run.parent / "halfway.ckpt", report=lines.append)
    latest = load_checkpoint(out / "latest.ckpt")
    assert [g["lr"] for g in latest["opt_G"]["param_groups"]] == [0.001]
    assert [g["lr"] for g in latest["opt_D"]["param_groups"]] == [0.0005]
    assert any("G learning rate 0.0025 at the checkpoint, 0.001 from here on" in line for line in lines)
    same = tmp_path / "same"
    train({"kimg": steps_kimg * 3 / 4, "out": str(same)}, resume=full_run.parent / "halfway.ckpt")
    assert [g["lr"] for g in load_checkpoint(same / "latest.ckpt")["opt_G"]["param_groups"]] == [0.0025]


def test_snapshots_are_kept_while_latest_moves_on(full_run):
    snapshots = sorted(full_run.glob("snapshot-*.ckpt"))
    assert [p.name for p in snapshots] == ["snapshot-000000.032kimg.ckpt", "snapshot-000000.064kimg.ckpt"]
    kept = [load_checkpoint(p) for p in snapshots]
    assert [k["progress"]["nimg"] for k in kept] == [32, 64]
    latest = load_checkpoint(full_run / "latest.ckpt")
    assert not all(torch.equal(kept[0]["G_ema"][k], v) for k, v in latest["G_ema"].items())


def test_resume_reproduces_the_uninterrupted_run(full_run, tmp_path, steps_kimg, read_log):
    out = tmp_path / "resumed"
    out.mkdir()
    # as if the run had crashed after logging step 20 but before its checkpoint: lines past step 10 go
    (out / "log.jsonl").write_text((full_run / "log.jsonl").read_text() + '{"kimg": 0.0')
    train({"kimg": steps_kimg, "out": str(out)}, resume=full_run.parent / "halfway.ckpt",  # the rest: checkpoint's
          command="pulse train --resume halfway.ckpt")
    resumed, full = read_log(out), read_log(full_run)
    assert [e["step"] for e in resumed] == list(range(1, 21))
    assert [[e[k] for k in LOSSES] for e in resumed[10:]] == [[e[k] for k in LOSSES] for e in full[10:]]
    a, b = load_checkpoint(out / "latest.ckpt"), load_checkpoint(full_run / "latest.ckpt")
    assert all(torch.equal(a["G_ema"][k], b["G_ema"][k]) for k in a["G_ema"])
    history = load_generator(out / "generator.pt").metadata["training_commands"]  # the whole run, not the last leg
    assert history == [{"from_kimg": 0.0, "command": ""},
                       {"from_kimg": steps_kimg / 2, "command": "pulse train --resume halfway.ckpt"}]
    old = torch.load(out / "latest.ckpt", weights_only=True)  # as version 1 wrote it: the last command only
    old["version"], old["run"]["command"] = 1, old["run"].pop("commands")[-1]["command"]
    torch.save(old, tmp_path / "v1.ckpt")
    assert load_checkpoint(tmp_path / "v1.ckpt")["run"]["commands"] == [
        {"from_kimg": None, "command": "pulse train --resume halfway.ckpt"}]


def test_init_starts_g_and_g_ema_from_the_generator_file(faces, tiny_generator_file, tmp_path, train_options):
    loaded = load_generator(tiny_generator_file)
    trainer = Trainer(TrainConfig(**dict(train_options, data=[str(faces)], out=str(tmp_path))), init=loaded)
    file_state = loaded.generator.state_dict()
    for net in (trainer.G, trainer.G_ema):
        assert all(torch.equal(v, file_state[k]) for k, v in net.state_dict().items())
    trainer.train_step()
    assert not torch.equal(trainer.G.synthesis.torgb.weight, file_state["synthesis.torgb.weight"])
    with pytest.raises(PulseError, match="channels=64,32,16,8.*8,8,8,8"):
        train(dict(data=[str(faces)], out=str(tmp_path / "x"), channels=[8, 8, 8, 8]), init=tiny_generator_file)


def test_discriminator_kind_and_widths_are_chosen_apart_from_the_generator(faces, tmp_path, train_options):
    options = dict(train_options, data=[str(faces)], out=str(tmp_path / "d"), architecture="stylegan1",
                   discriminator="residual", d_channels=[64, 48, 32, 24])
    trainer = Trainer(TrainConfig(**options))
    assert isinstance(trainer.D, ResidualDiscriminator)
    assert [getattr(trainer.D, f"b{res}").conv0.weight.shape[0] for res in (32, 16, 8)] == [24, 32, 48]
    trainer.train_step()
    assert isinstance(Trainer(TrainConfig(**dict(options, discriminator=None, d_channels=None))).D, Discriminator)
    with pytest.raises(PulseError, match="--d-channels 64,48: needs 4 positive widths"):
        TrainConfig(**dict(options, d_channels=[64, 48]))


def test_generator_metrics_go_into_the_log(faces, tmp_path, train_options):
    out = tmp_path / "measured"
    train(dict(train_options, data=[str(faces)], out=str(out), kimg=0.032, metrics_every=0.016, metrics_samples=12,
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


@pytest.mark.slow
def test_torchrun_two_processes_train_and_only_rank_zero_writes(faces, tmp_path, read_log):
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


def test_ctrl_c_saves_a_checkpoint_that_resumes(faces, tmp_path, read_log):
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


def test_a_projected_discriminator_trains_without_r1_by_default(faces, tmp_path, train_options, dlib_recognition_model):
    trainer = Trainer(TrainConfig(**dict(train_options, data=[str(faces)], out=str(tmp_path / "p"),
                                         discriminator="projected")))
    assert trainer.config.r1_gamma == 0
    heads = [p.clone() for p in trainer.D.heads.parameters()]
    trainer.train_step()
    assert all(torch.isfinite(p).all() for p in trainer.G.parameters())
    assert not any(torch.equal(a, b) for a, b in zip(heads, trainer.D.heads.parameters()))


def test_hybrid_discriminator_warmed_up_alone_leaves_g_untouched_until_then(faces, tmp_path, train_options,
                                                                            dlib_recognition_model):
    from pulse.training.projected import HybridDiscriminator

    options = dict(train_options, data=[str(faces)], out=str(tmp_path / "h"), discriminator="hybrid",
                   feature_weight=0.25, d_warmup_kimg=2 * train_options["batch"] / 1000)
    trainer = Trainer(TrainConfig(**options))
    assert isinstance(trainer.D, HybridDiscriminator) and trainer.D.features.image_head is None
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    trainer.D.eval()  # spectral norm's power iteration stands still
    assert torch.allclose(trainer.D(images), trainer.D.pixel(images) + 0.25 * trainer.D.features(images))
    trainer.D.train()
    g_before = {k: v.clone() for k, v in trainer.G.state_dict().items()}
    d_before = [p.clone() for p in trainer.D.parameters()]
    for _ in range(2):  # the warm-up: D learns, G and G_ema stay as they were
        trainer.train_step()
    for net in (trainer.G, trainer.G_ema):
        assert all(torch.equal(v, g_before[k]) for k, v in net.state_dict().items())
    assert not all(torch.equal(a, b) for a, b in zip(d_before, trainer.D.parameters()))
    trainer.train_step()
    assert not all(torch.equal(v, g_before[k]) for k, v in trainer.G.state_dict().items())
