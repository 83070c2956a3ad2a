"""--generator takes what the field hands a user: foreign files and URLs, converted once into the cache."""

import pytest
import torch
from click.testing import CliRunner

from pulse.cli import main as pulse_main
from pulse.errors import PulseError
from pulse.models.generator_file import load_generator
from pulse.weights import foreign, resolve

from .test_convert_stylegan2 import (
    _convert,
    nvlabs_generator,
    nvlabs_pickle,
    rosinality_generator,
    rosinality_training_checkpoint,
)


@pytest.fixture
def converting(monkeypatch):
    """Counts conversions (and keeps the Gaussian fit small)."""
    calls = []
    convert = foreign.convert_source

    def counted(kind, sources, out, metadata, **kw):
        calls.append(kind)
        return convert(kind, sources, out, metadata, **{**kw, "fit_samples": 2000})

    monkeypatch.setattr(foreign, "convert_source", counted)
    return calls


def renders(path):
    g = load_generator(path).generator
    with torch.no_grad():
        ws = torch.randn(2, g.n_styles, g.style_dim, generator=torch.Generator().manual_seed(1))
        return g.synthesis(ws, [torch.zeros(2, 1, h, w) for h, w in g.noise_shapes()])


def test_a_foreign_file_is_converted_once_into_the_cache_and_reused(tmp_path, converting):
    pickle = nvlabs_pickle(tmp_path / "network-snapshot-000100.pkl", nvlabs_generator())
    checkpoint = rosinality_training_checkpoint(tmp_path / "050000.pt", rosinality_generator())
    cache = tmp_path / "cache"
    first = resolve.resolve_generator(pickle, cache_dir=cache)
    assert first.parent == cache / "converted" and converting == ["stylegan2-nvlabs"]
    assert resolve.resolve_generator(str(pickle), cache_dir=cache) == first and len(converting) == 1  # reused
    _convert(pickle, tmp_path / "direct.pt")
    assert torch.allclose(renders(first), renders(tmp_path / "direct.pt"), atol=1e-6)
    assert resolve.resolve_generator(checkpoint, cache_dir=cache).is_file()
    assert converting == ["stylegan2-nvlabs", "stylegan2-rosinality"]
    bundled = resolve.resolve_generator("pulse-faces-128")
    assert resolve.resolve_generator(bundled, cache_dir=cache) == bundled  # a pulse generator file: as it is


def test_a_file_that_is_no_generator_is_one_line_saying_what_pulse_reads(tmp_path):
    other = tmp_path / "weights.pt"
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, other)
    with pytest.raises(PulseError) as err:
        resolve.resolve_generator(other, cache_dir=tmp_path / "cache")
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"{other}: not a generator pulse can read") and "NVlabs" in text


def test_a_url_is_downloaded_once_then_converted_once(tmp_path, server, file_route, converting):
    server.routes["/snap.pkl"] = file_route(nvlabs_pickle(tmp_path / "snap.pkl").read_bytes())
    cache = tmp_path / "cache"
    url = f"{server.url}/snap.pkl"
    first = resolve.resolve_generator(url, cache_dir=cache)
    assert resolve.resolve_generator(url, cache_dir=cache) == first
    assert [p for p, _, _ in server.log] == ["/snap.pkl"] and converting == ["stylegan2-nvlabs"]
    assert (cache / "urls").is_dir() and load_generator(first).metadata["source"].startswith("NVlabs network pickle")


def test_cli_runs_on_a_foreign_file_and_converts_one_to_a_file(tmp_path, converting, monkeypatch):
    monkeypatch.setenv("PULSE_CACHE", str(tmp_path / "cache"))
    pickle = nvlabs_pickle(tmp_path / "net.pkl")
    from PIL import Image

    Image.new("RGB", (8, 8), (120, 100, 90)).save(tmp_path / "face.png")
    run = CliRunner().invoke(pulse_main, ["run", "--input", str(tmp_path / "face.png"), "--output",
                                          str(tmp_path / "out"), "--generator", str(pickle), "--scale", "4",
                                          "--steps", "2", "--device", "cpu"])
    assert run.exit_code in (0, 3), run.output
    assert (tmp_path / "out" / "face.png").is_file() and converting == ["stylegan2-nvlabs"]
    out = tmp_path / "gen.pt"
    made = CliRunner().invoke(pulse_main, ["weights", "convert", str(pickle), "--output", str(out)])
    assert made.exit_code == 0, made.output
    assert torch.allclose(renders(out), renders(next((tmp_path / "cache" / "converted").glob("*.pt"))))
    again = CliRunner().invoke(pulse_main, ["weights", "convert", str(pickle), "--output", str(out)])
    assert again.exit_code == 2 and "does not write over it" in again.output
