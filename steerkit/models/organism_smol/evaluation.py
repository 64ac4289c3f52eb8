"""Held-out evaluation of the SmolLM2 organism: letter accuracy per task and mode on ``split="test"`` items (never
trained on), with bootstrap CIs and the chance level, through steerkit's one scorer (:func:`steerkit.tasks.evaluate`).

Example:
    >>> table = ability_table(model, processor, n=200)   # what the build writes to metrics.parquet
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from steerkit.models.organism import world as w
from steerkit.models.organism.evaluation import EVAL_SEED  # the same held-out sets as the small organism's table
from steerkit.models.organism_smol.loop import MODES
from steerkit.tasks.evaluate import evaluate
from steerkit.tasks.stats import bootstrap_ci


def held_out_items(n: int, seed: int = EVAL_SEED) -> dict[tuple[str, str], list[Any]]:
    """``{(task, mode): items}``: ``n`` test-split questions per task, each asked as an image and as text."""
    return {(t, m): w.world_items(t, n, seed=seed, mode=m, split="test") for t in w.TASKS for m in MODES}


def ability_table(model: Any, processor: Any, n: int = 200, seed: int = EVAL_SEED,
                  model_name: str = "steerkit/organism-smol") -> pd.DataFrame:
    """One row per (task, mode): accuracy, its 95% bootstrap CI (``lo``, ``hi``), n and chance."""
    rows = []
    for (task, mode), items in held_out_items(n, seed).items():
        df = evaluate(model, processor, items, progress=False)
        ci = bootstrap_ci(df["correct"].to_numpy(dtype=float), seed=0)
        rows.append(dict(model=model_name, task=task, mode=mode, accuracy=ci.value, lo=ci.lo, hi=ci.hi, n=len(df),
                         chance=float(np.mean([1 / len(it.choices) for it in items]))))
    return pd.DataFrame(rows)


def curve_point(model: Any, processor: Any, sets: dict[tuple[str, str], list[Any]]) -> dict[str, float]:
    """``{"mode/task": accuracy}`` on small held-out sets (a learning-curve point)."""
    return {f"{mode}/{task}": float(evaluate(model, processor, items, progress=False)["correct"].mean())
            for (task, mode), items in sets.items()}
