"""How many CPU threads torch uses: one rule for the CLI and the notebooks.

On a small CPU shared with another job, torch threads beyond the free cores spin against each other: a notebook
that set 2 threads beside a 1-thread sweep on a 2-core machine ran its generation ~15x slower than with 1 thread.
``STEERKIT_THREADS`` lets whoever starts a job give it its share of the cores.
"""

from __future__ import annotations

import os

import torch

from steerkit.errors import DataError


def set_threads(default: int | None = None) -> int:
    """Set torch's intra-op threads from ``STEERKIT_THREADS``, else ``default`` (capped at the CPU count), else
    leave torch's own choice; returns the number in use.

    Example:
        >>> set_threads(2)      # 2 threads, or what STEERKIT_THREADS says
        2
    """
    raw = os.environ.get("STEERKIT_THREADS") or None  # empty counts as unset
    if raw is not None:
        try:
            n = int(raw)
        except ValueError:
            n = 0
        if n < 1:
            raise DataError(f"STEERKIT_THREADS={raw!r} is not a positive integer; set e.g. STEERKIT_THREADS=1")
    elif default is not None:
        n = max(1, min(default, os.cpu_count() or 1))
    else:
        return torch.get_num_threads()
    torch.set_num_threads(n)
    return n
