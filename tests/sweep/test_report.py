"""Reports on a hand-made result table whose best cells are known."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from steerkit.errors import SelectionError
from steerkit.sweep.report import (accuracy_grid, best_cells, cell_label, has_selection_splits, heatmap, heatmaps,
                                   paper_table, write_report)


def _rows(n_train=20, n_test=10):
    """Count task: baseline 50%; cell (L1, 1.0) is +30 points on train and +20 on test; other cells = baseline."""
    rows = []
    for i in range(n_train + n_test):
        split = "train" if i < n_train else "test"
        base = i % 2 == 0
        meta = dict(item_id=f"i{i}", item_index=i, task="Count", split=split, answer="A", n_choices=2)
        rows.append({**meta, "method": "none", "concept": "", "layer": -1, "alpha": 0.0, "scope": "none",
                     "correct": base})
        rows.append({**meta, "method": "prompt", "concept": "counting", "layer": -1, "alpha": 0.0, "scope": "prompt",
                     "correct": base or i % 10 == 1})  # +10 points
        for layer, alpha in itertools.product([0, 1], [0.5, 1.0]):
            good = layer == 1 and alpha == 1.0
            # flip baseline-wrong items to right: 6 of 20 train (30%), 2 of 10 test (20%)
            flip = good and not base and ((split == "train" and i in (1, 3, 5, 7, 9, 11)) or i in (21, 23))
            rows.append({**meta, "method": "meanshift", "concept": "counting", "layer": layer, "alpha": alpha,
                         "scope": "image", "correct": base or flip})
    return pd.DataFrame(rows)


def test_cell_label_is_the_papers_form():
    assert cell_label(0.073, 5, 1.0) == "+7.3% (L5@1)"
    assert cell_label(-0.02, 12, 0.2) == "-2.0% (L12@0.2)"


def test_best_cell_is_selected_on_train_and_confirmed_on_test():
    df = _rows()
    grid = accuracy_grid(df, "train")
    assert len(grid) == 4 and np.isclose(grid.baseline.iloc[0], 0.5)
    best = best_cells(df, n_boot=500)
    assert len(best) == 1
    b = best.iloc[0]
    assert (b.layer, b.alpha) == (1, 1.0)
    assert b.label_select == "+30.0% (L1@1)" and b.label_confirm == "+20.0% (L1@1)"
    assert 0 < b.lo_select < 0.3 < b.hi_select and b.lo_confirm <= 0.2 <= b.hi_confirm
    assert np.isclose(b.prompt_delta_select, 0.10) and np.isclose(b.prompt_delta_confirm, 0.10)
    table = paper_table(best, method="meanshift", scope="image")
    assert table.loc["Count", "counting"].startswith("+30.0% (L1@1) → test +20.0%")
    assert b.selected_on == "train" and b.confirmed_on == "test" and "in-sample" not in b.label_select


@pytest.mark.parametrize("splits", [("test",), ("train",), ()])
def test_no_held_out_split_raises_unless_in_sample_is_asked_for(splits, tmp_path):
    df = _rows()
    df = df.assign(split=splits[0]) if splits else df.drop(columns="split")
    assert not has_selection_splits(df)
    with pytest.raises(SelectionError, match="in_sample=True") as err:
        best_cells(df, n_boot=100)
    assert "stratified_split" in str(err.value)
    with pytest.raises(SelectionError):
        write_report(df, tmp_path / "r", n_boot=100)
    best = best_cells(df, n_boot=100, in_sample=True)
    b = best.iloc[0]
    assert b.selected_on == "in-sample" and b.confirmed_on == "in-sample" and (b.layer, b.alpha) == (1, 1.0)
    # 30 items: 8 of 15 baseline-wrong items flipped -> +26.7 points, on the items the cell was chosen on
    assert b.label_select == "+26.7% (L1@1) in-sample" and b.label_confirm == "+26.7% (L1@1) in-sample"
    cell = paper_table(best, method="meanshift", scope="image").loc["Count", "counting"]
    assert cell.startswith("+26.7% (L1@1) in-sample [") and "test" not in cell and "→" not in cell
    assert "in-sample" in heatmaps(df, method="meanshift", concept="counting", in_sample=True).layout.title.text
    paths = write_report(df, tmp_path / "r", n_boot=100, in_sample=True)
    md = paths["report"].read_text()
    assert md.startswith("# Sweep report (in-sample)") and "## meanshift · scope image (in-sample)" in md
    assert "in-sample [" in md and "→ test" not in md
    html = next(p for n, p in paths.items() if n.startswith("heatmap_")).read_text()
    assert "all items, in-sample" in html


def test_heatmaps_and_written_report(tmp_path):
    df = _rows()
    fig = heatmap(accuracy_grid(df).query("task == 'Count'"))
    assert np.array(fig.data[0].z).shape == (2, 2)
    z = np.array(fig.data[0].z)
    assert z[1, 1] == pytest.approx(z.max()) and z.max() > 0  # L1 @ 1.0 is the hot cell
    grid = heatmaps(df, method="meanshift", concept="counting")
    assert len(grid.data) == 1
    paths = write_report(df, tmp_path, n_boot=100)
    assert (tmp_path / "best_cells.parquet").exists() and paths["report"].read_text().count("(L1@1)") >= 1
    assert "in-sample" not in paths["report"].read_text()
    assert any(p.suffix == ".html" for p in paths.values())
