"""The weights cache: sha256 pins for files the registry cannot pin, and `pulse weights verify`."""

import pytest
from click.testing import CliRunner

from pulse.cli.weights import weights_cli
from pulse.errors import PulseError
from pulse.weights import resolve, store


def test_no_sha256_needs_explicit_trust_then_pins(server, registry, cache, payload, payload_sha, fast_retry,
                                                  file_route):
    server.routes["/blob"] = file_route()
    registry([server.url + "/blob"], sha256=None)
    with pytest.raises(PulseError, match="--no-verify"):
        resolve.resolve_file("blob", cache_dir=cache)
    assert server.log == []
    path = resolve.fetch("blob", cache_dir=cache, trust_unverified=True, retry=fast_retry, progress=False)
    assert (cache / "blob" / "blob.dat.sha256").read_text().split()[0] == payload_sha
    assert resolve.resolve_file("blob", cache_dir=cache) == path
    path.write_bytes(payload[:-1] + b"\0")  # same size, different bytes: the pin catches it
    [status] = store.verify("blob", cache_dir=cache)
    assert status.state == "corrupt" and not path.exists()


def test_truncated_cache_file_is_caught_by_verify_and_downloaded_again(server, registry, cache, payload, payload_sha,
                                                                       fast_retry, file_route, blob_sha):
    server.routes["/blob"] = file_route()
    registry([server.url + "/blob"])
    path = resolve.fetch("blob", cache_dir=cache, retry=fast_retry, progress=False)
    path.write_bytes(payload[:1000])
    result = CliRunner().invoke(weights_cli, ["verify", "blob", "--cache-dir", str(cache)])
    assert result.exit_code == 1
    assert "corrupt" in result.output and "deleted" in result.output
    assert not path.exists()
    assert resolve.resolve_file("blob", cache_dir=cache) == path
    assert blob_sha(cache) == payload_sha
    assert len(server.log) == 2
