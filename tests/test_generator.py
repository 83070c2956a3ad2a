import pytest
import torch

from pulse.errors import PulseError
from pulse.models.stylegan1 import Generator, GeneratorConfig, official_channels
from pulse.models.generator_file import gaussian_fit, load_generator, save_generator

from conftest import make_tiny_generator


def official_state_dicts(seed=0):
    """State dicts with the official PULSE/StyleGAN-1 FFHQ key names and shapes, random values."""
    g = Generator(GeneratorConfig.official_ffhq())
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
    g = Generator(GeneratorConfig.official_ffhq()).eval()
    g.synthesis.load_state_dict(synthesis, strict=True)
    g.mapping.load_state_dict(mapping, strict=True)
    assert g.n_styles == 18
    with torch.no_grad():
        img = g(z=torch.randn(1, 512))
    assert img.shape == (1, 3, 1024, 1024) and torch.isfinite(img).all()


def test_file_roundtrip_renders_identically(tmp_path):
    g = make_tiny_generator(3)
    fit = gaussian_fit(g.mapping, g.style_dim, samples=5000, chunk=1000)
    path = tmp_path / "g.pt"
    save_generator(path, g, fit, {"resolution": 32, "licence": "test"})
    loaded = load_generator(path)
    ws, noise = torch.randn(2, g.n_styles, g.style_dim), g.random_noise(2)
    with torch.no_grad():
        assert torch.equal(loaded.generator.synthesis(ws, noise), g.synthesis(ws, noise))
    assert torch.equal(loaded.mean, fit["mean"]) and loaded.metadata["licence"] == "test"
    assert not any(p.requires_grad for p in loaded.generator.parameters())
    # the file needs no pickle: plain weights_only load
    assert torch.load(path, weights_only=True)["format"] == "pulse-generator"


def test_half_file_is_smaller_and_close(tmp_path):
    g = make_tiny_generator(4)
    fit = gaussian_fit(g.mapping, g.style_dim, samples=2000)
    save_generator(tmp_path / "f32.pt", g, fit)
    save_generator(tmp_path / "f16.pt", g, fit, half=True)
    assert (tmp_path / "f16.pt").stat().st_size < 0.6 * (tmp_path / "f32.pt").stat().st_size
    ws, noise = torch.randn(1, g.n_styles, g.style_dim), g.random_noise(1)
    with torch.no_grad():
        diff = load_generator(tmp_path / "f16.pt").generator.synthesis(ws, noise) - g.synthesis(ws, noise)
    assert diff.abs().max() < 1e-2


def test_gaussian_fit_is_reproducible_and_chunk_independent():
    g = make_tiny_generator(5)
    a = gaussian_fit(g.mapping, g.style_dim, samples=3000, chunk=3000, seed=1)
    chunks = []  # what a progress bar is told
    b = gaussian_fit(g.mapping, g.style_dim, samples=3000, chunk=700, seed=1, on_chunk=chunks.append)
    assert chunks == [700, 700, 700, 700, 200]
    # same seed: same samples whatever the chunking (one generator stream)
    assert torch.allclose(a["mean"], b["mean"], atol=1e-5) and torch.allclose(a["std"], b["std"], atol=1e-5)
    assert (a["std"] > 0).all()


def test_bad_files_give_one_line_errors(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(PulseError, match="junk.pt: not a readable generator file"):
        load_generator(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(PulseError, match="not a pulse generator file"):
        load_generator(other)
    with pytest.raises(PulseError, match="not found"):
        load_generator(tmp_path / "missing.pt")
    with pytest.raises(PulseError, match="power of two"):
        GeneratorConfig(resolution=96)
