"""Steering sweeps: the engine (prefix replay, batched strengths), the resumable store and the reports.

Example:
    >>> from steerkit.sweep import sweep
    >>> df = sweep(model, processor, items, vectors, layers=[2, 3], alphas=[0.5, 1.0], scopes=["image"],
    ...            out_dir="outputs/sweeps")
"""

from __future__ import annotations

from steerkit.sweep.engine import BASELINE, NO_LAYER, PROMPTING, Progress, naive_protocol, sweep
from steerkit.sweep.store import RunStore, list_runs

__all__ = ["sweep", "naive_protocol", "Progress", "RunStore", "list_runs", "BASELINE", "PROMPTING", "NO_LAYER"]
