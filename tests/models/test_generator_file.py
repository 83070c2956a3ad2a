import pytest
import torch

from pulse.errors import PulseError
from pulse.models.generator_file import gaussian_fit, load_generator, save_generator
from pulse.models.stylegan1 import StyleGAN1Config


def test_file_roundtrip_renders_identically(tmp_path, tiny_generator):
    g = tiny_generator(3)
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



def test_a_failed_write_is_one_line_and_leaves_the_old_file(tmp_path, tiny_generator, monkeypatch):
    g = tiny_generator(3)
    fit = gaussian_fit(g.mapping, g.style_dim, samples=1000)
    path = tmp_path / "g.pt"
    save_generator(path, g, fit, {"licence": "first"})

    def disk_full(obj, target):
        open(target, "wb").write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(PulseError, match=r"g\.pt: could not write the generator file \(No space left on device\)"):
        save_generator(path, g, fit, {"licence": "second"})
    monkeypatch.undo()
    assert load_generator(path).metadata["licence"] == "first" and [p.name for p in tmp_path.iterdir()] == ["g.pt"]

def test_half_file_is_smaller_and_close(tmp_path, tiny_generator):
    g = tiny_generator(4)
    fit = gaussian_fit(g.mapping, g.style_dim, samples=2000)
    save_generator(tmp_path / "f32.pt", g, fit)
    save_generator(tmp_path / "f16.pt", g, fit, half=True)
    assert (tmp_path / "f16.pt").stat().st_size < 0.6 * (tmp_path / "f32.pt").stat().st_size
    ws, noise = torch.randn(1, g.n_styles, g.style_dim), g.random_noise(1)
    with torch.no_grad():
        diff = load_generator(tmp_path / "f16.pt").generator.synthesis(ws, noise) - g.synthesis(ws, noise)
    assert diff.abs().max() < 1e-2


def test_gaussian_fit_is_reproducible_and_chunk_independent(tiny_generator):
    g = tiny_generator(5)
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
        StyleGAN1Config(resolution=96)
