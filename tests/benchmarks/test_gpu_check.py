"""benchmarks/gpu_check.py: the --tiny run end to end on CPU (fields and their arithmetic, not timings)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from .scripts import script_module

PHASES = ("build", "letter_sweep", "floor", "paper_protocol", "generation")


@pytest.fixture(scope="module")
def check():
    """The check script as a module (benchmarks/ is not a package; it imports sweep_bench from its folder)."""
    with script_module("gpu_check") as module:
        yield module


@pytest.fixture(scope="module")
def tiny_run(check, tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check") / "check.json"
    n = torch.get_num_threads()
    try:
        result = check.main(["--tiny", "--threads", "1", "--no-progress", "--out", str(out)])
    finally:
        torch.set_num_threads(n)
    return result, json.loads(out.read_text())


def test_tiny_run_writes_every_phase(tiny_run):
    result, written = tiny_run
    assert written == json.loads(json.dumps(result))
    assert written["complete"] is True and written["tiny"] is True and written["device"] == "cpu"
    assert set(written["phase_seconds"]) == set(PHASES)
    assert all(t > 0 for t in written["phase_seconds"].values())
    assert written["wall_seconds"] >= sum(written["phase_seconds"].values())
    # 4 items over CV-Bench's four tasks, 2 layers x 2 strengths x 3 scopes
    assert written["n_items"] == 4 and written["tasks"] == ["Count", "Depth", "Distance", "Relation"]
    assert written["n_cells"] == 2 * 2 * 3 and written["scopes"] == ["image", "text", "both"]
    assert 0 < written["prompt_tokens_min"] <= written["prompt_tokens_mean"] <= written["prompt_tokens_max"]


def test_tiny_run_times_and_ratios(tiny_run):
    r = tiny_run[0]
    for key in ("engine_ms_per_item_cell", "floor_ms_per_item_cell", "matmul_tflops", "paper_ms_per_item_cell",
                "paper_1tok_lower_bound_ms_per_item_cell", "gen_engine_ms_per_item_cell",
                "gen_per_item_ms_per_item_cell"):
        assert r[key] > 0, key
    assert r["engine_ms_per_item_cell"] == pytest.approx(1000 * r["engine_seconds"] / (r["n_items"] * r["n_cells"]))
    assert r["engine_over_floor"] == pytest.approx(r["engine_ms_per_item_cell"] / r["floor_ms_per_item_cell"])
    assert r["engine_speedup_vs_paper"] == pytest.approx(r["paper_ms_per_item_cell"] / r["engine_ms_per_item_cell"])
    # the paper subsample: 2 items x 2 cells of different scopes; random weights never stop at EOS
    assert len(r["paper_items"]) == 2 and len({c[2] for c in r["paper_cells"]}) == 2
    assert r["paper_time_is_upper_bound"] == (r["paper_stopped_at_eos"] < 1.0)


def test_tiny_run_generation_is_exact(tiny_run):
    r = tiny_run[0]
    assert r["gen_rows"] == 2 * 2 * 3  # gen items x strengths x scopes
    assert r["gen_outputs_equal"] is True and r["gen_rows_equal_fraction"] == 1.0
    assert r["gen_distinct_outputs"] >= 2  # steering changed texts, so equality is not vacuous
    assert 0 < r["gen_new_tokens"] <= r["gen_rows"] * r["gen_max_new_tokens"]
    assert r["gen_speedup"] == pytest.approx(r["gen_per_item_ms_per_item_cell"] / r["gen_engine_ms_per_item_cell"])


def test_tiny_run_extrapolates_the_full_grid(tiny_run):
    r = tiny_run[0]
    units = 2638 * 16 * 6 * 3
    assert r["full_grid"] == {"items": 2638, "layers": 16, "strengths": 6, "scopes": 3, "cells": 288,
                              "item_cells": units}
    assert r["extrapolated_full_grid_s"] == pytest.approx(r["engine_ms_per_item_cell"] * units / 1000)
    assert r["extrapolated_full_grid_min"] == pytest.approx(r["extrapolated_full_grid_s"] / 60)
    assert r["meets_target"] == (r["extrapolated_full_grid_s"] <= 15 * 60)
    assert r["extrapolated_floor_s"] == pytest.approx(r["floor_ms_per_item_cell"] * units / 1000)
    assert r["extrapolated_gen_engine_s"] == pytest.approx(r["gen_engine_ms_per_item_cell"] * units / 1000)
    # scaled to the reference prompt length by the floor: longer than the tiny prompts here, so it costs more
    assert r["reference_prompt_tokens"] == 320 and r["floor_scale_to_reference"] > 1
    assert r["extrapolated_full_grid_s_at_reference_length"] == pytest.approx(
        r["extrapolated_full_grid_s"] * r["floor_scale_to_reference"])
    assert r["meets_target_at_reference_length"] == (r["extrapolated_full_grid_s_at_reference_length"] <= 900)


def test_spread_and_paper_cells(check):
    assert check.spread(list(range(10)), 3) == [0, 4, 9]
    assert check.spread([1, 2], 5) == [1, 2] and check.spread("abc", 1) == ["a"]
    cells = check.paper_cells(list(range(5, 21)), [0.1, 0.5, 1.0], ["image", "text", "both"], 3)
    assert cells == [(5, 0.1, "image"), (13, 0.5, "text"), (20, 1.0, "both")]
    assert check.extrapolate(2.0, {"a": 10, "b": 3}) == pytest.approx(0.06)
    assert math.prod(check.FULL_GRID.values()) == 759_744


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given where CUDA is missing")
def test_full_check_without_cuda_says_to_use_tiny(check, tmp_path):
    with pytest.raises(SystemExit, match="--tiny"):
        check.main(["--out", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()
