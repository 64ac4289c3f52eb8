"""Gap problems swept by generation through ``steerkit sweep CONFIG``: the organism's additions asked as the gap
harness asks them, killed mid-run and resumed to the rows of an uninterrupted run, and the unsteered baseline's
answers equal to ``run_gap``'s on the same problems and mode."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from steerkit.errors import DataError, GapError
from steerkit.gap import mode_input, problem_set, run_gap, style_for
from steerkit.sweep.config import load_items
from steerkit.sweep.engine import BASELINE
from steerkit.sweep.store import RunStore, list_runs
from steerkit.tasks.scoring import item_image

from .helpers import assert_resumed_equals, kill_cli_sweep, raw_parts

MODEL = "steerkit/organism"
MODE = "instruction_image"
N, TOKENS = 4, 40  # the organism's traces end in <answer> after ~33 tokens
LAYERS, ALPHAS = [1, 2], [20.0, 60.0]  # its residual norms are ~40-65: these strengths move some answers


@functools.cache
def _organism():
    from steerkit import load_model

    return load_model(MODEL)


def _config(tmp_path: Path, out: Path) -> Path:
    from steerkit.vectors import SteeringVector

    model, _ = _organism()
    tc = model.config.text_config
    g = torch.Generator().manual_seed(0)
    unit = {l: (v := torch.randn(tc.hidden_size, generator=g)) / v.norm() for l in LAYERS}
    vec = SteeringVector(unit, method="mean_shift", concept="counting", n_layers=tc.num_hidden_layers,
                         source_model="random")
    path = vec.save(tmp_path / "vectors" / "counting")
    cfg = {"model": MODEL, "items": {"source": "gap", "problems": "organism", "n": N, "seed": 0},
           "vectors": {"paths": [str(path)]}, "grid": {"layers": LAYERS, "alphas": ALPHAS, "scopes": ["image"]},
           "out": str(out), "batch_size": 2, "max_new_tokens": TOKENS, "report": False}
    file = tmp_path / f"gap-{out.name}.yaml"
    file.write_text(yaml.safe_dump(cfg))
    return file


def _app():
    from steerkit.cli import app

    return app


def test_gap_items_are_the_harness_inputs():
    items = load_items({"source": "gap", "problems": "organism", "n": 3}, MODEL)
    probs = problem_set("organism", 3, seed=0)
    style = style_for(probs)
    for it, p in zip(items, probs):
        x = mode_input(p, MODE, style)
        assert (it.id, it.open.prompt, it.open.answer, it.open.parser) == (p.id, x.prompt, p.answer, "answer_tag")
        assert it.choices == [] and it.task == f"gap/{MODE}" and it.question == p.question
        assert item_image(it).tobytes() == x.image.convert("RGB").tobytes()
    text = load_items({"source": "gap", "problems": "synthetic", "n": 2, "mode": "text"}, None)
    assert [it.image for it in text] == [None, None] and text[0].open.prompt.endswith(text[0].question)
    with pytest.raises(DataError, match="problem_split"):
        load_items({"source": "gap", "problems": "organism", "split": "test"}, MODEL)
    with pytest.raises(DataError, match="one model pass"):
        load_items({"source": "gap", "problems": "organism", "mode": "ocr_2p"}, MODEL)
    # image mode: the rendered problem with the style's image prompt (empty for the organism); the image carries it
    bare = load_items({"source": "gap", "problems": "organism", "n": 2, "mode": "image"}, MODEL)
    assert [it.open.prompt for it in bare] == ["", ""] and all(it.image is not None for it in bare)
    from steerkit.tasks import open_item

    with pytest.raises(DataError, match="needs an image"):  # nothing at all to generate from
        open_item("x", "", "3", parser="integer")
    with pytest.raises(GapError, match="ocr_1p"):  # the organism was never trained to transcribe
        load_items({"source": "gap", "problems": "organism", "mode": "ocr_1p"}, MODEL)


def test_cli_sweeps_gap_problems_resumes_after_a_kill_and_matches_run_gap(tmp_path):
    runner = CliRunner()
    res = runner.invoke(_app(), ["sweep", str(_config(tmp_path, tmp_path / "a")), "--no-progress"])
    assert res.exit_code == 0, res.output
    [run_a] = list_runs(tmp_path / "a")
    full = RunStore.from_dir(run_a).load()
    # 4 items x (2 layers x 2 strengths + baseline + prompting baseline), every one generated and read by tag
    assert len(full) == N * (len(LAYERS) * len(ALPHAS) + 2) and (full.answered_by == "generate").all()
    assert (full.correct == full.gen_correct).all() and full.gen_text.notna().all()
    base = full[full.method == BASELINE].set_index("item_id")
    steered = full[full.method == "mean_shift"].join(base.gen_text.rename("base_text"), on="item_id")
    assert (steered.gen_text != steered.base_text).any()  # or equal resumed rows would prove little

    # the unsteered baseline is run_gap's answer: same prompt and image, same greedy text, same verdict
    model, processor = _organism()
    probs = problem_set("organism", N, seed=0)
    gap = run_gap(model, processor, probs, modes=[MODE], max_new_tokens=TOKENS).set_index("item_id")
    assert sorted(base.index) == sorted(gap.index)
    gap = gap.loc[base.index]
    assert base.gen_text.tolist() == gap.response.tolist()
    assert base.gen_pred.tolist() == gap.answer.fillna("").tolist()
    assert base.gen_correct.astype(bool).tolist() == gap.correct.astype(bool).tolist()
    assert base.gen_answer.tolist() == gap.gold.tolist() and base.gen_correct.any()

    cfg = _config(tmp_path, tmp_path / "b")
    # killed in the second item batch after its first steered unit group: the first batch's rows are on disk
    run_b = kill_cli_sweep(cfg, tmp_path / "b", k=3)
    assert run_b.name == run_a.name  # the same configuration
    assert 0 < len(raw_parts(run_b)) < len(full)
    res = runner.invoke(_app(), ["sweep", str(cfg), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert_resumed_equals(full, run_b)
