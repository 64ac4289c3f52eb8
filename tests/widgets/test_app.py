"""The widget app's state machine: controls change the figure, accuracy and flipped items; static fallback."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from PIL import Image

from steerkit.tasks.schema import Item
from steerkit.widgets import SweepApp, has_frontend


def _results(n=12):
    """Baseline right on even items; cell (L1, 2.0) of concept "counting" also fixes items 1 and 3."""
    rows = []
    for i in range(n):
        meta = dict(item_id=f"i{i}", item_index=i, task="Count", split="train" if i < 8 else "test", answer="A",
                    n_choices=2)
        base = i % 2 == 0
        rows.append({**meta, "method": "none", "concept": "", "layer": -1, "alpha": 0.0, "scope": "none",
                     "correct": base, "pred": "A" if base else "B"})
        for concept, layer, alpha in itertools.product(["counting", "spatial relationship"], [0, 1], [0.5, 2.0]):
            fix = concept == "counting" and layer == 1 and alpha == 2.0 and i in (1, 3)
            ok = base or fix
            rows.append({**meta, "method": "meanshift", "concept": concept, "layer": layer, "alpha": alpha,
                         "scope": "image", "correct": ok, "pred": "A" if ok else "B"})
    return pd.DataFrame(rows)


def _items(n=12):
    return [Item(id=f"i{i}", image=Image.new("RGB", (32, 32), (i * 20, 0, 0)), prompt=f"Q{i}? (A) x (B) y",
                 choices=["x", "y"], answer="A", task="Count") for i in range(n)]


def test_controls_update_figure_accuracy_and_flips():
    app = SweepApp({"m": _results()}, items=_items())
    box = app.widget()
    assert box is not None and isinstance(app.figure, go.FigureWidget)
    ui = app._ui
    assert app.state["concept"] == "counting" and app.summary()["delta"] == 0
    title0, marker0 = app.figure.layout.title.text, (app.figure.data[1].x, app.figure.data[1].y)
    ui["layer"].value = 1
    ui["alpha"].value = 2.0  # what a slider move does
    assert (app.figure.data[1].x, app.figure.data[1].y) != marker0 and app.figure.data[1].y == ("L1",)
    assert app.figure.layout.title.text != title0 and "L1@2" in app.figure.layout.title.text
    s = app.summary()
    assert s["accuracy"] == pytest.approx(8 / 12) and s["delta"] == pytest.approx(2 / 12)
    assert "+16.7" in ui["summary"].value
    assert [v for _, v in ui["flips"].options] == ["i1", "i3"]
    ui["flips"].value = "i3"
    assert "i3" in ui["item"].value and "before: <b>B</b>" in ui["item"].value and ui["image"].value
    # the heatmap has the hot cell at (L1, 2.0) for counting and nothing for the other concept
    z = np.array(app.figure.data[0].z)
    assert z[1, 1] == pytest.approx(100 * 2 / 12) and np.count_nonzero(z) == 1
    ui["concept"].value = "spatial relationship"
    assert np.count_nonzero(np.array(app.figure.data[0].z)) == 0 and ui["flips"].options == ()
    ui["split"].value = "test"
    assert app.summary()["n"] == 4


def test_select_and_static_fallback(monkeypatch):
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.delenv("STEERKIT_WIDGETS", raising=False)
    assert not has_frontend()  # plain python / papermill: no Jupyter-server kernel
    monkeypatch.setenv("STEERKIT_WIDGETS", "widget")
    assert has_frontend()
    app = SweepApp(_results(), items=_items())
    summary = app.select(layer=1, alpha=2.0)
    assert summary["delta"] == pytest.approx(2 / 12)
    fig = app.static_figure()
    assert isinstance(fig, go.Figure) and fig.data[1].y == ("L1",)
    html = app.static_html()
    assert html.count("<img") == 2 and "fixed" in html
    with pytest.raises(KeyError):
        app.select(colour="red")


def test_show_static_displays_figures(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    app = SweepApp(_results())
    assert app.show(mode="static") is None
    assert isinstance(shown[0], go.Figure) and "accuracy" in shown[1].data


def test_app_reads_a_run_folder(tmp_path):
    from steerkit.sweep.store import RunStore

    store = RunStore.open(tmp_path, {"model": {"name": "m1"}}, name="m1")
    store.add(_results().to_dict("records"))
    store.flush()
    app = SweepApp(store.path)
    assert list(app.results) == ["m1"] and app.options("layer") == [0, 1]
    with pytest.raises(ValueError, match="no steered rows"):
        SweepApp(_results().query("method == 'none'"))


def test_generated_rows_show_the_parsed_generation():
    """Rows answered by generation (open items: no letter, ``pred`` None) show ``gen_pred`` and their text."""
    df = _results(4)
    gen = ~df.item_id.isin(["i0", "i1"])  # i2, i3 generated; i0, i1 keep their letters
    df["answered_by"] = np.where(gen, "generate", "letter")
    df["gen_answer"] = np.where(gen, "85", None)
    df["gen_pred"] = np.where(gen, np.where(df.correct, "85", "86"), None)
    df.loc[gen & (df.item_id == "i3") & (df.method == "none"), "gen_pred"] = ""  # no parsable answer
    df["gen_text"] = np.where(gen, "47+38 = <answer>" + df.gen_pred + "</answer>", None)
    df.loc[gen, "pred"] = None
    df.loc[gen, "answer"] = ""
    items = _items(4)
    app = SweepApp(df, items=items)
    app.select(layer=1, alpha=2.0)
    f = app.flipped.set_index("item_id")
    assert list(f.index) == ["i1", "i3"]
    assert (f.loc["i1", "before"], f.loc["i1", "after"], f.loc["i1", "answer"]) == ("B", "A", "A")
    assert pd.isna(f.loc["i1", "before_text"])  # a letter row has no generation
    assert (f.loc["i3", "before"], f.loc["i3", "after"], f.loc["i3", "answer"]) == ("(no answer)", "85", "85")
    assert f.loc["i3", "after_text"] == "47+38 = <answer>85</answer>"
    assert [label for label, _ in app._flip_options()] == ["fixed: i1 (B→A)", "fixed: i3 ((no answer)→85)"]
    detail = app._item_html("i3")
    assert "after: <b>85</b> (right)" in detail and "47+38 = &lt;answer&gt;85&lt;/answer&gt;" in detail
    assert "generated" not in app._item_html("i1")
    table = app.static_html()
    assert "title='47+38 = &lt;answer&gt;85&lt;/answer&gt;'>85</td>" in table  # the text on hover
    assert "<td>B</td><td>A</td>" in table  # the letter row as before
