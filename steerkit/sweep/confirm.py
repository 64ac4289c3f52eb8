"""Select on train, confirm on test, at the cost of the selection: the whole grid runs on the train items only; the
test items get only the cells chosen on train (plus the baselines).

:func:`steerkit.sweep.sweep` on items with a train/test split runs every cell on every item, so the test split pays
for the whole grid although the report reads one cell per (task, concept, method, scope) from it. Here the test
split costs ``1 + hints + selected cells`` rows per item instead of ``1 + hints + |grid|``, so a CPU can afford the
grid on a small train split and a large test split (the power of the confirmation grows with the test split only).

Both stages are ordinary sweeps in the results store (resumable; stage 2 is one sweep whose request lists the chosen
cells per task, :attr:`steerkit.sweep.plan.SweepRequest.cells`), and their rows are one
DataFrame that :func:`steerkit.sweep.report.best_cells` / ``write_report`` read unchanged: it selects on the
train rows (which hold the whole grid) and finds the selected cell among the test rows.

Example:
    >>> df = select_and_confirm(model, processor, items, vectors, layers=[4, 8], alphas=[0.5, 1.0],
    ...                         scopes=["image", "both"], out_dir="outputs/sweeps", pairs={"Count": ["counting"]})
    >>> write_report(df, "outputs/report")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch

from steerkit.errors import SelectionError
from steerkit.sweep.engine import BASELINE, PROMPTING, sweep
from steerkit.sweep.plan import as_vector_table
from steerkit.sweep.report import accuracy_grid, top_cells
from steerkit.tasks.schema import Item


def select_cells(train: pd.DataFrame, correct: str = "correct") -> pd.DataFrame:
    """The best (layer, alpha) per (task, method, concept, scope) on ``train`` rows, by the selection rule of
    :func:`~steerkit.sweep.report.best_cells` (:func:`~steerkit.sweep.report.top_cells`)."""
    grid = accuracy_grid(train, None, correct)
    if grid.empty:
        raise SelectionError("the selection sweep produced no steered rows; check the grid and the pairs")
    return top_cells(grid)


def select_and_confirm(
    model: torch.nn.Module,
    processor: Any,
    items: Sequence[Item],
    vectors: Any,
    layers: Sequence[int],
    alphas: Sequence[float],
    scopes: Sequence[str] = ("image",),
    *,
    select_split: str = "train",
    confirm_split: str = "test",
    progress: bool = True,
    **options: Any,
) -> pd.DataFrame:
    """The whole grid on the ``select_split`` items, then each selected cell on the ``confirm_split`` items.

    Args:
        model, processor, vectors, layers, alphas, scopes: as for :func:`steerkit.sweep.sweep`.
        items: items with a ``split`` of ``select_split`` or ``confirm_split`` (e.g. from
            :func:`steerkit.tasks.splits.stratified_split`); others raise :class:`~steerkit.errors.SelectionError`.
        **options: :class:`~steerkit.sweep.plan.SweepRequest` fields (``out_dir``, ``run_name``, ``pairs``,
            ``batch_size``, ``autocast``...), passed to every sweep.

    Returns:
        The rows of both stages (``stage`` column: "select" or "confirm"); ``df.attrs``: ``run_dir`` (stage 1's
        folder), ``run_dirs`` (every folder, with ``out_dir``), ``selected`` (the cells chosen on train).
    """
    splits = {it.split for it in items}
    if not {select_split, confirm_split} <= splits or splits - {select_split, confirm_split}:
        raise SelectionError(f"select_and_confirm needs items split into {select_split!r} and {confirm_split!r} "
                             f"only; got splits {sorted(map(str, splits))}. Split them first (e.g. "
                             "steerkit.tasks.splits.stratified_split, or items.split: stratified in a config)")
    train = [it for it in items if it.split == select_split]
    test = [it for it in items if it.split == confirm_split]
    run = options.pop("run_name", None) or "sweep"
    table = as_vector_table(vectors)

    first = sweep(model, processor, train, table, layers, alphas, scopes, run_name=f"{run}-select",
                  progress=progress, **options)
    chosen = select_cells(first)

    cells: dict[str, list[tuple[str, str, int, str, float]]] = {}
    for r in chosen.itertuples(index=False):
        cells.setdefault(r.task, []).append((r.method, r.concept, int(r.layer), r.scope, float(r.alpha)))
    sub = [it for it in test if it.task in cells]
    if not sub:
        raise SelectionError(f"no {confirm_split!r} item belongs to a task with a selected cell")
    # one capture per test item, then one row per chosen cell (the baselines computed once)
    second = sweep(model, processor, sub, table, sorted({c[2] for cs in cells.values() for c in cs}),
                   sorted({c[4] for cs in cells.values() for c in cs}),
                   [s for s in scopes if any(c[3] == s for cs in cells.values() for c in cs)],
                   run_name=f"{run}-confirm", progress=progress, cells=cells, **options)
    out = pd.concat([first.assign(stage="select"), second.assign(stage="confirm")], ignore_index=True)
    run_dirs = [d for d in (first.attrs.get("run_dir"), second.attrs.get("run_dir")) if d]
    out.attrs.update(run_dir=first.attrs.get("run_dir"), run_dirs=run_dirs,
                     mode=first.attrs.get("mode"), selected=chosen)
    return out


__all__ = ["select_and_confirm", "select_cells"]
