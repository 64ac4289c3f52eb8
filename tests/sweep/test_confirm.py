"""Task-concept pairs and select-then-confirm: the same rows as a full grid sweep, computed only where they are read."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from steerkit.errors import DataError, SelectionError, SteeringError
from steerkit.sweep.confirm import select_and_confirm, select_cells
from steerkit.sweep.config import SweepConfig
from steerkit.sweep.engine import BASELINE, PROMPTING, sweep
from steerkit.sweep.plan import SweepRequest, make_plan
from steerkit.sweep.report import best_cells, write_report
from steerkit.tasks.stats import detectable_effect
from steerkit.vectors import SteeringVector
from steerkit.vectors.vector import match_norms

from .helpers import make_items, make_vectors

LAYERS, ALPHAS, SCOPES = [0, 1], [0.5, 4.0], ["image", "both"]
KEY = ["item_id", "method", "concept", "layer", "alpha", "scope"]
PAIRS = {"Count": ["counting"], "Relation": ["spatial_relation"]}


def _steered(df: pd.DataFrame) -> pd.DataFrame:
    return df[~df.method.isin([BASELINE, PROMPTING])]


def _vectors(model):
    return make_vectors(model, concepts=("counting", "spatial_relation"), layers=LAYERS)


def test_pairs_steer_each_task_only_with_its_concepts_and_equal_the_full_grid(tiny):
    model, processor = tiny("llava")
    items, vecs = make_items(12), _vectors(model)
    full = sweep(model, processor, items, vecs, LAYERS, ALPHAS, SCOPES, progress=False, batch_size=4)
    paired = sweep(model, processor, items, vecs, LAYERS, ALPHAS, SCOPES, progress=False, batch_size=4, pairs=PAIRS)
    st = _steered(paired)
    assert {(t, c) for t, c in zip(st.task, st.concept)} == {("Count", "counting"), ("Relation", "spatial_relation")}
    assert len(st) == len(items) * len(LAYERS) * len(ALPHAS) * len(SCOPES)  # one concept per item, not two
    # the rows that are computed are the full grid's rows (batches cut by task change only padding-free groupings)
    both = st.merge(_steered(full), on=KEY, suffixes=("", "_full"))
    assert len(both) == len(st)
    assert (both["pred"] == both["pred_full"]).all()
    for a, b in zip(both.logprobs, both.logprobs_full):
        np.testing.assert_allclose(a, b, atol=1e-4)
    plan = make_plan(items, vecs, SweepRequest(layers=tuple(LAYERS), alphas=tuple(ALPHAS), batch_size=4,
                                               pairs=PAIRS, rank=0, world_size=1))
    assert all(len({it.task for it in b.items}) == 1 for b in plan.batches)
    assert plan.units_total < len(plan.batches) * plan.units_per_batch


def test_pairs_errors_name_the_fix(tiny):
    model, processor = tiny("llava")
    items, vecs = make_items(6), _vectors(model)
    with pytest.raises(SteeringError, match="no vector has"):
        sweep(model, processor, items, vecs, LAYERS, ALPHAS, progress=False, pairs={"Count": ["colour"],
                                                                                    "Relation": []})
    with pytest.raises(SteeringError, match="no entry for tasks"):
        sweep(model, processor, items, vecs, LAYERS, ALPHAS, progress=False, pairs={"Count": ["counting"]})


def test_select_and_confirm_measures_only_chosen_cells_on_test_and_reports_like_the_full_grid(tiny, tmp_path):
    model, processor = tiny("llava")
    items, vecs = make_items(18), _vectors(model)
    opts = dict(batch_size=4, pairs=PAIRS)
    full = sweep(model, processor, items, vecs, LAYERS, ALPHAS, SCOPES, progress=False, **opts)
    df = select_and_confirm(model, processor, items, vecs, LAYERS, ALPHAS, SCOPES, progress=False,
                            out_dir=tmp_path, run_name="t", **opts)
    chosen = df.attrs["selected"]
    assert chosen.equals(select_cells(full[full.split == "train"]))
    test = _steered(df[df.split == "test"])
    # the test items are scored under exactly the selected cells: one row per item and chosen cell
    sel = chosen.merge(test, on=["task", "method", "concept", "scope", "layer", "alpha"], how="right",
                       indicator=True)
    assert (sel["_merge"] == "both").all()
    n_test = pd.Series([it.task for it in items if it.split == "test"]).value_counts()
    assert len(test) == sum(n_test[t] * k for t, k in chosen.task.value_counts().items())
    assert len(test) < len(_steered(full[full.split == "test"]))
    # ... and they are the full grid's rows for those cells; one baseline row per test item
    m = test.merge(_steered(full), on=KEY, suffixes=("", "_full"))
    assert len(m) == len(test) and (m.correct == m.correct_full).all()
    for method in (BASELINE, PROMPTING):  # baselines once per test item; a task's hint is its own concept's
        base = df[(df.method == method) & (df.split == "test")]
        assert base.item_id.is_unique and set(base.item_id) == {it.id for it in items if it.split == "test"}
    hinted = df[df.method == PROMPTING]
    assert {(t, c) for t, c in zip(hinted.task, hinted.concept)} <= {(t, c) for t, cs in PAIRS.items() for c in cs}
    # the report of the cheap protocol equals the report of the full grid, cell for cell
    cols = ["task", "method", "concept", "scope", "layer", "alpha", "delta_select", "delta_confirm", "n_confirm"]
    a = best_cells(df, n_boot=200)[cols].reset_index(drop=True)
    b = best_cells(full, n_boot=200)[cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    paths = write_report(df, tmp_path / "report", n_boot=200)
    assert "MDE" in paths["report"].read_text()
    # a rerun resumes every stage from the store: nothing recomputed, the same rows
    parts = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.parquet") if "report" not in p.parts)
    assert len(df.attrs["run_dirs"]) == 2
    again = select_and_confirm(model, processor, items, vecs, LAYERS, ALPHAS, SCOPES, progress=False,
                               out_dir=tmp_path, run_name="t", **opts)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.parquet") if "report" not in p.parts) == parts
    pd.testing.assert_frame_equal(again.sort_values(KEY + ["split"]).reset_index(drop=True),
                                  df.sort_values(KEY + ["split"]).reset_index(drop=True))


def test_select_and_confirm_needs_both_splits(tiny):
    model, processor = tiny("llava")
    items = [it for it in make_items(6) if it.split == "train"]
    with pytest.raises(SelectionError, match="stratified_split"):
        select_and_confirm(model, processor, items, _vectors(model), LAYERS, ALPHAS, progress=False)
    with pytest.raises(DataError, match="items.split"):
        SweepConfig.from_dict({"protocol": "select_confirm", "items": {"source": "model", "split": "none"}})
    with pytest.raises(DataError, match="protocol"):
        SweepConfig.from_dict({"protocol": "best"})


def test_detectable_effect():
    # normal approximation: (1.96 + 0.84) * sqrt(0.1 / 200) = 0.0626
    assert detectable_effect(200, 0.10) == pytest.approx(2.8016 * np.sqrt(0.1 / 200), rel=1e-3)
    assert detectable_effect(100, 0.2) > detectable_effect(400, 0.2)
    # no changed answer: still the one-directional floor, never zero
    assert detectable_effect(200, 0.0) == pytest.approx(2.8016 ** 2 / 200, rel=1e-3)
    with pytest.raises(ValueError):
        detectable_effect(0, 0.1)


def test_match_norms_keeps_directions_and_takes_reference_norms():
    g = torch.Generator().manual_seed(0)
    probe = SteeringVector({l: torch.randn(16, generator=g) for l in (0, 1)}, method="probe", concept="c",
                           n_layers=2).normalize()
    ms = SteeringVector({0: torch.randn(16, generator=g) * 7, 1: torch.randn(16, generator=g) * 30},
                        method="mean_shift", concept="c", n_layers=2)
    out = match_norms(probe, ms)
    for l in (0, 1):
        assert float(out[l].norm()) == pytest.approx(float(ms[l].norm()), rel=1e-5)
        assert torch.nn.functional.cosine_similarity(out[l], probe[l], dim=0) == pytest.approx(1.0, abs=1e-6)
    assert out.extra["norm_matched_to"] == "mean_shift" and out.method == "probe"
