import torch

from pulse.models.stylegan1 import StyleGAN1Config, StyleGAN1Generator, official_channels


def official_state_dicts(seed=0):
    """State dicts with the official PULSE/StyleGAN-1 FFHQ key names and shapes, random values."""
    g = StyleGAN1Generator(StyleGAN1Config.official_ffhq())
    torch.manual_seed(seed)
    synthesis = {k: torch.randn_like(v) if not k.endswith("intermediate.kernel") else v
                 for k, v in g.synthesis.state_dict().items()}
    mapping = {k: torch.randn_like(v) for k, v in g.mapping.state_dict().items()}
    return synthesis, mapping


def test_official_layout_keys_and_render():
    synthesis, mapping = official_state_dicts()
    # key names of the official synthesis.pt / mapping.pt
    assert "blocks.4x4.epi1.style_mod.lin.weight" in synthesis
    assert "blocks.1024x1024.conv0_up.weight" in synthesis and "torgb.weight" in synthesis
    assert synthesis["blocks.64x64.conv1.weight"].shape == (256, 256, 3, 3)
    assert synthesis["blocks.1024x1024.conv1.weight"].shape == (16, 16, 3, 3)
    assert set(mapping) == {f"dense{i}.{p}" for i in range(8) for p in ("weight", "bias")}
    assert official_channels() == [512, 512, 512, 512, 256, 128, 64, 32, 16]
    g = StyleGAN1Generator(StyleGAN1Config.official_ffhq()).eval()
    g.synthesis.load_state_dict(synthesis, strict=True)
    g.mapping.load_state_dict(mapping, strict=True)
    assert g.n_styles == 18
    with torch.no_grad():
        img = g(z=torch.randn(1, 512))
    assert img.shape == (1, 3, 1024, 1024) and torch.isfinite(img).all()
