"""The SR trainer on eight small photos: a tiny SRResNet overfits them, the GAN stage runs, resume is exact across
the stage boundary (with the stage-2 remedies too: U-Net D, LSGAN, EMA of G, D's own learning rate), Ctrl-C keeps
a resumable state; its losses, discriminators, EMA and VGG16 trunk."""

import contextlib
import signal
import sys
import types

import pytest
import torch
from PIL import Image

from pulse.errors import Interrupted, PulseError
from pulse.files import installed_package_file
from pulse.models.srresnet import load_sr_model
from pulse.resample import resize
from pulse.training import perceptual, sr_loop
from pulse.training.checkpoint import load_checkpoint, save_checkpoint
from pulse.training.discriminators import UNetDiscriminator, VGGDiscriminator
from pulse.training.ema import ema_keep, update_ema
from pulse.training.export import export_checkpoint
from pulse.training.loop import train
from pulse.training.losses import (
    d_least_squares_loss,
    d_relativistic_loss,
    g_least_squares_loss,
    g_relativistic_loss,
    lr_consistency_loss,
)
from pulse.training.sr_loop import SRTrainConfig, SRTrainer, export_sr_checkpoint, train_sr

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
          "camera")
STEPS_KIMG, PIXEL_KIMG = 0.04, 0.024  # 10 steps of 4 faces; the GAN stage from step 7


@pytest.fixture(scope="module")
def needs_vgg(fail_missing_test_extra):
    if installed_package_file(perceptual.VGG_PACKAGE, perceptual.VGG_WEIGHTS) is None:
        fail_missing_test_extra("stlpips-pytorch", "the VGG16 trunk of the perceptual loss not found")


@pytest.fixture(scope="module")
def photos(tmp_path_factory, import_test_extra):
    """Eight of scikit-image's photos, centre-cropped to 32 px (one greyscale): structure to learn, unlike noise."""
    data = import_test_extra("skimage.data", "scikit-image")
    folder = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        img = Image.fromarray(getattr(data, name)())
        side = min(img.size)
        left, top = (img.width - side) // 2, (img.height - side) // 2
        img.crop((left, top, left + side, top + side)).resize((32, 32), Image.Resampling.LANCZOS).save(
            folder / f"{name}.png")
    return folder


@pytest.fixture(scope="module")
def sr_options(photos):
    return dict(data=[str(photos)], scale=4, hr_size=32, channels=8, blocks=1, batch=4, d_width=8, seed=3,
                device="cpu", pixel_kimg=PIXEL_KIMG, log_every=0.004, checkpoint_every=0.02, snapshot_every=0.02)


@pytest.fixture(scope="module")
def straight(sr_options, tmp_path_factory, needs_vgg):
    """One uninterrupted run of 10 steps, 6 of L1 and 4 of the GAN stage (the run folder)."""
    out = tmp_path_factory.mktemp("sr") / "straight"
    train_sr(dict(sr_options, out=str(out), kimg=STEPS_KIMG))
    return out


REMEDIES = dict(discriminator="unet", gan_loss="lsgan", ema_kimg=0.008, d_lr=5e-5, upsample="pixelshuffle",
                icnr=True, degradation="realesrgan")


@pytest.fixture(scope="module")
def remedied(sr_options, tmp_path_factory, needs_vgg):
    """The same 10 steps with the stage-2 remedies and degraded inputs on (the run folder)."""
    out = tmp_path_factory.mktemp("sr") / "remedied"
    train_sr(dict(sr_options, out=str(out), kimg=STEPS_KIMG, **REMEDIES))
    return out


def test_a_clean_share_of_each_degraded_batch_keeps_the_clean_input(sr_options, tmp_path):
    from pulse.training.degrade import degradation_generator, degrade

    trainer = SRTrainer(SRTrainConfig(**dict(sr_options, out=str(tmp_path), degradation="realesrgan", clean_share=0.5)))
    hr = resize(torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(1)), 32)
    low = sr_loop.make_lr(hr, 8)
    given = trainer.inputs(hr, low)
    assert torch.equal(given[:2], low[:2])  # half the batch clean...
    assert torch.equal(given[2:], degrade(hr[2:], 8, degradation_generator(3, trainer.nimg)))  # ...the rest degraded
    assert not torch.equal(given[2:], low[2:])
    with pytest.raises(PulseError, match="--clean-share: every input is clean already"):
        SRTrainConfig(**dict(sr_options, out=str(tmp_path), clean_share=0.5))


