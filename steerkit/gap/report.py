"""Accuracy per mode with paired bootstrap CIs against Text, and plotly figures of the gap and of render sweeps.

Uncertainty comes from :mod:`steerkit.tasks.stats` (bootstrap CI per mode, paired bootstrap of each mode minus
Text on the same items, McNemar's exact test).

Example:
    >>> rep = gap_report(df)                  # one row per mode
    >>> plot_gap(rep).write_html("gap.html")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from steerkit.errors import GapError
from steerkit.gap.modes import ALL_MODES, MODE_LABELS


def mode_label(mode: str) -> str:
    """Display label of a mode; "instruction_image@caveat" (a mode under another font) -> "Instr.+Image @caveat"."""
    base, _, variant = mode.partition("@")
    label = MODE_LABELS.get(base, base)
    return f"{label} @{variant}" if variant else label


def _paired(df: pd.DataFrame, mode: str, baseline: str, keys: Sequence[str]) -> tuple[pd.Series, pd.Series]:
    a = df[df["mode"] == baseline].set_index(list(keys))["correct"]
    b = df[df["mode"] == mode].set_index(list(keys))["correct"]
    common = a.index.intersection(b.index)
    return a.loc[common].astype(float), b.loc[common].astype(float)


def gap_report(df: pd.DataFrame, *, baseline: str = "text", by: Sequence[str] = (), n_boot: int = 2000,
               seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Accuracy per mode (and per ``by`` group, e.g. ``["config"]`` of a sweep) with a bootstrap CI, and the paired
    difference to ``baseline`` on the same items with its paired bootstrap CI and McNemar p-value.

    Columns: [by...], mode, label, n, accuracy, acc_lo, acc_hi, diff, diff_lo, diff_hi, mcnemar_p, format_ok,
    mean_chars, median_chars.

    Example:
        >>> gap_report(df)[["mode", "accuracy", "diff", "diff_lo", "diff_hi"]]
    """
    from steerkit.tasks.stats import bootstrap_ci, mcnemar_exact, paired_bootstrap_diff

    if df.empty:
        raise GapError("no results to report; run_gap returned an empty frame")
    rows = []
    groups = df.groupby(list(by), dropna=False) if by else [((), df)]
    base_all = df[df["mode"] == baseline]
    for key, sub in groups:
        key = key if isinstance(key, tuple) else (key,)
        # Protocol order (the paper's five, then ocr_external), then any other mode names alphabetically.
        modes = [m for m in ALL_MODES if m in set(sub["mode"])] + sorted(set(sub["mode"]) - set(ALL_MODES))
        for mode in modes:
            part = sub[sub["mode"] == mode]
            acc = bootstrap_ci(part["correct"].astype(float).to_numpy(), n_boot=n_boot, seed=seed, level=level)
            row: dict[str, Any] = dict(zip(by, key))
            row.update(mode=mode, label=mode_label(mode), n=len(part), accuracy=acc.value,
                       acc_lo=acc.lo, acc_hi=acc.hi, format_ok=part["format_ok"].mean(),
                       mean_chars=part["response_chars"].mean(), median_chars=part["response_chars"].median())
            # A sweep runs Text once (its own group): pair each group's rows with the global baseline rows.
            base_rows = sub[sub["mode"] == baseline]
            if base_rows.empty:
                base_rows = base_all
            if mode != baseline and len(base_rows):
                a, b = _paired(pd.concat([base_rows, part]), mode, baseline, ["item_id"])
                if len(a):
                    d = paired_bootstrap_diff(a.to_numpy(), b.to_numpy(), n_boot=n_boot, seed=seed, level=level)
                    row.update(diff=d.value, diff_lo=d.lo, diff_hi=d.hi, n_paired=len(a),
                               mcnemar_p=mcnemar_exact(a.to_numpy(), b.to_numpy()).pvalue)
            rows.append(row)
    out = pd.DataFrame(rows)
    for col in ("diff", "diff_lo", "diff_hi", "n_paired", "mcnemar_p"):
        if col not in out:
            out[col] = float("nan")
    return out


