import hashlib
import shutil
import textwrap

import pytest

from pulse.errors import PulseError
from pulse.weights import registry
from pulse.weights.resolve import resolve_generator
from pulse.weights.store import verify


def test_the_registry_pins_the_bundled_generator_it_ships():
    [wfile] = registry.get_model(registry.DEFAULT_GENERATOR).files
    shipped = registry.WEIGHTS_DIR / wfile.path
    assert wfile.sha256 == hashlib.sha256(shipped.read_bytes()).hexdigest(), "update sha256 in weights/registry.toml"
    assert wfile.size == shipped.stat().st_size, "update size in weights/registry.toml"


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A weights folder like the repository's: the bundled file, pinned by its registry as the real one is."""
    [real] = registry.get_model(registry.DEFAULT_GENERATOR).files
    folder = tmp_path / "weights"
    folder.mkdir()
    shutil.copy(registry.WEIGHTS_DIR / real.path, folder / "bundled.pt")
    (folder / "registry.toml").write_text(textwrap.dedent(f"""
        [models.bundled]
        kind = "generator"
        resolution = 128
        licence = "test"
        description = "test"
        [[models.bundled.files]]
        name = "bundled.pt"
        path = "bundled.pt"
        sha256 = "{real.sha256}"
        size = {real.size}
    """))
    monkeypatch.setattr(registry, "WEIGHTS_DIR", folder)
    monkeypatch.setattr(registry, "REGISTRY_PATH", folder / "registry.toml")
    return folder


def test_a_git_lfs_pointer_or_truncated_file_is_named_not_loaded(checkout, tmp_path):
    cache = tmp_path / "cache"
    assert resolve_generator("bundled", cache_dir=cache) == checkout / "bundled.pt"

    (checkout / "bundled.pt").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12051082\n")
    with pytest.raises(PulseError, match=r"bundled\.pt: corrupt \(a Git LFS pointer, not the weights: run `git lfs pull`\)"):
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
    assert pulse.open_generator(registry.DEFAULT_GENERATOR).source == bundled.source
    assert pulse.open_generator(tiny_generator_file).generator.resolution == 32
    with pytest.raises(PulseError, match="no such generator file or registry name"):
        pulse.open_generator("no-such-generator")