def _losses(run, read_log):
    """The log's loss lines without the timings, and its metric lines."""
    lines = read_log(run)
    return ([{k: v for k, v in line.items() if k not in ("img_per_s", "wall_s")} for line in lines if "stage" in line],
            [line for line in lines if "metrics" in line])


def _tensors(state) -> list:
    """Every tensor of a (nested) state dict, as exact Python numbers, in order."""
    if isinstance(state, dict):
        return [_tensors(state[k]) for k in sorted(state, key=str)]
    if isinstance(state, (list, tuple)):
        return [_tensors(v) for v in state]
    return state.tolist() if isinstance(state, torch.Tensor) else state


def test_tiny_network_overfits_eight_faces_far_beyond_bicubic(sr_options, tmp_path):
    trainer = SRTrainer(SRTrainConfig(**dict(sr_options, out=str(tmp_path), batch=8, lr=2e-3, kimg=2.4,
                                             pixel_kimg=2.4)))
    for _ in range(300):
        trainer.train_step()
    scores = trainer.measure()  # on all eight faces, unmirrored
    assert scores["psnr"] >= scores["psnr_bicubic"] + 1.0, scores


def test_gan_stage_runs_and_logs_its_terms(straight, read_log):
    losses, metrics = _losses(straight, read_log)
    assert [line["step"] for line in losses] == list(range(1, 11))
    assert [line["stage"] for line in losses] == ["pixel"] * 6 + ["gan"] * 4
    gan_terms = ("adversarial", "perceptual", "loss_d", "real_logit", "fake_logit")
    assert all(term not in line for line in losses[:6] for term in gan_terms)
    assert all(torch.isfinite(torch.tensor(line[term])) for line in losses[6:] for term in gan_terms + ("pixel",))
    assert all(line["perceptual"] > 0 for line in losses[6:])
    assert [m["step"] for m in metrics] == [5, 10]
    assert set(metrics[-1]["metrics"]) == {"psnr", "psnr_bicubic", "lr_psnr"}
    checkpoint = load_checkpoint(straight / "latest.ckpt", kind="srgan")
    assert checkpoint["kind"] == "srgan" and "D" in checkpoint and checkpoint["progress"]["nimg"] == 40
    assert sorted(p.name for p in straight.glob("snapshot-*.ckpt")) == ["snapshot-000000.020kimg.ckpt",
                                                                          "snapshot-000000.040kimg.ckpt"]
    grids = sorted(straight.glob("samples-*.png"))
    assert [p.name for p in grids] == ["samples-000000.000kimg.png", "samples-000000.020kimg.png",
                                       "samples-000000.040kimg.png"]
    assert Image.open(grids[-1]).size == (4 * 64, 16 + 8 * 64)  # LR | bicubic | SR | HR, eight faces
    model = load_sr_model(straight / "sr.pt")
    assert model.scale == 4
    assert {k: model.metadata[k] for k in ("method", "scale", "lr_size", "hr_size", "stage", "kimg")} == dict(
        method="srgan", scale=4, lr_size=8, hr_size=32, stage="gan", kimg=0.04)
    assert "non-commercial" in model.metadata["licence"] and model.metadata["training_commands"]


@pytest.mark.parametrize("halfway", [0.012, 0.032], ids=["resumed-before-the-gan-stage", "resumed-within-it"])
def test_resume_is_exact_across_the_stage_boundary(straight, sr_options, tmp_path, halfway, read_log):
    out = tmp_path / "legs"
    train_sr(dict(sr_options, out=str(out), kimg=halfway))
    train_sr({"kimg": STEPS_KIMG}, resume=out / "latest.ckpt")
    expected, resumed = load_checkpoint(straight / "latest.ckpt", kind="srgan"), load_checkpoint(out / "latest.ckpt", kind="srgan")
    for name in ("G", "D", "opt_G", "opt_D"):
        assert _tensors(resumed[name]) == _tensors(expected[name]), name
    assert _losses(out, read_log)[0] == _losses(straight, read_log)[0]  # the log, too, as if never stopped
    assert [c["from_kimg"] for c in resumed["run"]["commands"]] == [0.0, halfway]


