"""Steering sweeps: plan -> executor (prefix replay, batched strengths) -> letter scorer -> resumable store; reports.

Example:
    >>> from steerkit.sweep import sweep
    >>> df = sweep(model, processor, items, vectors, layers=[2, 3], alphas=[0.5, 1.0], scopes=["image"],
    ...            out_dir="outputs/sweeps")
"""

from __future__ import annotations

from steerkit.sweep.engine import BASELINE, NO_LAYER, PROMPTING, Progress, naive_protocol, run_sweep, sweep
from steerkit.sweep.plan import SweepRequest, shard_of_process
from steerkit.sweep.store import RunStore, list_runs

__all__ = ["sweep", "run_sweep", "SweepRequest", "naive_protocol", "Progress", "RunStore", "list_runs",
           "shard_of_process", "BASELINE", "PROMPTING", "NO_LAYER"]
