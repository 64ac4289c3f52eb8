"""Replicate the SmolLM2 organism's scene ability table on more held-out items than the build measures.

The build's table (``metrics.parquet``) scores the first ``final_n`` (200) test-split items per task and mode. This
script scores the first ``--n`` items of the same draw (default 1000; every prompt distinct, all on the content-hash
test split), so it reports three tables: the first 200 (it must reproduce ``metrics.parquet``: a check of the scorer
and the loaded weights), the items after them (a fresh replication, never looked at before), and all ``--n`` pooled.
Each row has the accuracy, its 95% bootstrap CI and whether the point estimate and the lower bound reach chance + 15.

Per-item results go to ``OUT/items_<task>_<mode>.parquet`` as each (task, mode) finishes, so a killed run resumes.

Example:
    STEERKIT_THREADS=1 python benchmarks/organism_smol_replication.py --out /tmp/replication --n 1000
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from steerkit.models.organism import world as w
from steerkit.models.organism.evaluation import EVAL_SEED
from steerkit.models.organism_smol import SmolOrganismConfig, default_dir
from steerkit.models.organism_smol.loop import MODES
from steerkit.tasks.evaluate import evaluate
from steerkit.tasks.stats import bootstrap_ci
from steerkit.threads import set_threads

MARGIN = 0.15  # the bar: accuracy at least 15 points above chance


def score(out: Path, n: int) -> pd.DataFrame:
    """Per-item letter results for the first ``n`` test items of every (task, mode), resuming from ``out``."""
    from steerkit.models.loading import load_model

    model = processor = None
    frames = []
    for task in w.TASKS:
        for mode in MODES:
            path = out / f"items_{task}_{mode}.parquet"
            if not path.exists():
                if model is None:
                    model, processor = load_model("steerkit/organism-smol")
                items = w.world_items(task, n, seed=EVAL_SEED, mode=mode, split="test")
                keys = {(it.prompt, it.image.tobytes() if it.image is not None else b"") for it in items}
                if len(keys) != len(items):
                    raise RuntimeError(f"{task}/{mode}: repeated items among {n}; the CIs would overstate n")
                print(f"{task}/{mode}: {n} items", flush=True)
                df = evaluate(model, processor, items)
                df.assign(mode=mode, position=np.arange(len(df)),
                          chance=[1 / len(it.choices) for it in items]).to_parquet(path)
            frames.append(pd.read_parquet(path))
    return pd.concat(frames, ignore_index=True)


def table(items: pd.DataFrame, label: str) -> pd.DataFrame:
    """Accuracy [95% bootstrap CI] per (task, mode) and whether it clears chance + 15 (point and lower bound)."""
    rows = []
    for (task, mode), g in items.groupby(["task", "mode"], sort=False):
        ci = bootstrap_ci(g["correct"].to_numpy(dtype=float), seed=0)
        chance = float(g["chance"].mean())
        rows.append({"items": label, "task": task, "mode": mode, "n": ci.n, "accuracy": ci.value, "lo": ci.lo,
                     "hi": ci.hi, "chance": chance, "point_clears": ci.value >= chance + MARGIN,
                     "lo_clears": ci.lo >= chance + MARGIN})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args(argv)
    table_n = SmolOrganismConfig.read(default_dir()).final_n  # what the build's metrics.parquet scores
    if args.n <= table_n:
        raise SystemExit(f"--n must exceed the build's {table_n} items, got {args.n}")
    set_threads()
    args.out.mkdir(parents=True, exist_ok=True)
    items = score(args.out, args.n)
    tables = pd.concat([table(items[items.position < table_n], f"first {table_n} (the build's table)"),
                        table(items[items.position >= table_n], f"fresh {args.n - table_n}"),
                        table(items, f"all {args.n}")], ignore_index=True)
    tables.to_parquet(args.out / "replication.parquet")
    shipped = pd.read_parquet(default_dir() / "metrics.parquet")
    check = tables[tables["items"].str.startswith("first")].merge(shipped, on=["task", "mode"], suffixes=("", "_shipped"))
    check["same"] = np.isclose(check["accuracy"], check["accuracy_shipped"])
    print(tables.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(check[["task", "mode", "accuracy", "accuracy_shipped", "same"]].to_string(index=False))


if __name__ == "__main__":
    main()