def test_remedies_resume_exactly_and_export_the_average(remedied, sr_options, tmp_path, read_log):
    out = tmp_path / "legs"
    train_sr(dict(sr_options, out=str(out), kimg=0.032, **REMEDIES))
    train_sr({"kimg": STEPS_KIMG}, resume=out / "latest.ckpt")
    expected, resumed = (load_checkpoint(run / "latest.ckpt", kind="srgan") for run in (remedied, out))
    for name in ("G", "G_ema", "D", "opt_G", "opt_D"):
        assert _tensors(resumed[name]) == _tensors(expected[name]), name
    assert _losses(out, read_log)[0] == _losses(remedied, read_log)[0]
    assert any(".parametrizations.weight." in key for key in expected["D"])  # the U-Net, spectrally normalised
    assert expected["opt_D"]["param_groups"][0]["lr"] == 5e-5 and expected["opt_G"]["param_groups"][0]["lr"] == 2e-4
    assert _tensors(expected["G_ema"]) != _tensors(expected["G"])
    exported = load_sr_model(remedied / "sr.pt")  # what ships is the average, not the last step's weights
    assert _tensors(exported.model.state_dict()) == _tensors(expected["G_ema"])
    assert exported.model.config.icnr and "LSGAN" in exported.metadata["trainer"]
    assert "EMA of G" in exported.metadata["trainer"] and "Real-ESRGAN" in exported.metadata["trainer"]
    again = load_sr_model(export_sr_checkpoint(remedied / "latest.ckpt", tmp_path / "again.pt"))
    assert _tensors(again.model.state_dict()) == _tensors(expected["G_ema"])


def test_a_run_that_turns_the_ema_on_starts_it_from_g(straight, tmp_path):
    leg = SRTrainer(SRTrainConfig(**dict(load_checkpoint(straight / "latest.ckpt", kind="srgan")["config"],
                                         out=str(tmp_path), ema_kimg=1.0)),
                    load_checkpoint(straight / "latest.ckpt", kind="srgan"))
    assert _tensors(leg.G_ema.state_dict()) == _tensors(leg.G.state_dict())


def test_ema_math():
    assert ema_keep(16, 16) == 0.5 and ema_keep(16, 32) == pytest.approx(0.5**0.5) and ema_keep(16, 0) == 0.0
    average, model = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        average.weight.fill_(1.0), model.weight.fill_(5.0)
    update_ema(average, model, keep=0.75)
    assert torch.equal(average.weight, torch.full((1, 2), 2.0))  # 0.75 · 1 + 0.25 · 5


def test_a_stop_request_saves_a_checkpoint_and_says_how_to_resume(sr_options, tmp_path, monkeypatch):
    asked = []

    @contextlib.contextmanager
    def stop_requests(enabled):  # as Ctrl-C would fill it, after the third step
        yield asked

    monkeypatch.setattr(sr_loop, "stop_requests", stop_requests)
    step = SRTrainer.train_step

    def step_then_ask(self):
        step(self)
        if self.step == 3:
            asked.append(signal.SIGINT)

    monkeypatch.setattr(SRTrainer, "train_step", step_then_ask)
    with pytest.raises(Interrupted, match="--resume .*latest.ckpt"):
        train_sr(dict(sr_options, out=str(tmp_path), kimg=0.04, pixel_kimg=0.04))
    assert load_checkpoint(tmp_path / "latest.ckpt", kind="srgan")["progress"]["step"] == 3
    assert not (tmp_path / "sr.pt").exists()


