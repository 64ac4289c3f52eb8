"""Plotly views of items and accuracies (static-friendly: they render under papermill and export to HTML).

Example:
    >>> items_figure(generate(n_per_task=2)).show()
    >>> accuracy_figure(accuracy_table(df)).show()
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from steerkit.tasks.schema import Item


def items_figure(items: Sequence[Item], *, per_task: int = 2, thumb: int = 160, wrap: int = 38) -> Any:
    """A grid of example items, one row per task: the image, with the question and the correct choice as title."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    by_task: dict[str, list[Item]] = {}
    for it in items:
        if it.image is not None and len(by_task.setdefault(it.task, [])) < per_task:
            by_task[it.task].append(it)
    tasks = list(by_task)
    if not tasks:
        raise ValueError("no items with images to show")
    titles = []
    for t in tasks:
        row = by_task[t] + [None] * (per_task - len(by_task[t]))
        for it in row:
            if it is None:
                titles.append("")
                continue
            q = "<br>".join(textwrap.wrap(it.question or it.prompt.split("\n")[0], wrap)[:3])
            titles.append(f"<b>{t}</b> {it.id}<br>{q}<br>answer: ({it.answer}) {it.choices[it.answer_index]}")
    fig = make_subplots(rows=len(tasks), cols=per_task, subplot_titles=titles, vertical_spacing=0.12)
    for r, t in enumerate(tasks, start=1):
        for c, it in enumerate(by_task[t], start=1):
            im = it.image.convert("RGB")
            im.thumbnail((thumb, thumb))
            fig.add_trace(go.Image(z=np.asarray(im)), row=r, col=c)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_annotations(font_size=9)
    fig.update_layout(height=(thumb + 120) * len(tasks), width=(thumb + 150) * per_task,
                      margin=dict(l=10, r=10, t=90, b=10))
    return fig


def accuracy_figure(table: pd.DataFrame, *, x: str = "task", color: str = "condition",
                    chance: pd.Series | None = None, title: str = "Accuracy with 95% bootstrap CIs") -> Any:
    """Bars of ``accuracy`` with ``lo``/``hi`` error bars (a :func:`steerkit.tasks.stats.accuracy_table`)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    groups = table[color].unique() if color in table else [None]
    for g in groups:
        sub = table if g is None else table[table[color] == g]
        fig.add_trace(go.Bar(x=sub[x], y=sub["accuracy"], name=str(g),
                             error_y=dict(type="data", symmetric=False, array=sub["hi"] - sub["accuracy"],
                                          arrayminus=sub["accuracy"] - sub["lo"])))
    if chance is not None:
        fig.add_trace(go.Scatter(x=list(chance.index), y=list(chance.values), mode="markers", name="chance",
                                 marker=dict(symbol="line-ew-open", size=30, color="black")))
    fig.update_layout(barmode="group", yaxis=dict(range=[0, 1], title="accuracy"), title=title, height=380)
    return fig


def chance_levels(items: Sequence[Item]) -> pd.Series:
    """Expected accuracy of uniform guessing per task (mean of 1 / n_choices)."""
    df = pd.DataFrame({"task": [it.task for it in items], "p": [1 / len(it.choices) for it in items]})
    return df.groupby("task")["p"].mean()
