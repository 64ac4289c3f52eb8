"""An interactive browser of sweep results for JupyterLab, with a static fallback for headless runs.

Pick model, method, concept, scope and split; move the layer and strength sliders; the accuracy line, the
layer x strength heatmap (a plotly ``FigureWidget``, with the chosen cell marked) and the list of items whose answer
flipped against the unsteered baseline update in place. Selecting a flipped item shows its image, question and
the answers before and after steering: the predicted letter, or for an item answered by generation (a row whose
``answered_by`` is not "letter") its parsed answer ``gen_pred``, with the generated text beside it (on hover in the
static table).

Under papermill or nbconvert there is no frontend to draw widgets, so :meth:`SweepApp.show` renders the same
content as static plotly figures and HTML (``mode="auto"`` decides from the environment; ``STEERKIT_WIDGETS=static``
or ``=widget`` forces a mode).

Example:
    >>> app = SweepApp({"organism": df}, items=items)
    >>> app.show()                        # widgets in JupyterLab, static figures under papermill
    >>> app.select(layer=2, alpha=1.0)    # what a slider move does
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from steerkit.sweep.engine import BASELINE, PROMPTING
from steerkit.sweep.report import accuracy_grid
from steerkit.tasks.schema import Item

ALL = "all items"
NO_ANSWER = "(no answer)"
"""What a generated row shows when its text gave no parsable answer (``gen_pred == ""``)."""


def has_frontend() -> bool:
    """Whether widgets will be drawn: a kernel started by a Jupyter server (not papermill/nbconvert)."""
    forced = os.environ.get("STEERKIT_WIDGETS", "").lower()
    if forced in ("static", "widget"):
        return forced == "widget"
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        return False
    # jupyter_server sets JPY_SESSION_NAME for the kernels it starts; papermill/nbclient kernels do not have it
    return bool(os.environ.get("JPY_SESSION_NAME") or os.environ.get("VSCODE_PID"))


def _png_b64(image: Any, size: int = 160) -> str:
    im = image.copy()
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.convert("RGB").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _load(results: Any) -> dict[str, pd.DataFrame]:
    if isinstance(results, pd.DataFrame):
        return {"model": results}
    if isinstance(results, (str, Path)):
        from steerkit.sweep.store import RunStore

        store = RunStore.from_dir(results)
        return {str(store.config.get("model", {}).get("name", Path(results).name)): store.load()}
    if isinstance(results, Mapping):
        return {str(k): (v if isinstance(v, pd.DataFrame) else next(iter(_load(v).values()))) for k, v in results.items()}
    raise TypeError("results: a DataFrame from sweep(), a run folder, or {model name: DataFrame or run folder}")


def _shown(rows: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(answer shown, gold shown, generated text) per row: a row answered by generation (``answered_by`` other than
    "letter"; its ``correct`` is ``gen_correct``) shows its parsed generation ``gen_pred`` against ``gen_answer``
    (the text ``gen_text`` goes with it), a letter-scored row its ``pred`` letter against ``answer``."""
    if "answered_by" not in rows:  # a letter-only sweep has no generation columns
        return rows["pred"], rows["answer"], pd.Series(None, index=rows.index, dtype=object)
    gen = rows["answered_by"].fillna("letter") != "letter"
    pred = rows["pred"].astype(object).where(~gen, rows["gen_pred"].fillna("").replace("", NO_ANSWER))
    gold = rows["answer"].astype(object).where(~gen, rows["gen_answer"])
    return pred, gold, rows["gen_text"].astype(object).where(gen, None)


