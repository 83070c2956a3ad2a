"""How many faces to search at once: on a GPU, measured from free memory rather than guessed.

The search's memory is a fixed part (buffers, workspaces) plus a part per row (the activations the backward
pass keeps at the generator's resolution). Two one-step probes at different batch sizes give both, and the
batch is the largest whose predicted peak stays under a share of the memory free now. A wrong guess costs
time, not the run: a CUDA out-of-memory error still halves the batch (``Upsampler``).
"""

from __future__ import annotations

from typing import Callable

import torch

from .errors import PulseError

CPU_BATCH = 8  # on a CPU, larger batches barely raise throughput and only delay the first results
MAX_BATCH = 256  # past this even the 128 px generator keeps a GPU busy; more only delays the first results
HEADROOM = 0.85  # share of the free memory the predicted peak may take (fragmentation, library workspaces)
PROBE_ROWS = (2, 4)


def batch_size_arg(text: str) -> int | str:
    """A command line's --batch-size: "auto" or a whole number >= 1."""
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise PulseError(f"--batch-size must be a whole number >= 1 or 'auto', got {text!r}")
    return int(text)


def rows_that_fit(fixed: float, per_row: float, free: float, headroom: float = HEADROOM,
                  limit: int = MAX_BATCH) -> int:
    """The most rows (1..limit) whose predicted peak, fixed + rows x per_row, is within headroom x free."""
    if per_row <= 0:
        return limit
    return int(max(1, min(limit, (headroom * free - fixed) // per_row)))


def fit_batch_size(run_rows: Callable[[int], object], peak_bytes: Callable[[Callable[[], object]], int],
                   free_bytes: Callable[[], int], probes: tuple[int, int] = PROBE_ROWS, limit: int = MAX_BATCH) -> int:
    """Batch size from two probes: ``run_rows(n)`` does one search step on n rows, ``peak_bytes(fn)`` is the
    peak memory fn allocates, ``free_bytes()`` what can still be allocated (read after the probes)."""
    small, large = probes
    run_rows(small)  # warm-up: one-time allocations (library workspaces) must not count as rows' memory
    at_small = peak_bytes(lambda: run_rows(small))
    at_large = peak_bytes(lambda: run_rows(large))
    per_row = max(at_large - at_small, 0) / (large - small)
    fixed = max(at_small - small * per_row, 0)
    return rows_that_fit(fixed, per_row, free_bytes(), limit=limit)


def cuda_peak_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Peak memory ``fn`` allocates on ``device`` above what was allocated before it."""
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def cuda_free_bytes(device: torch.device) -> int:
    """Free on the card plus what PyTorch's allocator holds unused (it hands that out again first)."""
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