def test_options_are_checked_before_any_work(sr_options, tmp_path, straight):
    for bad, message in [(dict(scale=3), "--scale 3"), (dict(hr_size=48), "--hr-size 48"),
                         (dict(perceptual_layers="relu9_9"), "relu9_9"), (dict(batch=0), "--batch 0")]:
        with pytest.raises(PulseError, match=message):
            SRTrainConfig(**dict(sr_options, out=str(tmp_path), **bad))
    with pytest.raises(PulseError, match="made with channels=8, but this run asks for 16"):
        train_sr({"channels": 16}, resume=straight / "latest.ckpt")
    with pytest.raises(PulseError, match="already holds a training run"):
        train_sr(dict(sr_options, out=str(straight)))
    gan = save_checkpoint(tmp_path / "gan.ckpt", {"config": {}, "run": {"commands": []}})
    with pytest.raises(PulseError, match="a `pulse train` checkpoint; use it with `pulse train --resume`"):
        train_sr({}, resume=gan)
    # and the other way round: `pulse train` and its export refuse an SR checkpoint in one line
    with pytest.raises(PulseError, match="a `pulse train-sr` checkpoint; use it with `pulse train-sr --resume`"):
        export_checkpoint(straight / "latest.ckpt", tmp_path / "g.pt")
    with pytest.raises(PulseError, match="a `pulse train-sr` checkpoint"):
        train({}, resume=straight / "latest.ckpt")


def test_relativistic_losses():
    real, fake = torch.tensor([2.0, 1.0, 3.0]), torch.tensor([-1.0, 0.5, 0.0])
    assert g_relativistic_loss(real, fake) == d_relativistic_loss(fake, real)  # the same game, roles swapped
    assert d_relativistic_loss(real, fake) < d_relativistic_loss(fake, real)
    zeros = torch.zeros(4)
    assert d_relativistic_loss(zeros, zeros).item() == pytest.approx(torch.log(torch.tensor(2.0)).item())


def test_least_squares_losses():
    real, fake = torch.tensor([1.0, 1.0]), torch.tensor([0.0, 0.0])
    assert d_least_squares_loss(real, fake).item() == 0.0  # D hits both targets
    assert g_least_squares_loss(real, fake).item() == 0.5  # ½ (0 − 1)²
    assert d_least_squares_loss(fake, real).item() == 1.0  # ½ · 1 + ½ · 1
    assert g_least_squares_loss(real, real).item() == 0.0
    assert g_least_squares_loss(real, torch.tensor([3.0, -1.0])).item() == pytest.approx((4 + 4) / 4)


def test_lr_consistency_is_zero_for_the_hr_face_itself():
    hr = torch.rand(2, 3, 32, 32)
    assert lr_consistency_loss(hr, resize(hr, 8)).item() == pytest.approx(0.0, abs=1e-7)
    assert lr_consistency_loss(hr.flip(-1), resize(hr, 8)).item() > 0.01


@pytest.mark.parametrize("resolution", [32, 128])
def test_vgg_discriminator_gives_one_logit_per_image(resolution):
    D = VGGDiscriminator(resolution, width=8)
    assert D(torch.rand(3, 3, resolution, resolution) * 2 - 1).shape == (3,)
    with pytest.raises(ValueError):
        VGGDiscriminator(48)
    sn = VGGDiscriminator(resolution, width=8, spectral_norm=True)  # SN-GAN's form: every layer normalised, no BN
    assert sn(torch.rand(3, 3, resolution, resolution) * 2 - 1).shape == (3,)
    layers = [m for m in sn.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert all(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in layers)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in sn.modules())


def test_unet_discriminator_gives_a_logit_per_pixel_and_is_spectrally_normalised():
    torch.manual_seed(0)
    D = UNetDiscriminator(width=4)
    assert D(torch.rand(2, 3, 32, 24) * 2 - 1).shape == (2, 32, 24)
    normalised = [m for m in D.modules() if torch.nn.utils.parametrize.is_parametrized(m, "weight")]
    assert len(normalised) == 8  # all but the first and the last conv
    for _ in range(30):  # power iterations, as training runs them
        D(torch.rand(1, 3, 16, 16))
    D.eval()
    for conv in normalised:  # each layer's weight, as a matrix, then has a largest singular value of one
        assert torch.linalg.matrix_norm(conv.weight.flatten(1), ord=2).item() == pytest.approx(1.0, abs=0.02)
    with pytest.raises(ValueError, match="multiples of 8"):
        D(torch.rand(1, 3, 20, 20))


