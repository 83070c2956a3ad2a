"""From a name or a path to a generator file: the registry, the cache, the bundled generator, and the `pulse
weights` commands that list, import, locate and describe them."""

import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from pulse.cli import main as pulse_main
from pulse.errors import PulseError
from pulse.models.generator_file import gaussian_fit, save_generator
from pulse.models.stylegan1 import StyleGAN1Config, StyleGAN1Generator
from pulse.weights import registry as weights_registry
from pulse.weights import resolve
from pulse.weights.resolve import resolve_generator
from pulse.weights.store import verify


def test_resolve_generator_paths_and_names(tmp_path, tiny_generator_file, monkeypatch):
    assert resolve.resolve_generator(tiny_generator_file) == tiny_generator_file
    assert resolve.resolve_generator(str(tiny_generator_file)) == tiny_generator_file
    with pytest.raises(PulseError, match="generator file not found"):
        resolve.resolve_generator(tmp_path / "nope.pt")
    with pytest.raises(PulseError, match="no such generator file or registry name"):
        resolve.resolve_generator("no-such-model")
    with pytest.raises(PulseError, match="not a generator"):
        resolve.resolve_generator("dlib-68-landmarks")
    (tmp_path / "weights").mkdir()  # a checkout without the trained file
    shutil.copy(weights_registry.registry_path(), tmp_path / "weights" / "registry.toml")
    monkeypatch.setenv(weights_registry.REGISTRY_ENV, str(tmp_path / "weights" / "registry.toml"))
    with pytest.raises(PulseError) as err:
        resolve.resolve_generator("pulse-faces-128", cache_dir=tmp_path / "cache")
    assert str(err.value).startswith("the bundled generator pulse-faces-128 is not installed "
                                     "(weights/pulse-faces-128.pt missing): pass --generator PATH")


def test_bundled_generator_from_the_repository_or_imported(tmp_path, tiny_generator_file, monkeypatch, cache,
                                                           registry_entry):
    # a registry entry like the bundled generator's, but with no pin: any 128 px generator may be imported
    (tmp_path / "weights").mkdir()  # a checkout without the file
    (tmp_path / "weights" / "registry.toml").write_text(registry_entry("faces-128", "generator", 128, "faces-128.pt",
                                                                       path="faces-128.pt"))
    monkeypatch.setenv(weights_registry.REGISTRY_ENV, str(tmp_path / "weights" / "registry.toml"))
    with pytest.raises(PulseError, match="a 32 px generator, but faces-128 is 128 px"):
        resolve.import_files("faces-128", [tiny_generator_file], cache_dir=cache)
    g = StyleGAN1Generator(StyleGAN1Config())  # the compact 128 px layout
    save_generator(tmp_path / "trained.pt", g, gaussian_fit(g.mapping, g.style_dim, samples=1000), {})
    [line] = resolve.import_files("faces-128", [tmp_path / "trained.pt"], cache_dir=cache)
    imported = (cache / "faces-128" / "faces-128.pt").resolve()
    assert "pinned" in line and imported.read_bytes() == (tmp_path / "trained.pt").read_bytes()
    assert resolve.resolve_generator("faces-128", cache_dir=cache) == imported

    shipped = tmp_path / "weights" / "faces-128.pt"  # a checkout that ships the file: that one wins
    shipped.write_bytes(tiny_generator_file.read_bytes())
    assert resolve.resolve_generator("faces-128", cache_dir=cache) == shipped.resolve()


@pytest.fixture
def checkout(tmp_path, monkeypatch, registry_entry):
    """A weights folder like the repository's: the bundled file, pinned by its registry as the real one is."""
    [real] = weights_registry.get_model(weights_registry.DEFAULT_GENERATOR).files
    folder = tmp_path / "weights"
    folder.mkdir()
    shutil.copy(real.folder / real.path, folder / "bundled.pt")
    (folder / "registry.toml").write_text(registry_entry("bundled", "generator", 128, "bundled.pt", path="bundled.pt",
                                                         sha256=real.sha256, size=real.size))
    monkeypatch.setenv(weights_registry.REGISTRY_ENV, str(folder / "registry.toml"))
    return folder


def test_a_git_lfs_pointer_or_truncated_file_is_named_not_loaded(checkout, tmp_path):
    cache = tmp_path / "cache"
    assert resolve_generator("bundled", cache_dir=cache) == checkout / "bundled.pt"

    (checkout / "bundled.pt").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12051082\n")
    lfs = r"bundled\.pt: corrupt \(a Git LFS pointer, not the weights: run `git lfs pull`\)"
    with pytest.raises(PulseError, match=lfs):
        resolve_generator("bundled", cache_dir=cache)
    [status] = verify("bundled", cache_dir=cache)
    assert status.state == "corrupt"

    (checkout / "bundled.pt").write_bytes(b"\x00" * 1000)  # truncated
    with pytest.raises(PulseError, match=r"corrupt \(1000 bytes, expected 12051082"):
        resolve_generator("bundled", cache_dir=cache)


def test_open_generator_by_default_name_or_file(tiny_generator_file):
    import pulse

    bundled = pulse.open_generator()
    assert bundled.generator.resolution == 128 and bundled.source.endswith("pulse-faces-128.pt")
    assert pulse.open_generator(weights_registry.DEFAULT_GENERATOR).source == bundled.source
    assert pulse.open_generator(tiny_generator_file).generator.resolution == 32
    with pytest.raises(PulseError, match="no such generator file or registry name"):
        pulse.open_generator("no-such-generator")


