"""SRResNet: one design for x2, x4 and x8 (PixelShuffle stages), a fresh network is plain bicubic, and the SR
file round trip."""

import pytest
import torch

from pulse.errors import PulseError
from pulse.models.srresnet import SRResNet, SRResNetConfig, load_sr_model, save_sr_model
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
