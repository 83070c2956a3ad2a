import pytest
import torch

from pulse.errors import PulseError
from pulse.models.encoder import (
    EncoderConfig,
    LatentEncoder,
    describe_encoder,
    load_encoder,
    save_encoder,
)

SHA = "ab" * 32


@pytest.mark.parametrize("lr_size", [4, 8, 16, 32])
def test_the_encoder_maps_any_lr_size_to_one_latent_on_the_search_sphere(lr_size):
    encoder = LatentEncoder(EncoderConfig(lr_size, style_dim=24, channels=[8, 16], hidden=32))
    latent = encoder(torch.rand(3, 3, lr_size, lr_size))
    assert latent.shape == (3, 1, 24)
    torch.testing.assert_close(latent.norm(dim=-1), torch.full((3, 1), 24 ** 0.5))


def test_an_lr_size_that_is_not_a_power_of_two_is_refused():
    with pytest.raises(ValueError, match="power of two"):
        EncoderConfig(12, style_dim=8)


def test_an_encoder_file_keeps_weights_generator_scale_and_settings(tmp_path):
    torch.manual_seed(0)
    encoder = LatentEncoder(EncoderConfig(8, style_dim=16, channels=[8, 16], hidden=32)).eval()
    path = save_encoder(tmp_path / "enc.pt", encoder, SHA, 4, {"steps": 20}, {"name": "t"})
    loaded = load_encoder(path)
    lr = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(loaded.encode(lr), encoder(lr).detach())
    assert (loaded.generator_sha256, loaded.scale, loaded.search_defaults) == (SHA, 4, {"steps": 20})
    assert loaded.encode(torch.rand(2, 3, 16, 16)).shape == (2, 1, 16)  # another LR size: resized to its own
    text = "\n".join(describe_encoder(path))
    assert "8 px LR -> a 16-d latent, x4" in text and SHA in text and "steps=20" in text

    half = load_encoder(save_encoder(tmp_path / "half.pt", encoder, SHA, 4, {}, half=True))
    assert (half.encode(lr) - encoder(lr)).abs().max() < 0.05


def test_an_encoder_refuses_another_generator_in_one_line(tmp_path):
    encoder = LatentEncoder(EncoderConfig(8, style_dim=16, channels=[8], hidden=8))
    loaded = load_encoder(save_encoder(tmp_path / "enc.pt", encoder, SHA, 4, {}))
    loaded.check_generator(SHA, "mine.pt")
    with pytest.raises(PulseError, match=r"enc.pt: an encoder for another generator .*not mine.pt's") as err:
        loaded.check_generator("cd" * 32, "mine.pt")
    assert "\n" not in str(err.value)


def test_a_file_that_is_not_an_encoder_is_named(tmp_path, tiny_generator_file):
    with pytest.raises(PulseError, match=r"tiny.pt: not a pulse encoder file"):
        load_encoder(tiny_generator_file)
    with pytest.raises(PulseError, match="missing.pt: encoder file not found"):
        load_encoder(tmp_path / "missing.pt")