@pytest.mark.usefixtures("needs_vgg")
def test_vgg_trunk_loads_strictly_and_equals_the_packages_own(monkeypatch, import_test_extra):
    for name, stub in {"torchsummary": {"summary": None}, "IPython": {"embed": None}}.items():
        try:
            __import__(name)
        except ImportError:  # undeclared imports of stlpips-pytorch, never called on this path
            monkeypatch.setitem(sys.modules, name, types.SimpleNamespace(**stub))
    networks = import_test_extra("stlpips_pytorch.invariant_networks", "stlpips-pytorch")
    reference = networks.vggnet(variant="shift_tolerant")
    path = installed_package_file(perceptual.VGG_PACKAGE, perceptual.VGG_WEIGHTS)
    state = torch.load(path, map_location="cpu", weights_only=True)
    reference.load_state_dict({k[len("net."):]: v for k, v in state.items() if k.startswith("net.")})
    trunk = perceptual.load_vgg_trunk()  # strict: every weight of the trunk, nothing else
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    scaled = ((2 * images - 1) - trunk.scaling_layer.shift) / trunk.scaling_layer.scale
    with torch.no_grad():
        assert all(torch.equal(ours, theirs) for ours, theirs in zip(trunk(images), reference(scaled)))


@pytest.mark.usefixtures("needs_vgg")
def test_perceptual_loss_is_zero_for_the_same_image_and_grows_with_blur():
    loss = perceptual.PerceptualLoss()
    hr = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    mild, strong = resize(resize(hr, 24), 32), resize(resize(hr, 8), 32)
    with torch.no_grad():
        assert loss(hr, hr).item() == pytest.approx(0.0, abs=1e-6)
        assert 0 < loss(mild, hr).item() < loss(strong, hr).item()


def test_a_missing_vgg_trunk_names_the_package(monkeypatch):
    monkeypatch.setattr(perceptual, "installed_package_file", lambda package, relative: None)
    with pytest.raises(PulseError, match=r'stlpips-pytorch: pip install "pulse\[eval\]"'):
        perceptual.load_vgg_trunk()


def test_init_starts_from_an_sr_files_network_and_takes_its_architecture(straight, sr_options, tmp_path):
    """--init: the run's network starts as the file's (the GAN stage at once with pixel_kimg 0), its network
    options come from the file, and one that contradicts it is refused before any work."""
    start = load_sr_model(export_sr_checkpoint(straight / "latest.ckpt", tmp_path / "start.pt"))
    options = {k: v for k, v in sr_options.items() if k not in ("channels", "blocks")}
    given = dict(options, out=str(tmp_path / "tuned"), init=str(tmp_path / "start.pt"), pixel_kimg=0, kimg=0.004,
                 perceptual_weight=0)
    config = sr_loop.resolve_sr_config(sr_loop.init_options(given))
    assert (config.channels, config.blocks, config.scale) == (8, 1, 4)
    trainer = SRTrainer(config)
    assert _tensors(trainer.G.state_dict()) == _tensors(start.model.state_dict())
    tuned = load_sr_model(train_sr(given))
    assert tuned.method == "srgan" and "started from start.pt" in tuned.metadata["trainer"]
    assert _tensors(tuned.model.state_dict()) != _tensors(start.model.state_dict())  # one GAN step moved it
    with pytest.raises(PulseError, match="its network has channels=8, but this run asks for 16"):
        train_sr(dict(given, out=str(tmp_path / "other"), channels=16))
    notes = []  # another upsampling: the head, body and output conv come from the file, the x2 stage starts fresh
    nearest = SRTrainer(sr_loop.resolve_sr_config(sr_loop.init_options(dict(given, upsample="nearest"))),
                        report=notes.append)
    theirs, ours = start.model.state_dict(), nearest.G.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours if k.startswith(("head", "body", "tail")))
    assert "upsample.0.1.weight" in ours and "upsample.0.1.weight" not in theirs
    assert any("of the" in note and "start fresh" in note for note in notes)
