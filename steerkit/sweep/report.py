"""Reports of a sweep: accuracy grids, best cells in the paper's form "+7.3% (L5@1)", heatmaps.

The best cell of a (task, concept, method, scope) is chosen on the *selection* split (train) and confirmed on the
*confirmation* split (test): both are shown, each with a paired-bootstrap CI of the accuracy difference to the
unsteered baseline on the same items (:func:`steerkit.tasks.stats.paired_bootstrap_diff`). Without both splits
:func:`best_cells` refuses to run unless asked for ``in_sample=True``; then every label, table and figure says
"in-sample" (the best of many cells, measured on the items it was chosen on, is biased upwards).

Example:
    >>> best = best_cells(df)                       # one row per task x concept x method x scope
    >>> paper_table(best)                           # task x concept, cells like "+7.3% (L5@1) / +4.0% test"
    >>> heatmaps(df, method="meanshift", concept="counting").show()
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from steerkit.errors import SelectionError
from steerkit.sweep.engine import BASELINE, PROMPTING
from steerkit.tasks.stats import detectable_effect, paired_bootstrap_diff

GRID_KEYS = ("task", "method", "concept", "scope", "layer", "alpha")
IN_SAMPLE = "in-sample"  # selected_on / confirmed_on, and the suffix of every label, when there is no held-out split


def _fmt_alpha(alpha: float) -> str:
    return f"{alpha:g}"


def cell_label(delta: float, layer: int, alpha: float) -> str:
    """The paper's cell label: accuracy change in points and the cell, e.g. ``"+7.3% (L5@1)"``.

    Example:
        >>> cell_label(0.073, 5, 1.0)
        '+7.3% (L5@1)'
    """
    return f"{delta * 100:+.1f}% (L{int(layer)}@{_fmt_alpha(alpha)})"


def _with_split(df: pd.DataFrame, split: str | None) -> pd.DataFrame:
    return df if split is None else df[df["split"] == split]


def accuracy_grid(df: pd.DataFrame, split: str | None = None, correct: str = "correct") -> pd.DataFrame:
    """Accuracy of every steered cell next to its task's baseline accuracy on the same items.

    Returns columns ``task, method, concept, scope, layer, alpha, n, accuracy, baseline, delta``
    (``correct="greedy_correct"`` scores by the paper's greedy first token instead of letter log-likelihood).
    """
    d = _with_split(df, split)
    base = d[d.method == BASELINE].groupby("task")[correct].mean().rename("baseline")
    steered = d[~d.method.isin([BASELINE, PROMPTING])]
    g = steered.groupby(list(GRID_KEYS))[correct].agg(n="size", accuracy="mean").reset_index()
    g = g.merge(base, left_on="task", right_index=True, how="left")
    g["delta"] = g["accuracy"] - g["baseline"]
    return g


def _paired(df: pd.DataFrame, cond: pd.DataFrame, correct: str, n_boot: int, seed: int) -> dict[str, float]:
    """Paired difference (condition - baseline) over the items both have, with a bootstrap CI and the smallest
    effect these items could detect (``mde``: 80% power, two-sided 95%, at the observed share of changed items)."""
    base = df[df.method == BASELINE].set_index("item_id")[correct]
    c = cond.set_index("item_id")[correct]
    ids = c.index.intersection(base.index)
    if len(ids) == 0:
        return {"n": 0, "acc": np.nan, "base": np.nan, "delta": np.nan, "lo": np.nan, "hi": np.nan, "mde": np.nan}
    a, b = base.loc[ids].astype(float).to_numpy(), c.loc[ids].astype(float).to_numpy()
    iv = paired_bootstrap_diff(a, b, n_boot=n_boot, seed=seed)
    return {"n": len(ids), "acc": float(b.mean()), "base": float(a.mean()), "delta": iv.value, "lo": iv.lo,
            "hi": iv.hi, "mde": detectable_effect(len(ids), float(np.mean(a != b)))}


def top_cells(grid: pd.DataFrame, keys: Sequence[str] = ("task", "method", "concept", "scope")) -> pd.DataFrame:
    """The best row of an :func:`accuracy_grid` per group of ``keys``, in group order: the highest accuracy; ties go
    to the smaller strength, then the earlier layer (the cheaper intervention). The one selection rule of
    :func:`best_cells` and :func:`steerkit.sweep.confirm.select_cells`."""
    ranked = grid.sort_values(["accuracy", "alpha", "layer"], ascending=[False, True, True], kind="stable")
    return ranked.groupby(list(keys), sort=True).head(1).sort_values(list(keys), kind="stable").reset_index(drop=True)


def has_selection_splits(df: pd.DataFrame, select_split: str = "train", confirm_split: str = "test") -> bool:
    """Whether ``df`` holds rows of both the selection and the confirmation split (what :func:`best_cells` needs
    to report held-out numbers)."""
    splits = set(df["split"].dropna().unique()) if "split" in df else set()
    return select_split != confirm_split and {select_split, confirm_split} <= splits


def best_cells(
    df: pd.DataFrame,
    *,
    select_split: str = "train",
    confirm_split: str = "test",
    in_sample: bool = False,
    over: Sequence[str] = ("layer", "alpha"),
    correct: str = "correct",
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """The best cell per (task, concept, method, scope), selected on ``select_split``, confirmed on ``confirm_split``.

    ``over`` are the grid keys searched (add "scope" to choose the scope too). Each side reports accuracy, baseline
    accuracy, the paired difference and its bootstrap CI; ``label_*`` are the paper's strings; ``prompt_delta_*`` is
    the prompting baseline's difference for the same task and concept.

    Without rows of both splits this raises :class:`~steerkit.errors.SelectionError`: choosing the best of many
    cells and "confirming" it on the same items is not a confirmation. ``in_sample=True`` selects and reports on
    all items instead, and says so: ``selected_on`` and ``confirmed_on`` are "in-sample" and every label ends with
    "in-sample".

    Example:
        >>> best_cells(df)[["task", "concept", "label_select", "label_confirm"]]
    """
    if in_sample:
        sel_split = conf_split = None
    elif has_selection_splits(df, select_split, confirm_split):
        sel_split, conf_split = select_split, confirm_split
    else:
        splits = sorted(df["split"].dropna().unique()) if "split" in df else []
        raise SelectionError(
            f"best_cells needs rows of a selection split {select_split!r} and a separate confirmation split "
            f"{confirm_split!r}; these results have splits {splits}, so the best cell would be confirmed on the items "
            "it was chosen on. Give the items a train/test split before sweeping (e.g. "
            "steerkit.tasks.splits.stratified_split, or items.split: stratified in a sweep config), or pass "
            "in_sample=True to report in-sample numbers labelled as such")
    where = IN_SAMPLE if in_sample else None
    group_keys = [k for k in ("task", "concept", "method", "scope") if k not in over]
    rows: list[dict[str, Any]] = []
    for _, top in top_cells(accuracy_grid(df, sel_split, correct), group_keys).iterrows():
        cell = {k: top[k] for k in over}
        row: dict[str, Any] = {**{k: top[k] for k in group_keys}, **cell,
                               "selected_on": where or sel_split, "confirmed_on": where or conf_split}
        for side, split in (("select", sel_split), ("confirm", conf_split)):
            d = _with_split(df, split)
            d = d[d.task == row["task"]]
            cond = d[(d.method == row["method"]) & (d.concept == row["concept"])]
            for k in ("scope", *over):
                cond = cond[cond[k] == (row[k] if k in row else cell[k])]
            stats = _paired(d, cond, correct, n_boot, seed)
            row.update({f"{k}_{side}": v for k, v in stats.items()})
            label = cell_label(stats["delta"], row["layer"], row["alpha"]) if stats["n"] else ""
            row[f"label_{side}"] = f"{label} {IN_SAMPLE}" if label and in_sample else label
            prompt = d[(d.method == PROMPTING) & (d.concept == row["concept"])]
            row[f"prompt_delta_{side}"] = _paired(d, prompt, correct, n_boot, seed)["delta"] if len(prompt) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def paper_table(best: pd.DataFrame, *, method: str | None = None, scope: str | None = None) -> pd.DataFrame:
    """Task x concept table of ``"<train label> → test <delta> [lo, hi] (n N, MDE m)"`` strings for one method and
    scope (MDE: the smallest difference the test items could detect, :func:`steerkit.tasks.stats.detectable_effect`).

    In-sample results (``best_cells(..., in_sample=True)``) read ``"<label> in-sample [lo, hi]"``: there is no
    held-out column to point to.
    """
    b = best
    if method is not None:
        b = b[b.method == method]
    if scope is not None and "scope" in b:
        b = b[b.scope == scope]

    def text(r: pd.Series) -> str:
        if r.confirmed_on == IN_SAMPLE:
            return f"{r.label_select} [{r.lo_select * 100:+.1f}, {r.hi_select * 100:+.1f}]"
        conf = f"{r.delta_confirm * 100:+.1f}% [{r.lo_confirm * 100:+.1f}, {r.hi_confirm * 100:+.1f}]"
        mde = f" (n {int(r.n_confirm)}, MDE {r.mde_confirm * 100:.1f})" if r.get("n_confirm", 0) else ""
        return f"{r.label_select} → {r.confirmed_on} {conf}{mde}"

    b = b.assign(cell=b.apply(text, axis=1))
    index = ["task"] + (["method"] if method is None else []) + (["scope"] if scope is None and "scope" in b else [])
    # a task x concept pair that was not swept (e.g. outside a sweep's pairs) reads "—", not "nan"
    return b.pivot_table(index=index, columns="concept", values="cell", aggfunc="first").fillna("—")


def heatmap(grid: pd.DataFrame, *, title: str = "", value: str = "delta", zmid: float | None = 0.0) -> Any:
    """One plotly heatmap, layer (y) x strength (x), of ``value`` from an :func:`accuracy_grid` slice."""
    import plotly.graph_objects as go

    piv = grid.pivot_table(index="layer", columns="alpha", values=value, aggfunc="mean").sort_index()
    z = piv.to_numpy()
    text = [[("" if np.isnan(v) else f"{v * 100:+.1f}" if value == "delta" else f"{v:.2f}") for v in row] for row in z]
    fig = go.Figure(go.Heatmap(z=z, x=[_fmt_alpha(a) for a in piv.columns], y=[f"L{l}" for l in piv.index], text=text,
                               texttemplate="%{text}", colorscale="RdBu" if value == "delta" else "Viridis",
                               zmid=zmid if value == "delta" else None,
                               colorbar={"title": "Δ acc" if value == "delta" else value}))
    fig.update_layout(title=title, xaxis_title="strength α", yaxis_title="layer", height=360, width=520,
                      margin={"l": 60, "r": 20, "t": 50, "b": 50})
    return fig


def heatmaps(
    df: pd.DataFrame,
    *,
    method: str | None = None,
    concept: str | None = None,
    split: str | None = None,
    correct: str = "correct",
    in_sample: bool = False,
) -> Any:
    """A grid of heatmaps (rows: tasks, columns: scopes) of accuracy change vs baseline, layer x strength.

    ``in_sample=True`` (a report whose best cells were chosen and measured on the same items) says so in the title.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    grid = accuracy_grid(df, split, correct)
    method = method or sorted(grid.method.unique())[0]
    concept = concept or sorted(grid[grid.method == method].concept.unique())[0]
    grid = grid[(grid.method == method) & (grid.concept == concept)]
    tasks, scopes = sorted(grid.task.unique()), sorted(grid.scope.unique())
    fig = make_subplots(rows=len(tasks), cols=len(scopes), subplot_titles=[f"{t} · {s}" for t in tasks for s in scopes],
                        horizontal_spacing=0.08, vertical_spacing=0.12)
    lim = float(np.nanmax(np.abs(grid["delta"]))) if len(grid) else 1.0
    for i, t in enumerate(tasks):
        for j, s in enumerate(scopes):
            sub = heatmap(grid[(grid.task == t) & (grid.scope == s)])
            tr = sub.data[0]
            tr.update(zmin=-lim or -1, zmax=lim or 1, showscale=(i == 0 and j == len(scopes) - 1))
            fig.add_trace(tr, row=i + 1, col=j + 1)
    where = split or "all items"
    fig.update_layout(title=f"{method} · {concept}: accuracy change vs baseline ({where}"
                            f"{', ' + IN_SAMPLE if in_sample else ''})",
                      height=300 * len(tasks) + 80, width=380 * len(scopes) + 120)
    return fig if isinstance(fig, go.Figure) else go.Figure(fig)


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-markdown table of ``table`` with its index (no optional dependency)."""
    t = table.reset_index()
    head = [str(c) for c in t.columns]
    rows = [[str(v) for v in r] for r in t.itertuples(index=False)]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def write_report(df: pd.DataFrame, out_dir: str | Path, *, n_boot: int = 2000, in_sample: bool = False
                 ) -> dict[str, Path]:
    """Write ``best_cells.parquet``/``.csv``, ``accuracy_grid.parquet``, ``report.md`` and one heatmap HTML per
    (method, concept) into ``out_dir``; returns the paths by name.

    Needs a train and a test split (see :func:`best_cells`); ``in_sample=True`` writes an in-sample report instead,
    labelled as such in every table, heading and figure title.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    best = best_cells(df, n_boot=n_boot, in_sample=in_sample)
    best.to_parquet(out / "best_cells.parquet", index=False)
    best.to_csv(out / "best_cells.csv", index=False)
    paths["best_cells"] = out / "best_cells.parquet"
    accuracy_grid(df).to_parquet(out / "accuracy_grid.parquet", index=False)
    paths["accuracy_grid"] = out / "accuracy_grid.parquet"
    lines = ["# Sweep report" + (f" ({IN_SAMPLE})" if in_sample else ""), "",
             f"{df.item_id.nunique()} items, {len(df)} rows.", ""]
    if in_sample:
        lines += ["**In-sample**: each best cell was chosen and measured on the same items, with no held-out "
                  "confirmation; its gain is biased upwards. Sweep items with a train/test split for a held-out "
                  "number.", ""]
    else:
        lines += ["Best cells chosen on the train split and confirmed on the test split: train label → test "
                  "difference to the unsteered baseline on the same items [95% paired-bootstrap CI] (n test items, "
                  "MDE = the smallest difference those items detect with 80% power at the observed share of "
                  "changed answers).", ""]
        base = df[df.method == BASELINE].groupby(["task", "split"])["correct"].agg(["mean", "size"]).reset_index()
        lines += ["Unsteered baseline: " + "; ".join(f"{r.task} {r.split} {r['mean']:.3f} (n {r['size']})"
                                                    for _, r in base.iterrows()), ""]
    for (m, s), _ in best.groupby(["method", "scope"]):
        head = f"## {m} · scope {s}" + (f" ({IN_SAMPLE})" if in_sample else "")
        lines += [head, "", to_markdown(paper_table(best, method=m, scope=s)), ""]
    steered = df[~df.method.isin([BASELINE, PROMPTING])]
    # the landscape the selection saw: the train split when there is one (a select-then-confirm run measures only
    # the chosen cells on test, so heatmaps over all items would mix a full grid with single cells)
    split = None if in_sample else "train"
    shown = steered if split is None else steered[steered.split == split]
    for (m, c), _ in shown.groupby(["method", "concept"]):
        name = f"heatmap_{m}_{c}".replace(" ", "_").replace("/", "_")
        heatmaps(df, method=m, concept=c, split=split, in_sample=in_sample).write_html(out / f"{name}.html",
                                                                                       include_plotlyjs="cdn")
        paths[name] = out / f"{name}.html"
    (out / "report.md").write_text("\n".join(lines))
    paths["report"] = out / "report.md"
    return paths
