"""Small items and random vectors for sweep tests (tiny random models: answers are arbitrary but deterministic)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import torch

from steerkit.models.adapters import adapter_for
from steerkit.models.tiny import tiny_image
from steerkit.tasks.schema import Item


def make_items(n: int = 6, with_images: bool = True) -> list[Item]:
    """n multiple-choice items; the first two thirds are "train", the rest "test"; two tasks alternate."""
    out = []
    for i in range(n):
        k = 2 + i % 3
        choices = [str(i + j) for j in range(k)]
        out.append(Item(id=f"it{i}", image=tiny_image(i) if with_images else None,
                        prompt=f"How many circles are there? " + " ".join(f"({'ABCD'[j]}) {c}" for j, c in enumerate(choices)),
                        choices=choices, answer="ABCD"[i % k], task=("Count", "Relation")[i % 2],
                        split="train" if i < 2 * n // 3 else "test"))
    return out


def make_vectors(model, concepts=("counting",), methods=("meanshift",), layers=(0, 1), scale=4.0, seed=0):
    """{(method, concept): {layer: random vector}} of the model's width."""
    d = adapter_for(model).hidden_size(model)
    g = torch.Generator().manual_seed(seed)
    return {(m, c): {l: torch.randn(d, generator=g) * scale for l in layers} for m in methods for c in concepts}


# A CLI sweep in a child process that SIGKILLs itself after its k-th finished unit group (no finally, no flush).
_KILLED_CLI = textwrap.dedent("""
    import os, signal, sys
    import torch
    torch.set_num_threads({threads})
    from steerkit.sweep import store
    finished = store.RowSink.unit_finished
    count = [0]
    def die(self):
        finished(self)
        count[0] += 1
        if count[0] >= {k}:
            os.kill(os.getpid(), signal.SIGKILL)   # no finally, no flush: the hardest stop
    store.RowSink.unit_finished = die
    from steerkit.cli import app
    app(["sweep", {cfg!r}, "--no-progress", "--no-report"])
""")


def raw_parts(run_dir: Path) -> pd.DataFrame:
    """Every row a run folder's part files hold, duplicates included."""
    return pd.concat([pd.read_parquet(f) for f in sorted((run_dir / "parts").glob("part-*.parquet"))],
                     ignore_index=True)


def kill_cli_sweep(cfg: Path, root: Path, k: int = 3) -> Path:
    """Run ``steerkit sweep cfg`` in a child killed after ``k`` unit groups; return its one run folder under root."""
    from steerkit.sweep.store import list_runs

    code = _KILLED_CLI.format(threads=torch.get_num_threads(), k=k, cfg=str(cfg))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    [run] = list_runs(root)
    return run


def assert_resumed_equals(full: pd.DataFrame, run_dir: Path) -> None:
    """The resumed run's rows equal an uninterrupted run's, and its part files hold no row twice."""
    from steerkit.sweep.store import ROW_KEY, RunStore

    pd.testing.assert_frame_equal(full, RunStore.from_dir(run_dir).load(), check_exact=True)
    raw = raw_parts(run_dir)
    assert len(raw) == len(full) and not raw.duplicated(subset=list(ROW_KEY)).any()