def compare_runs(before: pd.DataFrame, after: pd.DataFrame, *, modes: Sequence[str] | None = None,
                 n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Per mode: accuracy before and after (e.g. distillation) on the same items, with a paired bootstrap CI of
    after minus before and McNemar's p.

    Example:
        >>> compare_runs(gap_before, gap_after, modes=["text", "instruction_image"])
    """
    from steerkit.tasks.stats import bootstrap_ci, mcnemar_exact, paired_bootstrap_diff

    rows = []
    for mode in modes or [m for m in ALL_MODES if m in set(before["mode"]) & set(after["mode"])]:
        a = before[before["mode"] == mode].set_index("item_id")["correct"].astype(float)
        b = after[after["mode"] == mode].set_index("item_id")["correct"].astype(float)
        common = a.index.intersection(b.index)
        if not len(common):
            raise GapError(f"mode {mode!r}: before and after share no items; evaluate the same problems")
        a, b = a.loc[common].to_numpy(), b.loc[common].to_numpy()
        d = paired_bootstrap_diff(a, b, n_boot=n_boot, seed=seed, level=level)
        ca, cb = bootstrap_ci(a, n_boot=n_boot, seed=seed, level=level), bootstrap_ci(b, n_boot=n_boot, seed=seed,
                                                                                     level=level)
        rows.append(dict(mode=mode, label=mode_label(mode), n=len(common), before=ca.value,
                         before_lo=ca.lo, before_hi=ca.hi, after=cb.value, after_lo=cb.lo, after_hi=cb.hi,
                         diff=d.value, diff_lo=d.lo, diff_hi=d.hi, mcnemar_p=mcnemar_exact(a, b).pvalue,
                         significant=bool(d.lo > 0 or d.hi < 0)))
    return pd.DataFrame(rows)


def plot_gap(report: pd.DataFrame, title: str = "Accuracy per input mode") -> Any:
    """Bar chart of accuracy per mode with its bootstrap CI (plotly figure)."""
    import plotly.graph_objects as go

    fig = go.Figure(go.Bar(
        x=report["label"], y=report["accuracy"],
        error_y=dict(type="data", symmetric=False, array=report["acc_hi"] - report["accuracy"],
                     arrayminus=report["accuracy"] - report["acc_lo"]),
        text=[f"{v:.2f}" for v in report["accuracy"]], textposition="outside"))
    fig.update_layout(title=title, yaxis=dict(title="accuracy", range=[0, 1.1]), xaxis_title="mode",
                      template="plotly_white")
    return fig


def plot_sweep(df: pd.DataFrame, x: str = "font", *, mode: str = "instruction_image", baseline: str = "text",
               title: str | None = None, n_boot: int = 1000) -> Any:
    """Accuracy of ``mode`` against a render knob (``font``, ``size``, ``scale``, ``invert``) with CIs, and the Text
    accuracy on the same items as a dashed line (plotly figure)."""
    import plotly.graph_objects as go

    from steerkit.tasks.stats import bootstrap_ci

    part = df[df["mode"] == mode]
    rows = []
    for value, sub in part.groupby(x, dropna=False, sort=True):
        ci = bootstrap_ci(sub["correct"].astype(float).to_numpy(), n_boot=n_boot)
        rows.append((str(value), ci.value, ci.lo, ci.hi))
    xs, ys, lo, hi = zip(*rows) if rows else ((), (), (), ())
    fig = go.Figure(go.Scatter(x=list(xs), y=list(ys), mode="markers+lines", name=MODE_LABELS.get(mode, mode),
                               error_y=dict(type="data", symmetric=False, array=[h - y for h, y in zip(hi, ys)],
                                            arrayminus=[y - low for y, low in zip(ys, lo)])))
    base = df[df["mode"] == baseline]
    if len(base):
        fig.add_hline(y=float(base["correct"].mean()), line_dash="dash",
                      annotation_text=f"{MODE_LABELS.get(baseline, baseline)} {base['correct'].mean():.2f}")
    fig.update_layout(title=title or f"{MODE_LABELS.get(mode, mode)} accuracy by {x}", xaxis_title=x,
                      yaxis=dict(title="accuracy", range=[0, 1.05]), template="plotly_white")
    return fig


def plot_before_after(comparison: pd.DataFrame, title: str = "Before vs after self-distillation") -> Any:
    """Grouped bars of accuracy before and after per mode (from :func:`compare_runs`), with bootstrap CIs, and the
    paired difference with its CI in the hover text (plotly figure)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for when, colour in (("before", "#9aa5b1"), ("after", "#2b6cb0")):
        fig.add_bar(name=when, x=comparison["label"], y=comparison[when], marker_color=colour,
                    error_y=dict(type="data", symmetric=False, array=comparison[f"{when}_hi"] - comparison[when],
                                 arrayminus=comparison[when] - comparison[f"{when}_lo"]),
                    hovertext=[f"diff {d:+.3f} [{lo:+.3f}, {hi:+.3f}]" for d, lo, hi in
                               zip(comparison["diff"], comparison["diff_lo"], comparison["diff_hi"])])
    fig.update_layout(barmode="group", title=title, yaxis=dict(title="accuracy", range=[0, 1.1]),
                      template="plotly_white")
    return fig