def _escape(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else html.escape(str(value))


class SweepApp:
    """Sweep results browser (see the module docstring).

    Args:
        results: a ``sweep()`` DataFrame, a run folder, or ``{model name: DataFrame | run folder}``.
        items: the swept :class:`~steerkit.tasks.schema.Item` s, to show images and questions of flipped items.
        correct: "correct" (letter log-likelihood) or "greedy_correct" (the paper's greedy first token).
    """

    def __init__(self, results: Any, items: Sequence[Item] | None = None, *, correct: str = "correct"):
        self.results = _load(results)
        if not self.results:
            raise ValueError("no results to show: run steerkit.sweep.sweep(...) first")
        self.items = {it.id: it for it in (items or [])}
        self.correct = correct
        first = self.results[next(iter(self.results))]
        steered = first[~first.method.isin([BASELINE, PROMPTING])]
        if steered.empty:
            raise ValueError("the results hold no steered rows (only baselines); sweep at least one vector")
        r0 = steered.iloc[0]
        self.state: dict[str, Any] = {"model": next(iter(self.results)), "method": r0.method, "concept": r0.concept,
                                      "scope": r0.scope, "split": ALL, "layer": int(r0.layer), "alpha": float(r0.alpha)}
        self.figure: Any = None
        self._ui: dict[str, Any] = {}
        self._silent = False
        self._refresh_grid()

    # ------------------------------------------------------------------------------------------ data
    @property
    def df(self) -> pd.DataFrame:
        """Rows of the chosen model (and split)."""
        d = self.results[self.state["model"]]
        return d if self.state["split"] == ALL else d[d.split == self.state["split"]]

    def options(self, key: str) -> list[Any]:
        """Values available for a control given the other choices."""
        d = self.results[self.state["model"]]
        steered = d[~d.method.isin([BASELINE, PROMPTING])]
        if key == "model":
            return list(self.results)
        if key == "split":
            return [ALL, *sorted(d.split.dropna().unique())]
        if key == "method":
            return sorted(steered.method.unique())
        steered = steered[steered.method == self.state["method"]]
        if key == "concept":
            return sorted(steered.concept.unique())
        steered = steered[steered.concept == self.state["concept"]]
        if key == "scope":
            return sorted(steered.scope.unique())
        if key == "layer":
            return sorted(int(x) for x in steered.layer.unique())
        if key == "alpha":
            return sorted(float(x) for x in steered.alpha.unique())
        raise KeyError(key)

    def _refresh_grid(self) -> None:
        s = self.state
        for key in ("method", "concept", "scope", "layer", "alpha"):
            opts = self.options(key)
            if s[key] not in opts:
                s[key] = opts[0]
        g = accuracy_grid(self.df, None, self.correct)
        self.grid = g[(g.method == s["method"]) & (g.concept == s["concept"]) & (g.scope == s["scope"])]
        self.grid = self.grid.groupby(["layer", "alpha"], as_index=False).agg(
            accuracy=("accuracy", "mean"), baseline=("baseline", "mean"), delta=("delta", "mean"))

    def cell(self) -> pd.DataFrame:
        """Rows of the selected cell (one per item)."""
        s, d = self.state, self.df
        return d[(d.method == s["method"]) & (d.concept == s["concept"]) & (d.scope == s["scope"])
                 & (d.layer == s["layer"]) & (d.alpha == s["alpha"])]

    def summary(self) -> dict[str, float]:
        """Accuracy of the selected cell, of the baseline and of the prompting baseline, on the same items."""
        d, c = self.df, self.cell()
        base = d[(d.method == BASELINE) & d.item_id.isin(c.item_id)]
        prompt = d[(d.method == PROMPTING) & (d.concept == self.state["concept"]) & d.item_id.isin(c.item_id)]
        acc = float(c[self.correct].mean()) if len(c) else np.nan
        b = float(base[self.correct].mean()) if len(base) else np.nan
        return {"accuracy": acc, "baseline": b, "delta": acc - b, "n": len(c),
                "prompt": float(prompt[self.correct].mean()) if len(prompt) else np.nan}

    @property
    def flipped(self) -> pd.DataFrame:
        """Items whose correctness differs between the baseline and the selected cell.

        ``before``/``after`` are the answers: the predicted letter, or for items answered by generation the parsed
        generated answer (``gen_pred``, with ``answer`` the open gold answer and the texts in ``before_text`` /
        ``after_text``; None for letter-scored items)."""
        d, c = self.df, self.cell()
        base = d[d.method == BASELINE].set_index("item_id")
        c = c.set_index("item_id")
        ids = c.index.intersection(base.index)
        before, gold, before_text = _shown(base.loc[ids])
        after, _, after_text = _shown(c.loc[ids])
        out = pd.DataFrame({"task": c.loc[ids, "task"], "answer": gold, "before": before, "after": after,
                            "before_text": before_text, "after_text": after_text,
                            "was_correct": base.loc[ids, self.correct].astype(bool),
                            "now_correct": c.loc[ids, self.correct].astype(bool)})
        out = out[out.was_correct != out.now_correct]
        return out.assign(direction=np.where(out.now_correct, "fixed", "broken")).reset_index()

    # ------------------------------------------------------------------------------------------ figures
    def _heatmap_traces(self) -> tuple[dict[str, Any], dict[str, Any]]:
        g = self.grid
        layers, alphas = sorted(g.layer.unique()), sorted(g.alpha.unique())
        piv = g.pivot_table(index="layer", columns="alpha", values="delta").reindex(index=layers, columns=alphas)
        z = piv.to_numpy() * 100
        text = [["" if np.isnan(v) else f"{v:+.1f}" for v in row] for row in z]
        lim = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
        heat = dict(z=z, x=[f"{a:g}" for a in alphas], y=[f"L{l}" for l in layers], text=text,
                    zmin=-(lim or 1), zmax=lim or 1)
        marker = dict(x=[f"{self.state['alpha']:g}"], y=[f"L{self.state['layer']}"])
        return heat, marker

    def _title(self) -> str:
        s, m = self.state, self.summary()
        return (f"{s['model']} · {s['method']} · {s['concept']} · scope {s['scope']} — L{s['layer']}@{s['alpha']:g}: "
                f"acc {m['accuracy']:.3f} (baseline {m['baseline']:.3f}, Δ {m['delta'] * 100:+.1f} pts)")

    def static_figure(self) -> Any:
        """The heatmap (accuracy change in points vs baseline) with the selected cell marked, as a plain Figure."""
        import plotly.graph_objects as go

        fig = go.Figure()
        self._fill(fig)
        return fig

    def _fill(self, fig: Any) -> None:
        import plotly.graph_objects as go

        heat, marker = self._heatmap_traces()
        fig.add_trace(go.Heatmap(**heat, texttemplate="%{text}", colorscale="RdBu", zmid=0,
                                 colorbar={"title": "Δ acc (pts)"}, name="grid"))
        fig.add_trace(go.Scatter(**marker, mode="markers", name="selected",
                                 marker={"symbol": "square-open", "size": 34, "color": "black",
                                         "line": {"width": 3}}, showlegend=False))
        fig.update_layout(title={"text": self._title(), "font": {"size": 13}}, xaxis_title="strength α",
                          yaxis_title="layer", height=420, width=720, margin={"l": 60, "r": 20, "t": 60, "b": 50})

    def _update_figure(self) -> None:
        if self.figure is None:
            return
        heat, marker = self._heatmap_traces()
        with self.figure.batch_update():
            self.figure.data[0].update(**heat)
            self.figure.data[1].update(**marker)
            self.figure.layout.title.text = self._title()

    # ------------------------------------------------------------------------------------------ interaction
    def select(self, **choices: Any) -> dict[str, float]:
        """Change any of model, method, concept, scope, split, layer, alpha (what the controls do); returns
        :meth:`summary` of the new selection."""
        unknown = set(choices) - set(self.state)
        if unknown:
            raise KeyError(f"unknown controls {sorted(unknown)}; use {sorted(self.state)}")
        self.state.update({k: (int(v) if k == "layer" else float(v) if k == "alpha" else v) for k, v in choices.items()})
        if set(choices) - {"layer", "alpha"}:
            self._refresh_grid()
        self._update_figure()
        self._sync_controls()
        return self.summary()

    def _summary_html(self) -> str:
        m = self.summary()
        p = "" if np.isnan(m["prompt"]) else f" · prompting baseline <b>{m['prompt']:.3f}</b>"
        return (f"<span class='steerkit-acc'>accuracy <b>{m['accuracy']:.3f}</b> vs baseline <b>{m['baseline']:.3f}"
                f"</b> (Δ <b>{m['delta'] * 100:+.1f}</b> pts, n={m['n']}){p} · {len(self.flipped)} flipped</span>")

    def _item_html(self, item_id: str) -> str:
        row = self.flipped.set_index("item_id").loc[item_id]
        it = self.items.get(item_id)
        q = html.escape(it.prompt if it else item_id).replace("\n", "<br>")
        texts = "".join(f"<br>{when} generated: <code class='steerkit-gen'>{_escape(text)}</code>"
                        for when, text in (("before", row.before_text), ("after", row.after_text))
                        if _escape(text))
        return (f"<div style='max-width:420px'><b>{html.escape(item_id)}</b> ({_escape(row.task)}, answer "
                f"{_escape(row.answer)})<br>{q}<br>before: <b>{_escape(row.before)}</b> "
                f"({'right' if row.was_correct else 'wrong'}) → after: <b>{_escape(row.after)}</b> "
                f"({'right' if row.now_correct else 'wrong'}){texts}</div>")

    def _flip_options(self) -> list[tuple[str, str]]:
        f = self.flipped
        return [(f"{r.direction}: {r.item_id} ({r.before}→{r.after})", r.item_id) for r in f.itertuples()]

    def widget(self) -> Any:
        """The ipywidgets app (controls, accuracy line, FigureWidget heatmap, flipped-item browser)."""
        import ipywidgets as W
        import plotly.graph_objects as go

        s = self.state
        ui = self._ui
        wide = {"layout": W.Layout(width="330px"), "style": {"description_width": "70px"}}
        ui["model"] = W.Dropdown(options=self.options("model"), value=s["model"], description="model",
                                  **wide)
        ui["method"] = W.Dropdown(options=self.options("method"), value=s["method"], description="method",
                                  **wide)
        ui["concept"] = W.Dropdown(options=self.options("concept"), value=s["concept"], description="concept",
                                  **wide)
        ui["scope"] = W.Dropdown(options=self.options("scope"), value=s["scope"], description="scope",
                                  **wide)
        ui["split"] = W.Dropdown(options=self.options("split"), value=s["split"], description="split",
                                  **wide)
        ui["layer"] = W.SelectionSlider(options=self.options("layer"), value=s["layer"], description="layer",
                                        continuous_update=False, **wide)
        ui["alpha"] = W.SelectionSlider(options=self.options("alpha"), value=s["alpha"], description="strength",
                                        continuous_update=False, **wide)
        ui["summary"] = W.HTML(self._summary_html())
        ui["flips"] = W.Select(options=self._flip_options(), rows=8, description="flipped",
                               layout=W.Layout(width="360px"))
        ui["image"] = W.Image(format="png", layout=W.Layout(width="160px", height="160px"))
        ui["item"] = W.HTML()
        self.figure = go.FigureWidget()
        self._fill(self.figure)

        def on_change(key: str) -> Any:
            def handler(change: dict[str, Any]) -> None:
                if not self._silent:
                    self.select(**{key: change["new"]})

            return handler

        for key in ("model", "method", "concept", "scope", "split", "layer", "alpha"):
            ui[key].observe(on_change(key), names="value")
        ui["flips"].observe(lambda ch: self._show_item(ch["new"]), names="value")
        controls = W.VBox([ui["model"], ui["method"], ui["concept"], ui["scope"], ui["split"], ui["layer"],
                           ui["alpha"]])
        browser = W.HBox([ui["flips"], ui["image"], ui["item"]])
        box = W.VBox([W.HBox([controls, self.figure]), ui["summary"], browser])
        box.add_class("steerkit-sweep-app")
        return box

    def _show_item(self, item_id: str | None) -> None:
        if not item_id or "item" not in self._ui:
            return
        self._ui["item"].value = self._item_html(item_id)
        it = self.items.get(item_id)
        if it is not None and it.image is not None:
            self._ui["image"].value = base64.b64decode(_png_b64(it.image))

    def _sync_controls(self) -> None:
        if not self._ui:
            return
        self._silent = True  # setting options/values must not re-enter select()
        try:
            for key in ("method", "concept", "scope", "split", "layer", "alpha"):
                w = self._ui[key]
                opts = self.options(key)
                if list(w.options) != opts:
                    w.options = opts
                if w.value != self.state[key]:
                    w.value = self.state[key]
            self._ui["summary"].value = self._summary_html()
            self._ui["flips"].options = self._flip_options()
        finally:
            self._silent = False

    # ------------------------------------------------------------------------------------------ display
    def static_html(self, max_items: int = 12) -> str:
        """The accuracy line and a table of flipped items (with thumbnails when items were given)."""
        rows = []
        for r in self.flipped.head(max_items).itertuples():
            it = self.items.get(r.item_id)
            img = (f"<img src='data:image/png;base64,{_png_b64(it.image, 96)}'>" if it is not None and it.image
                   is not None else "")
            q = html.escape(it.question or it.prompt)[:160] if it is not None else ""
            # a generated answer carries its whole generation as the cell's hover text
            before, after = (f"<td title='{_escape(t)}'>" if _escape(t) else "<td>" for t in (r.before_text,
                                                                                               r.after_text))
            rows.append(f"<tr><td>{img}</td><td>{html.escape(r.item_id)}<br>{q}</td><td>{_escape(r.answer)}</td>"
                        f"{before}{_escape(r.before)}</td>{after}{_escape(r.after)}</td><td>{r.direction}</td></tr>")
        table = ("<table><tr><th></th><th>item</th><th>answer</th><th>before</th><th>after</th><th></th></tr>"
                 + "".join(rows) + "</table>") if rows else "<p>no flipped items in this cell</p>"
        return self._summary_html() + table

    def show(self, mode: str = "auto") -> None:
        """Display the app: "widget" (interactive), "static" (figures + HTML) or "auto" (widget with a frontend).

        Returns None (so that a notebook cell ending in ``app.show()`` does not display it twice); the figure is
        ``app.figure`` (a FigureWidget, or the static Figure).
        """
        from IPython.display import HTML, display

        interactive = has_frontend() if mode == "auto" else mode == "widget"
        if interactive:
            display(self.widget())
            return
        self.figure = self.static_figure()
        display(self.figure)
        display(HTML(self.static_html()))


def demo_results(out_dir: str | Path, *, n_per_task: int = 6, seed: int = 0) -> tuple[pd.DataFrame, list[Item]]:
    """A small real sweep for demos and screenshots: tiny LLaVA on synthetic CV-Bench items (seconds on CPU).

    The tiny model's weights are random, so the numbers are meaningless; use the organism for real ones.
    """
    import torch

    from steerkit.models.tiny import tiny_model
    from steerkit.sweep.engine import sweep
    from steerkit.tasks.synth import generate

    model, processor = tiny_model("llava")
    items = generate(["Count", "Relation"], n_per_task=n_per_task, seed=seed, size=64)
    items = [dataclasses.replace(it, split="train" if i % 3 else "test") for i, it in enumerate(items)]
    g = torch.Generator().manual_seed(seed)
    d = model.config.text_config.hidden_size
    vectors = {("meanshift", "counting"): {l: torch.randn(d, generator=g) * 0.03 for l in (0, 1)},
               ("meanshift", "spatial relationship"): {l: torch.randn(d, generator=g) * 0.03 for l in (0, 1)}}
    df = sweep(model, processor, items, vectors, layers=[0, 1], alphas=[0.5, 1.0, 2.0, 4.0],
               scopes=["image", "text", "both"], out_dir=out_dir, run_name="demo-tiny-llava", progress=False)
    return df, items
