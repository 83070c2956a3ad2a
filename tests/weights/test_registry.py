"""The registry: names, the shipped registry, its pin of the bundled generator, and a wheel that carries both."""

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pulse.errors import PulseError
from pulse.weights import registry as weights_registry
from pulse.weights import store


def test_registry_names_cannot_escape_the_cache(tmp_path, monkeypatch, cache, write_registry):
    path = write_registry(tmp_path / "bad.toml", ["http://127.0.0.1:9/x"])
    path.write_text(path.read_text().replace('name = "blob.dat"', 'name = "../../evil"'))
    with pytest.raises(PulseError, match="not a valid name"):
        weights_registry.load_registry(path)
    path.write_text(path.read_text().replace('"../../evil"', '".."'))
    with pytest.raises(PulseError, match="not a valid name"):
        weights_registry.load_registry(path)
    with pytest.raises(PulseError, match="outside"):
        store._inside(cache, "..", "x")


def test_shipped_registry_parses_and_records_what_is_unknown():
    models = weights_registry.load_registry()
    assert {"pulse-faces-128", "ffhq-1024", "dlib-68-landmarks"} <= set(models)
    assert weights_registry.DEFAULT_GENERATOR == "pulse-faces-128"
    bundled = models["pulse-faces-128"].files[0]
    assert bundled.path == "pulse-faces-128.pt" and not bundled.urls
    assert [f.name for f in models["ffhq-1024"].files] == ["synthesis.pt", "mapping.pt"]
    assert models["dlib-68-landmarks"].files[0].sha256 is None  # unknown: downloads need --no-verify


def test_shipped_registry_has_no_stylegan3_and_a_search_cost_per_layout():
    """pulse has no StyleGAN3 class, so no StyleGAN3 entry; every generator's cost is looked up by its layout."""
    models = weights_registry.load_registry()
    assert not any("stylegan3" in f"{m.name} {m.kind}".lower() for m in models.values())
    costs = weights_registry.cpu_seconds_per_face()
    assert costs["pulse-compact-128"] == 2.36  # benchmarks/results-cpu.md, search_speed.py at batch 8
    assert models["pulse-faces-128"].layout == "pulse-compact-128"
    assert models["stylegan2-ffhq-1024"].layout == models["stylegan2-ffhq-config-f"].layout == "stylegan2-f-1024"
    assert models["ffhq-1024"].layout == models["ffhq-1024-tf"].layout == "stylegan1-ffhq-1024"
    assert models["stylegan2-ffhq-256"].layout is None  # NGC's 256 px widths are not known here
    assert all(m.layout is None for m in models.values() if m.kind not in weights_registry.GENERATOR_KINDS)


def test_registry_cost_table_and_layouts_are_checked(tmp_path, write_registry, registry_entry):
    path = write_registry(tmp_path / "r.toml", ["http://127.0.0.1:9/x"])
    text = path.read_text()
    path.write_text('[cpu_seconds_per_face]\nfast = 1.5\nslow = "a minute"\n' + text)
    with pytest.raises(PulseError, match=r"cpu_seconds_per_face 'slow' must be a positive number of seconds"):
        weights_registry.cpu_seconds_per_face(path)
    path.write_text('[cpu_seconds_per_face]\nfast = 1.5\n' + text)
    assert weights_registry.cpu_seconds_per_face(path) == {"fast": 1.5}
    path.write_text(text.replace('kind = "landmarks"', 'kind = "landmarks"\nlayout = "fast"'))
    with pytest.raises(PulseError, match="layout is given for generator entries only"):
        weights_registry.load_registry(path)


def test_the_registry_pins_every_file_it_ships():
    shipped_files = [f for m in weights_registry.load_registry().values() for f in m.files if f.path]
    assert {f.name for f in shipped_files} >= {
        "pulse-faces-128.pt", "pulse-encoder-x8.pt", "pulse-encoder-x4.pt", *(f"pulse-{kind}-x{scale}.pt"
        for kind in ("sr", "srgan") for scale in (8, 4)), "pulse-sr-x8-degraded.pt", "pulse-sr-x4-degraded.pt"}
    for wfile in shipped_files:
        shipped = wfile.folder / wfile.path
        assert wfile.sha256 == hashlib.sha256(shipped.read_bytes()).hexdigest(), f"update {wfile.name}'s sha256"
        assert wfile.size == shipped.stat().st_size, f"update {wfile.name}'s size in weights/registry.toml"


def test_a_wheel_carries_the_registry_and_the_bundled_generator(tmp_path):
    """Installed from a wheel (no checkout around it), pulse still finds weights/ as pulse/_weights."""
    pytest.importorskip("setuptools")
    root = Path(__file__).resolve().parents[2]
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(root)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    [wheel] = (tmp_path / "dist").glob("pulse-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    probe = ("from pulse.weights.resolve import resolve_generator; print(resolve_generator('pulse-faces-128')); "
             "from pulse.weights.registry import load_registry; print(len(load_registry()))")
    env = {**os.environ, "PYTHONPATH": str(site), "PULSE_CACHE": str(tmp_path / "cache")}
    found = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert found.returncode == 0, found.stderr[-2000:]
    generator, models = found.stdout.split()
    assert Path(generator) == site / "pulse" / "_weights" / "pulse-faces-128.pt" and int(models) >= 3
    assert Path(generator).read_bytes() == (root / "weights" / "pulse-faces-128.pt").read_bytes()


def test_an_encoder_entry_names_its_generator_and_scale(tmp_path, registry_entry):
    path = tmp_path / "r.toml"
    entry = registry_entry("enc", "encoder", 128, "enc.pt", urls=["http://127.0.0.1:9/enc.pt"])
    path.write_text(entry.replace('kind = "encoder"', 'kind = "encoder"\nscale = 8\ngenerator = "faces"'))
    model = weights_registry.load_registry(path)["enc"]
    assert (model.kind, model.scale, model.generator) == ("encoder", 8, "faces")
    path.write_text(entry.replace('kind = "encoder"', 'kind = "encoder"\nscale = 8'))
    with pytest.raises(PulseError, match="generator .* is given for encoder entries, and only for them"):
        weights_registry.load_registry(path)
    path.write_text(entry.replace('kind = "encoder"', 'kind = "encoder"\ngenerator = "faces"'))
    with pytest.raises(PulseError, match="scale is given for sr-model and encoder entries, and only for them"):
        weights_registry.load_registry(path)