# ---------------------------------------------------------------- CLI


def test_cli_list_import_path_verify(tmp_path, tiny_generator_file, monkeypatch, cache, payload, write_registry,
                                     registry_entry):
    path = write_registry(tmp_path / "registry.toml", ["http://127.0.0.1:9/blob"], extra=registry_entry(
        "tiny-32", "generator", 32, "tiny-32.pt", ["http://127.0.0.1:9/tiny-32.pt"], description="tiny test generator"))
    monkeypatch.setenv(weights_registry.REGISTRY_ENV, str(path))
    monkeypatch.setenv("PULSE_CACHE", str(cache))
    run = CliRunner().invoke

    listed = run(pulse_main, ["weights", "list"])
    assert listed.exit_code == 0 and "tiny-32" in listed.output and "not installed" in listed.output

    missing = run(pulse_main, ["weights", "path", "tiny-32"])
    assert missing.exit_code == 2 and "pulse weights download tiny-32 --no-verify" in missing.output
    missing = run(pulse_main, ["weights", "info", "tiny-32"])  # says how to get it; downloads nothing
    assert missing.exit_code == 2 and "pulse weights download tiny-32 --no-verify" in missing.output

    imported = run(pulse_main, ["weights", "import", "tiny-32", str(tiny_generator_file)])
    assert imported.exit_code == 0, imported.output
    assert "pinned" in imported.output
    target = (cache / "tiny-32" / "tiny-32.pt").resolve()
    assert target.read_bytes() == tiny_generator_file.read_bytes()

    assert run(pulse_main, ["weights", "path", "tiny-32"]).output.strip() == str(target)
    assert resolve.resolve_generator("tiny-32") == target
    info = run(pulse_main, ["weights", "info", "tiny-32"])
    assert info.exit_code == 0 and info.output.startswith(f"{target} (")
    assert "architecture: stylegan1, 32 px" in info.output and "recommended search settings: none" in info.output
    verified = run(pulse_main, ["weights", "verify", "tiny-32"])
    assert verified.exit_code == 0 and ": ok (sha256" in verified.output

    blob = tmp_path / "blob.bin"
    blob.write_bytes(payload[:-1])
    refused = run(pulse_main, ["weights", "import", "blob", str(blob)])
    assert refused.exit_code == 2 and "does not match the registry" in refused.output
    assert not (cache / "blob" / "blob.dat").exists()
    not_a_generator = run(pulse_main, ["weights", "import", "tiny-32", str(blob)])
    assert not_a_generator.exit_code == 2 and "not a readable generator file" in not_a_generator.output


def test_cli_list_shows_disk_space_and_cpu_seconds_per_face(tmp_path, tiny_generator_file, monkeypatch, cache,
                                                            registry_entry):
    url = "http://127.0.0.1:9/file"
    text = ('[cpu_seconds_per_face]\n"tiny-layout" = 0.5\n'
            + registry_entry("tiny-32", "generator", 32, "tiny-32.pt", [url], description="tiny")
            + registry_entry("big", "stylegan2-nvlabs", 1024, "big.pkl", [url], size=364_000_000, description="big")
            + registry_entry("odd", "stylegan2-tf", 256, "odd.pkl", [url], description="odd")
            + registry_entry("marks", "landmarks", 0, "marks.dat", [url], size=99_693_937, description="marks"))
    text = text.replace('description = "tiny"', 'description = "tiny"\nlayout = "tiny-layout"')
    text = text.replace('description = "big"', 'description = "big"\nlayout = "stylegan2-f-2048"')
    (tmp_path / "registry.toml").write_text(text)
    monkeypatch.setenv(weights_registry.REGISTRY_ENV, str(tmp_path / "registry.toml"))
    monkeypatch.setenv("PULSE_CACHE", str(cache))

    def costs() -> dict[str, str]:
        result = CliRunner().invoke(pulse_main, ["weights", "list"])
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert lines[-1].startswith("CPU: seconds per face for the search (100 steps, batch 8) on a 2-core CPU")
        return {lines[i].split()[0]: lines[i + 2].strip() for i in range(0, len(lines) - 1, 3)}

    listed = costs()
    assert listed.pop("pulse-faces-128").endswith("CPU: 2.36 s per face")  # $PULSE_REGISTRY adds to the shipped one
    assert {name: line for name, line in listed.items() if name in ("tiny-32", "big", "odd", "marks")} == {
        "tiny-32": "disk: size unknown until downloaded; CPU: 0.5 s per face",
        "big": ("disk: 364.0 MB to download + the converted generator file; "
                "CPU: unknown (stylegan2-f-2048 not measured)"),
        "odd": "disk: size unknown until downloaded; CPU: unknown (layout not known)",
        "marks": "disk: 99.7 MB to download"}
    resolve.import_files("tiny-32", [tiny_generator_file], cache_dir=cache)
    size = (cache / "tiny-32" / "tiny-32.pt").stat().st_size
    assert costs()["tiny-32"] == f"disk: {size / 1e6:.1f} MB used; CPU: 0.5 s per face"


def test_python_dash_m_entry_point(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pulse.weights", "path", "no-such-name"],
                            capture_output=True, text=True, env={**os.environ, "PULSE_CACHE": str(tmp_path)})
    assert result.returncode == 2  # a PulseError: nothing done, one line (the policy of every command)
    assert result.stderr.strip().startswith("error: no-such-name: not a weights name in the registry")
