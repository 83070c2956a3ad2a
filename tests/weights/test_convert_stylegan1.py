"""The official StyleGAN-1 importer: renders exactly as the directly loaded module, downloaded or imported, and
refuses what it cannot account for."""

import re

import numpy as np
import pytest
import torch

from pulse.errors import PulseError
from pulse.models.generator_file import gaussian_fit, load_generator
from pulse.models.stylegan1 import StyleGAN1Config, StyleGAN1Generator
from pulse.weights import registry as weights_registry
from pulse.weights import resolve, store
from pulse.weights.convert_stylegan1 import import_official_stylegan1


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """PULSE-style synthesis.pt (blur kernels left out) + mapping.pt with random values in the official FFHQ
    1024 layout (every parameter, not just the initialised ones), and the module they load into directly."""
    torch.manual_seed(0)
    direct = StyleGAN1Generator(StyleGAN1Config.official_ffhq()).eval().requires_grad_(False)
    for name, p in direct.named_parameters():
        p.copy_(torch.randn_like(p) * (0.1 if "bias" in name or "noise" in name else 1.0))
    folder = tmp_path_factory.mktemp("official")
    synthesis = {k: v for k, v in direct.synthesis.state_dict().items() if not k.endswith("intermediate.kernel")}
    torch.save(synthesis, folder / "synthesis.pt")
    torch.save(direct.mapping.state_dict(), folder / "mapping.pt")
    return direct, folder / "synthesis.pt", folder / "mapping.pt"


def test_official_import_renders_identically_to_the_directly_loaded_module(official, cache):
    direct, synthesis, mapping = official
    report = resolve.import_files("ffhq-1024", [synthesis, mapping], cache_dir=cache, fit_samples=4000, device="cpu")
    text = "\n".join(report)
    assert f"accepted {len(torch.load(synthesis))} synthesis tensors" in text and "accepted 16 mapping tensors" in text
    assert "filled 8 missing blur kernels" in text and "4,000 samples on cpu" in text

    path = resolve.resolve_generator("ffhq-1024", cache_dir=cache)
    assert path == (cache / "ffhq-1024" / "ffhq-1024.pt").resolve()
    loaded = load_generator(path)
    assert loaded.metadata["resolution"] == 1024 and loaded.metadata["alignment"] == "ffhq"
    assert loaded.metadata["data"] == "FFHQ" and loaded.metadata["licence"] == "CC BY-NC 4.0 (NVIDIA)"
    fit = gaussian_fit(direct.mapping, 512, samples=4000)
    assert torch.equal(loaded.mean, fit["mean"]) and torch.equal(loaded.std, fit["std"])

    ws = torch.randn(1, 18, 512, generator=torch.Generator().manual_seed(1))
    noise = direct.random_noise(1, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = direct(ws=ws, noise=noise)
        got = loaded.generator(ws=ws, noise=noise)
    assert torch.isfinite(expected).all() and expected.std() > 0
    assert torch.equal(got, expected)
    [status] = store.verify("ffhq-1024", cache_dir=cache)  # the sources were read, not kept
    assert status.state == "ok" and status.path == path


def test_official_download_is_converted_and_resolved(official, server, cache, tmp_path, monkeypatch, fast_retry,
                                                     file_route):
    direct, synthesis, mapping = official
    server.routes["/synthesis.pt"] = file_route(synthesis.read_bytes())
    server.routes["/mapping.pt"] = file_route(mapping.read_bytes())
    text = weights_registry.registry_path().read_text()
    for name in ("synthesis.pt", "mapping.pt"):
        text = re.sub(rf'(name = "{name}"\nurls = )\[[^]]*\]', rf'\1["{server.url}/{name}"]', text)
    (tmp_path / "registry.toml").write_text(text)
    monkeypatch.setenv(weights_registry.REGISTRY_ENV, str(tmp_path / "registry.toml"))

    with pytest.raises(PulseError, match="no sha256 for synthesis.pt.*--no-verify"):
        resolve.resolve_generator("ffhq-1024", cache_dir=cache)
    path = resolve.fetch("ffhq-1024", cache_dir=cache, trust_unverified=True, retry=fast_retry, progress=False,
                         fit_samples=2000, device="cpu")
    assert [p for p, _, _ in server.log] == ["/synthesis.pt", "/mapping.pt"]
    assert resolve.resolve_generator("ffhq-1024", cache_dir=cache) == path
    state = load_generator(path).generator.state_dict()
    assert all(torch.equal(state[k], v) for k, v in direct.state_dict().items())
    assert [s.state for s in store.verify("ffhq-1024", cache_dir=cache)] == ["ok", "ok", "ok"]  # 2 pinned + 1


def test_official_import_refuses_what_it_cannot_account_for(tmp_path):
    mapping = StyleGAN1Generator(StyleGAN1Config.official_ffhq()).mapping.state_dict()
    torch.save(mapping, tmp_path / "mapping.pt")
    with pytest.raises(PulseError, match=r"synthesis: \d+ tensors missing"):
        import_official_stylegan1([tmp_path / "mapping.pt"], tmp_path / "out.pt", metadata={}, samples=1000)
    torch.save({**mapping, "g_ema.conv1.weight": torch.zeros(1)}, tmp_path / "stylegan2.pt")
    with pytest.raises(PulseError, match="'g_ema.conv1.weight' is not part of the official"):
        import_official_stylegan1([tmp_path / "stylegan2.pt"], tmp_path / "out.pt", metadata={}, samples=1000)
    torch.save({"dense0.weight": np.zeros(3)}, tmp_path / "pickled.pt")
    with pytest.raises(PulseError, match="refused: reading it would run pickled code"):
        import_official_stylegan1([tmp_path / "pickled.pt"], tmp_path / "out.pt", metadata={}, samples=1000)
    torch.save({**mapping, "dense0.weight": torch.zeros(3, 3)}, tmp_path / "shape.pt")
    with pytest.raises(PulseError, match=r"dense0.weight has shape \(3, 3\), expected \(512, 512\)"):
        import_official_stylegan1([tmp_path / "shape.pt"], tmp_path / "out.pt", metadata={}, samples=1000)
    assert not (tmp_path / "out.pt").exists()
