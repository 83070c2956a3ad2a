import errno

import pytest

from pulse.errors import PulseError
from pulse.training import checkpoint as checkpoint_module
from pulse.training.checkpoint import save_checkpoint


def test_checkpoint_save_that_fails_keeps_the_previous_one(full_run, tmp_path, monkeypatch):
    latest = tmp_path / "latest.ckpt"
    latest.write_bytes((full_run / "latest.ckpt").read_bytes())
    before = latest.read_bytes()

    def disk_full(obj, path):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", disk_full)
    with pytest.raises(PulseError, match="No space left on device.*previous checkpoint is intact"):
        save_checkpoint(latest, {"progress": {}})
    assert latest.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["latest.ckpt"]
