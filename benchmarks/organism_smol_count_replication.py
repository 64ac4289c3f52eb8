"""Re-test the SmolLM2 organism's Count steering gain on a fresh held-out draw, with the cells fixed in advance.

The select_confirm sweep (``benchmarks/configs/organism_smol_steering.yaml``, seed 0) chose, on its train items, four
Count cells that its test items then confirmed (docs/organism-smol.md). This script scores those four cells, the
unsteered model and the prompting baseline on a new draw (``organism_smol_count_replication.yaml``, seed 1), drops
every item that the earlier sweep or the ability table had scored, and reports for each pre-registered cell the paired
difference to the unsteered model [95% paired-bootstrap CI], McNemar's exact p, Holm's p over the four, and the
smallest effect these items could detect. The grid's other cells are reported as exploratory, not as confirmations.

Example:
    STEERKIT_THREADS=2 python benchmarks/organism_smol_count_replication.py --out /tmp/count-replication
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from steerkit.sweep.config import SweepConfig, load_items, run_config
from steerkit.tasks.stats import detectable_effect, holm, mcnemar_exact, paired_bootstrap_diff
from steerkit.tasks.synth import item_key
from steerkit.threads import set_threads

HERE = Path(__file__).parent
CONFIG = HERE / "configs" / "organism_smol_count_replication.yaml"
EARLIER = HERE / "configs" / "organism_smol_steering.yaml"
# (method, layer, alpha, scope) chosen on train and confirmed on test by the seed-0 sweep (docs/organism-smol.md)
PREREGISTERED = [("mean_shift", 12, 1.0, "both"), ("mean_shift", 12, 1.0, "text"),
                 ("probe", 12, 1.0, "both"), ("probe", 8, 1.0, "text")]


def earlier_items() -> set[bytes]:
    """Every Count item the seed-0 sweep or the ability-table replication (first 1,000 per mode) scored."""
    from steerkit.models.organism import world as w
    from steerkit.models.organism.evaluation import EVAL_SEED

    earlier = SweepConfig.from_yaml(EARLIER)
    # item_key: question, choices, answer and pixels (all image-mode items, so the pixels carry the scene)
    seen = {item_key(it) for it in load_items(dict(earlier.items, tasks=["Count"]), earlier.model)}
    seen |= {item_key(it) for it in w.world_items("Count", 1000, seed=EVAL_SEED, mode="image", split="test")}
    return seen


def analyse(rows: pd.DataFrame, keep: set[str]) -> pd.DataFrame:
    """One row per condition: accuracy, the paired difference to the unsteered model and its tests."""
    rows = rows[rows.item_id.isin(keep)]
    wide = rows.pivot_table(index="item_id", columns=["method", "layer", "alpha", "scope"], values="correct",
                            aggfunc="first").astype(float)
    base = wide[("none", -1, 0.0, "none")].to_numpy()
    out = []
    for cell in wide.columns:
        if cell[0] == "none":
            continue
        steered = wide[cell].to_numpy()
        diff = paired_bootstrap_diff(base, steered, seed=0)
        test = mcnemar_exact(base, steered)
        discordant = (test.only_a + test.only_b) / len(base)
        out.append({"method": cell[0], "layer": cell[1], "alpha": cell[2], "scope": cell[3],
                    "role": "pre-registered" if cell in PREREGISTERED else (
                        "prompt baseline" if cell[0] == "prompt" else "exploratory"),
                    "n": len(base), "unsteered": base.mean(), "accuracy": steered.mean(), "diff": diff.value,
                    "lo": diff.lo, "hi": diff.hi, "fixed": test.only_b, "broken": test.only_a, "p": test.pvalue,
                    "mde": detectable_effect(len(base), discordant)})
    table = pd.DataFrame(out)
    pre = table.role == "pre-registered"
    table["p_holm"] = np.nan
    table.loc[pre, "p_holm"] = holm(table.loc[pre, "p"].to_numpy())
    return table.sort_values(["role", "diff"], ascending=[False, False]).reset_index(drop=True)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    set_threads(2)
    cfg = SweepConfig.from_yaml(CONFIG)
    cfg = dataclasses.replace(cfg, out=str(args.out))
    seen = earlier_items()
    items = load_items(cfg.items, cfg.model)
    keep = {it.id for it in items if item_key(it) not in seen}
    print(f"{len(items)} items drawn, {len(items) - len(keep)} dropped as scored before, {len(keep)} kept")
    rows = run_config(cfg)
    table = analyse(rows, keep)
    table.to_parquet(args.out / "count_replication.parquet")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))


if __name__ == "__main__":
    main()
