"""SRResNet: one design for x2, x4 and x8 (PixelShuffle stages), a fresh network is plain bicubic, and the SR
file round trip."""

import pytest
import torch

from pulse.errors import PulseError
from pulse.models.srresnet import SRResNet, SRResNetConfig, UpsampleStage, load_sr_model, save_sr_model
from pulse.resample import resize


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_pixel_shuffle_stages_give_each_scale(scale):
    config = SRResNetConfig(scale=scale, channels=16, blocks=1)
    model = SRResNet(config)
    shuffles = [m for m in model.modules() if isinstance(m, torch.nn.PixelShuffle)]
    assert len(shuffles) == scale.bit_length() - 1  # one x2 stage per factor of two, the last one the tail's
    lr = torch.rand(2, 3, 16, 12)  # not square: the axes must not be swapped
    assert model(lr).shape == (2, 3, 16 * scale, 12 * scale)


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_untrained_network_is_bicubic(scale):
    torch.manual_seed(0)
    model = SRResNet(SRResNetConfig(scale=scale, channels=16, blocks=2, batch_norm=True)).eval()
    lr = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(lr), resize(lr, 8 * scale))


@pytest.mark.parametrize("config", [dict(scale=3), dict(scale=1), dict(channels=0), dict(blocks=-1)])
def test_bad_configs_are_refused(config):
    with pytest.raises(ValueError):
        SRResNetConfig(**config)


def test_sr_file_round_trip(tmp_path):
    torch.manual_seed(1)
    model = SRResNet(SRResNetConfig(scale=4, channels=16, blocks=1))
    torch.nn.init.normal_(model.tail[0].weight, std=0.01)  # not bicubic, so the weights matter
    path = save_sr_model(tmp_path / "sr.pt", model, {"method": "srgan", "scale": 4})
    loaded = load_sr_model(path)
    assert all(torch.equal(v, loaded.model.state_dict()[k]) for k, v in model.state_dict().items())
    lr = torch.rand(1, 3, 8, 8)
    with torch.no_grad():  # close, not equal: inference may run in another memory layout
        assert torch.allclose(loaded.super_resolve(lr), model(lr).clamp(0, 1), atol=1e-5)
    assert loaded.scale == 4 and loaded.metadata["method"] == "srgan"
    assert not any(p.requires_grad for p in loaded.model.parameters())
    with pytest.raises(PulseError, match="SR model file"):
        load_sr_model(tmp_path / "missing.pt")


def _period_two_pattern(x: torch.Tensor) -> float:
    """How far each 2×2 block is from its top-left pixel away from the zero-padded border: 0 for a nearest-
    neighbour ×2 image."""
    x = x[..., 2:-2, 2:-2]
    top_left = torch.nn.functional.interpolate(x[..., ::2, ::2], scale_factor=2, mode="nearest")
    return (x - top_left).abs().max().item()


@pytest.mark.parametrize("mode", ["pixelshuffle", "nearest"])
def test_icnr_or_nearest_stage_starts_free_of_the_sub_pixel_pattern(mode):
    torch.manual_seed(0)
    flat = torch.full((1, 8, 6, 6), 0.7)  # a constant input: any period-2 pattern comes from the stage itself
    stage = UpsampleStage(8, 4, mode, icnr=True)
    assert _period_two_pattern(stage(flat)) < 1e-6
    torch.manual_seed(0)
    assert _period_two_pattern(UpsampleStage(8, 4)(flat)) > 1e-2  # the default init draws the pattern


def test_icnr_network_keeps_the_default_parameter_layout():
    torch.manual_seed(0)
    plain = SRResNet(SRResNetConfig(scale=8, channels=32, blocks=1))
    icnr = SRResNet(SRResNetConfig(scale=8, channels=32, blocks=1, icnr=True))
    assert {k: v.shape for k, v in plain.state_dict().items()} == {k: v.shape for k, v in icnr.state_dict().items()}
    for stage in icnr.upsample:
        weight = stage[0].weight
        assert torch.equal(weight, weight[::4].repeat_interleave(4, dim=0))


def test_nearest_upsampling_is_refused_unless_named():
    with pytest.raises(ValueError, match="upsample"):
        SRResNetConfig(upsample="bilinear")
    model = SRResNet(SRResNetConfig(scale=4, channels=16, blocks=1, upsample="nearest"))
    assert model(torch.rand(1, 3, 8, 8)).shape == (1, 3, 32, 32)


def test_a_file_from_before_the_upsampling_options_still_loads(tmp_path):
    torch.manual_seed(2)
    model = SRResNet(SRResNetConfig(scale=4, channels=16, blocks=1))
    path = save_sr_model(tmp_path / "old.pt", model)
    payload = torch.load(path, weights_only=True)
    del payload["config"]["upsample"], payload["config"]["icnr"]  # what files written before them hold
    torch.save(payload, path)
    loaded = load_sr_model(path)
    assert loaded.model.config.upsample == "pixelshuffle" and not loaded.model.config.icnr
    assert all(torch.equal(v, loaded.model.state_dict()[k]) for k, v in model.state_dict().items())
