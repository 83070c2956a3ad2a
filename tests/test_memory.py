"""Batch size from free memory: the arithmetic on CPU with a simulated card, the real thing on CUDA."""

import pytest
import torch

import pulse
from pulse.errors import PulseError
from pulse.memory import CPU_BATCH, HEADROOM, MAX_BATCH, batch_size_arg, fit_batch_size, rows_that_fit

MiB = 2**20


class SimulatedCard:
    """A search whose peak is fixed + rows x per_row, plus a workspace allocated once on first use."""

    def __init__(self, fixed, per_row, free, workspace=0):
        self.fixed, self.per_row, self.free, self.workspace = fixed, per_row, free, workspace
        self.calls = []

    def run_rows(self, rows):
        self.calls.append(rows)
        self.last = self.fixed + rows * self.per_row + (self.workspace if len(self.calls) == 1 else 0)

    def peak_bytes(self, fn):
        fn()
        return self.last

    def fit(self):
        return fit_batch_size(self.run_rows, self.peak_bytes, lambda: self.free)


def test_batch_is_the_most_rows_whose_predicted_peak_fits():
    card = SimulatedCard(fixed=300 * MiB, per_row=700 * MiB, free=40_000 * MiB, workspace=64 * MiB)
    batch = card.fit()
    budget = HEADROOM * card.free
    assert card.fixed + batch * card.per_row <= budget < card.fixed + (batch + 1) * card.per_row
    assert batch == 48
    assert card.calls[0] == card.calls[1] < card.calls[2]  # a warm-up before the two measured probes


def test_batch_is_capped_and_never_below_one():
    assert SimulatedCard(fixed=MiB, per_row=MiB, free=80_000 * MiB).fit() == MAX_BATCH
    assert SimulatedCard(fixed=MiB, per_row=0, free=MiB).fit() == MAX_BATCH  # rows cost nothing measurable
    assert SimulatedCard(fixed=900 * MiB, per_row=500 * MiB, free=1000 * MiB).fit() == 1
    assert rows_that_fit(fixed=0, per_row=10, free=1000, headroom=0.5, limit=1000) == 50


def test_batch_size_argument():
    assert batch_size_arg("auto") == "auto" and batch_size_arg("12") == 12
    for bad in ("0", "-3", "eight", "1.5"):
        with pytest.raises(PulseError, match="--batch-size must be a whole number >= 1 or 'auto'"):
            batch_size_arg(bad)


def test_auto_batch_on_cpu_is_the_cpu_default(tiny_generator_file):
    up = pulse.Upsampler(tiny_generator_file, device="cpu")
    assert up.batch_size is None and up.fit_batch_size() == CPU_BATCH
    with pytest.raises(PulseError, match="batch size must be a whole number >= 1 or 'auto', got 0"):
        pulse.Upsampler(tiny_generator_file, device="cpu", batch_size=0)


def test_auto_batch_is_measured_once_per_setting_that_changes_a_rows_memory(tiny_generator_file, monkeypatch):
    """precision and trainable noise maps change the memory per row; steps or eps do not."""
    import pulse.api

    probed = []

    def fake_fit(run_rows, peak_bytes, free_bytes):
        run_rows(2)  # the probe searches with the options asked for
        probed.append(1)
        return 10 * len(probed)

    monkeypatch.setattr(pulse.api, "fit_batch_size", fake_fit)
    up = pulse.Upsampler(tiny_generator_file, device="cpu")
    up.device = torch.device("cuda")  # the GPU path, with the probes' memory readings faked
    assert up.fit_batch_size(steps=5) == up.fit_batch_size(steps=50, eps=0.1) == 10
    assert up.fit_batch_size(precision="bf16") == 20
    assert up.fit_batch_size(trainable_noise_layers=2) == 30
    assert up.fit_batch_size() == 10 and len(probed) == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cuda_auto_batch_fits_in_free_memory(tiny_generator_file):
    """The chosen batch runs, and its measured peak stays within the free memory it was planned for."""
    from pulse.memory import cuda_free_bytes, cuda_peak_bytes

    up = pulse.Upsampler(tiny_generator_file, device="cuda")
    batch = up.fit_batch_size(steps=3)
    assert 1 <= batch <= MAX_BATCH
    device = up.device
    free = cuda_free_bytes(device)
    g = up.model.generator
    lr = torch.rand(batch, 3, g.resolution // 4, g.resolution // 4)
    peak = cuda_peak_bytes(lambda: up.run(list(lr), scale=4, steps=3), device)
    assert peak <= free
    assert up.fit_batch_size(steps=3) == batch  # no out-of-memory halving was needed
