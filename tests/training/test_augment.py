import pytest
import torch

from pulse.training.augment import ADA_INTERVAL, ada_step, diff_augment, parse_policy
from pulse.training.checkpoint import load_checkpoint
from pulse.training.loop import train


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


def test_ada_controller_and_partial_augmentation():
    assert ada_step(0.0, real_sign=0.9, target=0.6, images=64) == pytest.approx(64 / 100_000)
    assert ada_step(0.0, real_sign=0.1, target=0.6, images=64) == 0.0  # never below 0
    assert ada_step(1.0, real_sign=0.9, target=0.6, images=64) == 1.0  # nor above 1
    x = torch.ones(400, 3, 16, 16)
    assert torch.equal(diff_augment(x, ("cutout",), p=0.0), x)
    cut = (diff_augment(x, ("cutout",), p=0.5) == 0).flatten(1).any(1).float().mean()
    assert 0.4 < cut < 0.6  # about half the images


def test_adaptive_augmentation_rises_while_d_is_sure_and_resumes(faces, tmp_path, train_options, read_log):
    # a target of 0.01: D calls the reals real from the first steps, so p must rise from 0
    train(dict(train_options, data=[str(faces)], out=str(tmp_path / "ada"), kimg=0.064, ada_target=0.01,
               augment="color,translation,cutout", snapshot_every=0))
    logged = [e["augment_p"] for e in read_log(tmp_path / "ada") if "augment_p" in e]
    assert logged[0] == 0 and max(logged) > 0  # starts without augmentation, raised when D was sure
    step = train_options["batch"] * ADA_INTERVAL / 100_000
    assert all(abs(round((b - a) / step) * step - (b - a)) < 1e-6 for a, b in zip(logged, logged[1:]))
    assert load_checkpoint(tmp_path / "ada" / "latest.ckpt")["progress"]["augment_p"] == pytest.approx(logged[-1])
