"""Open-answer items swept by generation: rows equal per-item generate() under steer(); answer="auto" generates items
with an open form and scores multiple-choice items by letter; a killed generation sweep resumes without losing or
duplicating a row, in the library and through ``steerkit sweep CONFIG``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

from steerkit.errors import DataError, SteeringError
from steerkit.steer import assert_no_hooks
from steerkit.sweep.engine import BASELINE, GENERATION_COLUMNS, LETTER_COLUMNS, PROMPTING, sweep
from steerkit.sweep.plan import SweepRequest, make_plan
from steerkit.sweep.store import ROW_KEY, RunStore, list_runs
from steerkit.tasks.loaders import load_clevr_count
from steerkit.tasks.open_answer import OpenAnswer, open_item, score_generation
from steerkit.tasks.scoring import PAPER_PREFIX, item_image, parse_letter
from steerkit.tasks.splits import CONCEPT_HINTS
from tests.tasks import fixtures as fx

from .helpers import assert_resumed_equals, kill_cli_sweep, make_items, make_vectors, raw_parts
from .test_generate import per_item

LAYERS, ALPHAS, SCOPES = [0, 1], [0.5, 2.0], ["image", "text", "both"]
TOKENS = 6
SCALE = 0.1  # tiny random vectors at this size move the tiny models' generations, differently per strength


def _clevr(tmp_path: Path, answers=("3", "5", "10", "4"), **kw) -> list:
    return list(load_clevr_count(fx.make_clevr(tmp_path / "clevr.parquet", answers=answers), **kw))


def _unit_rows(df: pd.DataFrame, method: str, layer: int, alpha: float, scope: str) -> pd.DataFrame:
    return df[(df.method == method) & (df.layer == layer) & (df.alpha == alpha) & (df.scope == scope)]


# ------------------------------------------------------------------------------------------ reading answers
def test_open_answers_are_read_by_their_parser():
    count = OpenAnswer("How many cubes? Answer with a single number.", "3")
    assert count.parse("There are 3 cubes.") == "3" and count.is_correct("3")
    assert count.parse("3 or 4") is None and not count.is_correct(None)  # several integers: no answer
    tagged = open_item("p", "What is 47 + 38? Put it in <answer></answer>.", "85")
    assert score_generation(tagged, "47+38 = 85 <answer>85</answer>")["gen_correct"]
    assert score_generation(tagged, "<answer>86</answer>") == {"gen_text": "<answer>86</answer>", "gen_pred": "86",
                                                               "gen_correct": False}
    mc = make_items(1)[0]  # no open form: generation is read as a choice letter
    assert score_generation(mc, f"({mc.answer})")["gen_correct"]
    with pytest.raises(DataError, match="parser"):
        OpenAnswer("q", "1", parser="float")
    with pytest.raises(DataError, match="exactly one integer"):
        OpenAnswer("q", "many")  # a gold answer the integer parser cannot read
    with pytest.raises(DataError, match="open form"):  # no choices and no open form
        dataclasses.replace(mc, choices=[], answer="")


def test_clevr_loader_keeps_the_open_integer_answer(tmp_path):
    items = _clevr(tmp_path)
    assert [it.open.answer for it in items] == ["3", "5", "10", "4"]
    it = items[0]
    assert it.open.prompt == "How many items are there in the image? Answer with a single number."
    assert it.open.parser == "integer" and it.open.auto == "generate" and "(A)" not in it.open.prompt
    assert int(it.choices[it.answer_index]) == 3  # the multiple-choice form stays
    assert {i.open.auto for i in _clevr(tmp_path / "b", open_auto="both")} == {"both"}
    sc = fx.make_superclevr(tmp_path / "sc", counts=(4, 9))
    from steerkit.tasks.loaders import load_superclevr_count

    assert [i.open.answer for i in load_superclevr_count(sc)] == ["4", "9"]


# ------------------------------------------------------------------------------------ rows = per-item generate
@pytest.mark.parametrize("when", ["prefill", "all"])
def test_generated_rows_equal_per_item_generate_under_steer(tiny, tmp_path, when):
    model, processor = tiny("llava")
    items = _clevr(tmp_path)
    vecs = make_vectors(model, layers=LAYERS, scale=SCALE)
    vec = vecs[("meanshift", "counting")]
    # batch_size 3: batches of 3 and 1 items, so the batched rows are padded differently from the reference
    df = sweep(model, processor, items, vecs, LAYERS, ALPHAS, SCOPES, batch_size=3, progress=False,
               max_new_tokens=TOKENS, when=when)
    assert df.attrs["generation_mode"] == "replay"  # verified against mode "full" on the first group
    assert (df.answered_by == "generate").all() and df.pred.isna().all() and df.logprobs.isna().all()
    assert len(df) == len(items) * (len(LAYERS) * len(ALPHAS) * len(SCOPES) + 2)
    prompts = [it.open.prompt for it in items]
    images = [item_image(it) for it in items]
    for layer in LAYERS:
        rows = [(i, a, s) for i in range(len(items)) for a in ALPHAS for s in SCOPES]
        ref = per_item(model, processor, prompts, images, vec[layer], layer, rows, when=when, max_new_tokens=TOKENS)
        got = [_unit_rows(df, "meanshift", layer, a, s).set_index("item_id").loc[items[i].id] for i, a, s in rows]
        assert [g.gen_text for g in got] == ref
    base = df[df.method == BASELINE].set_index("item_id").loc[[it.id for it in items]]
    plain = per_item(model, processor, prompts, images, vec[0], 0, [(i, 0.0, "both") for i in range(4)],
                     max_new_tokens=TOKENS, steered=False)
    assert base.gen_text.tolist() == plain
    hinted = df[df.method == PROMPTING].set_index("item_id").loc[[it.id for it in items]]
    hint = CONCEPT_HINTS["counting"]
    ref = per_item(model, processor, [f"{hint} {p}" for p in prompts], images, vec[0], 0,
                   [(i, 0.0, "both") for i in range(4)], max_new_tokens=TOKENS, steered=False)
    assert hinted.gen_text.tolist() == ref
    # each row's answer is its text read by the item's parser, and `correct` is that verdict
    by_id = {it.id: it for it in items}
    for r in df.itertuples():
        assert (r.gen_pred, r.gen_correct) == (by_id[r.item_id].open.parse(r.gen_text) or "",
                                               by_id[r.item_id].open.is_correct(r.gen_pred or None))
        assert r.correct == r.gen_correct and r.gen_answer == by_id[r.item_id].open.answer
    # steering changes generations, and the strengths differ, or the equalities above would prove little
    steered = df[df.method == "meanshift"].merge(base.reset_index()[["item_id", "gen_text"]], on="item_id",
                                                 suffixes=("", "_base"))
    assert (steered.gen_text != steered.gen_text_base).any()
    assert (df[df.method == "meanshift"].groupby(["item_id", "layer", "scope"]).gen_text.nunique() > 1).any()
    full = sweep(model, processor, items, vecs, LAYERS, ALPHAS, SCOPES, batch_size=4, progress=False,
                 max_new_tokens=TOKENS, when=when, mode="full")
    pd.testing.assert_frame_equal(full, df)
    assert_no_hooks(model)


# ------------------------------------------------------------------------------------------- answer per item
def test_auto_generates_open_items_and_scores_multiple_choice_by_letter(tiny, tmp_path):
    model, processor = tiny("llava")
    mc = make_items(3)
    clevr = _clevr(tmp_path)
    both = [dataclasses.replace(it, id=f"{it.id}/both", open=dataclasses.replace(it.open, auto="both"))
            for it in clevr[:2]]
    items = [mc[0], clevr[0], mc[1], *both, clevr[1], mc[2]]  # interleaved: batches are cut where the way changes
    vecs = make_vectors(model, layers=[1], scale=SCALE)
    kw = dict(layers=[1], alphas=[1.0], scopes=["image"], batch_size=4, progress=False, max_new_tokens=TOKENS)
    plan = make_plan(items, vecs, SweepRequest(**kw, rank=0, world_size=1))
    assert [b.answered_by for b in plan.batches] == ["letter", "generate", "letter", "both", "generate", "letter"]
    df = sweep(model, processor, items, vecs, **kw)
    assert list(df.columns[-len(GENERATION_COLUMNS):]) == list(GENERATION_COLUMNS)
    how = df.groupby("item_id").answered_by.agg(set).to_dict()
    assert how == {**{it.id: {"letter"} for it in mc}, **{it.id: {"generate"} for it in clevr[:2]},
                   **{it.id: {"both"} for it in both}}
    letter, gen, two = (df[df.answered_by == h] for h in ("letter", "generate", "both"))
    assert letter.gen_text.isna().all() and letter.gen_correct.isna().all()
    assert (letter.correct == letter.letter_correct).all() and letter.pred.notna().all()
    assert gen.pred.isna().all() and gen.letter_correct.isna().all() and gen.gen_text.notna().all()
    assert two.pred.notna().all() and two.gen_text.notna().all() and (two.correct == two.gen_correct).all()
    assert (two.letter_correct == (two.pred == two.answer)).all()
    # the letter scores are those of a letter-only sweep (which has no generation columns at all)
    only = sweep(model, processor, mc + both, vecs, answer="letter", **kw)
    assert list(only.columns) == list(df.columns[:-len(GENERATION_COLUMNS)])
    key = ["item_id", "method", "concept", "layer", "alpha", "scope"]
    mine = df[df.answered_by != "generate"].sort_values(key).reset_index(drop=True)
    only = only.sort_values(key).reset_index(drop=True)
    assert mine[key].equals(only[key]) and mine.pred.tolist() == only.pred.tolist()
    assert mine.letter_correct.tolist() == only.correct.tolist()
    np.testing.assert_allclose(np.concatenate(mine.logprobs.to_list()), np.concatenate(only.logprobs.to_list()),
                               atol=1e-5)
    # and the generations of the "both" items are those of generating them alone
    alone = sweep(model, processor, both, vecs, answer="generate", **kw).sort_values(key).reset_index(drop=True)
    mine = df[df.answered_by == "both"].sort_values(key).reset_index(drop=True)
    assert mine.gen_text.tolist() == alone.gen_text.tolist()
    # a letter-only request on letter items keeps the run configuration it had before generation existed
    assert make_plan(mc, vecs, SweepRequest(**kw, rank=0, world_size=1)).config({"name": "m"}, mc).keys() == \
        make_plan(mc, vecs, SweepRequest(**kw, rank=0, world_size=1, answer="letter")).config({"name": "m"}, mc).keys()
    assert "generation" not in make_plan(mc, vecs, SweepRequest(**kw, rank=0, world_size=1)).config({}, mc)


def test_generate_on_multiple_choice_items_is_the_papers_protocol(tiny):
    model, processor = tiny("qwen2_vl")
    items = make_items(3)
    vecs = make_vectors(model, layers=[1], scale=SCALE)
    df = sweep(model, processor, items, vecs, [1], [2.0], ["both"], answer="generate", progress=False,
               max_new_tokens=TOKENS, prompt_baseline=False)
    assert (df.answered_by == "generate").all() and df.pred.isna().all()
    prompts = [PAPER_PREFIX + it.prompt for it in items]
    ref = per_item(model, processor, prompts, [item_image(it) for it in items], vecs[("meanshift", "counting")][1],
                   1, [(i, 2.0, "both") for i in range(3)], max_new_tokens=TOKENS)
    got = df[df.method == "meanshift"].set_index("item_id").loc[[it.id for it in items]]
    assert got.gen_text.tolist() == ref
    assert got.gen_pred.tolist() == [parse_letter(t, it.choices) or "" for t, it in zip(ref, items)]
    assert got.gen_answer.tolist() == [it.answer for it in items]


def test_answer_errors_say_what_to_do(tiny):
    model, processor = tiny("llava")
    vecs = make_vectors(model, layers=[1])
    only_open = [open_item("o1", "What is 2 + 2? <answer></answer>", "4", image=make_items(1)[0].image)]
    with pytest.raises(SteeringError, match="cannot be scored by letter"):
        sweep(model, processor, only_open, vecs, [1], [1.0], answer="letter", progress=False)
    with pytest.raises(SteeringError, match="answer="):
        SweepRequest(layers=(1,), alphas=(1.0,), answer="guess")
    with pytest.raises(SteeringError, match="when="):
        SweepRequest(layers=(1,), alphas=(1.0,), when="decode")
    # an open-only item needs no letter scorer: it sweeps by generation
    df = sweep(model, processor, only_open, vecs, [1], [1.0], progress=False, max_new_tokens=3)
    assert (df.answered_by == "generate").all() and set(df.gen_answer) == {"4"}


# ------------------------------------------------------------------------------------------------ resuming
class Stop(Exception):
    pass


@pytest.mark.parametrize("stop_after", [4, 10])
def test_interrupted_generation_sweep_resumes_to_identical_rows(tiny, tmp_path, stop_after):
    model, processor = tiny("llava")
    items = [*_clevr(tmp_path), *make_items(2)]  # generated and letter-scored units in one run
    vecs = make_vectors(model, concepts=("counting", "spatial relationship"), layers=[0, 1], scale=SCALE)

    def run(root, **kw):
        kw = {"max_new_tokens": TOKENS, **kw}
        return sweep(model, processor, items, vecs, [0, 1], [0.5, 2.0], ["image", "both"], out_dir=root,
                     run_name="g", batch_size=2, progress=False, **kw)

    full = run(tmp_path / "a")

    def bomb(p):
        if p.units_done >= stop_after:
            raise Stop

    with pytest.raises(Stop):
        run(tmp_path / "b", callback=bomb, flush_every=1)
    [run_dir] = list_runs(tmp_path / "b")
    assert 0 < len(raw_parts(run_dir)) < len(full)
    resumed = run(tmp_path / "b")
    pd.testing.assert_frame_equal(full.drop(columns="logprobs"), resumed.drop(columns="logprobs"), check_exact=True)
    lp = [np.asarray(x) for x in full.logprobs if x is not None]
    np.testing.assert_array_equal(np.concatenate(lp), np.concatenate([np.asarray(x) for x in resumed.logprobs
                                                                      if x is not None]))
    raw = raw_parts(run_dir)
    assert len(raw) == len(full) and not raw.duplicated(subset=list(ROW_KEY)).any()  # nothing recomputed
    n_parts = len(list((run_dir / "parts").glob("part-*")))
    run(tmp_path / "b")
    assert len(list((run_dir / "parts").glob("part-*"))) == n_parts
    # another generation setting is another configuration, never mixed with these rows
    run(tmp_path / "b", max_new_tokens=TOKENS + 1)
    assert len(list_runs(tmp_path / "b")) == 2


# ------------------------------------------------------------------------------------ the CLI, end to end
def _cli_config(tmp_path: Path, out: Path) -> Path:
    from steerkit.vectors import SteeringVector

    g = torch.Generator().manual_seed(0)
    v = SteeringVector({l: torch.randn(32, generator=g) for l in (0, 1)}, method="mean_shift", concept="counting",
                       n_layers=2, source_model="random")
    path = v.save(tmp_path / "vectors" / "counting")
    clevr = fx.make_clevr(tmp_path / "clevr_count_70k" / "test.parquet", answers=("3", "5", "10", "4", "0"))
    cfg = {"model": "tiny/llava", "items": {"source": "clevr", "path": str(clevr), "n": 5},
           "vectors": {"paths": [str(path)]}, "grid": {"layers": [0, 1], "alphas": [0.5, 2.0], "scopes": ["image"]},
           "out": str(out), "batch_size": 2, "answer": "auto", "max_new_tokens": 5, "when": "all",
           "stop_strings": ["."]}
    file = tmp_path / f"sweep-{out.name}.yaml"
    file.write_text(yaml.safe_dump(cfg))
    return file




def test_cli_sweeps_clevr_counting_by_generation_and_resumes_after_a_kill(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app_(), ["sweep", str(_cli_config(tmp_path, tmp_path / "a")), "--no-progress"])
    assert res.exit_code == 0, res.output
    [run_a] = list_runs(tmp_path / "a")
    full = RunStore.from_dir(run_a).load()
    # 5 items x (2 layers x 2 strengths + baseline + prompting baseline), every one generated and parsed
    assert len(full) == 5 * (2 * 2 + 2) and (full.answered_by == "generate").all()
    assert set(full.gen_answer) == {"3", "5", "10", "4", "0"} and (full.correct == full.gen_correct).all()
    assert (run_a / "report" / "report.md").exists()  # the report reads `correct` unchanged
    assert "CLEVR-Count" in (run_a / "report" / "best_cells.csv").read_text()

    cfg = _cli_config(tmp_path, tmp_path / "b")
    # killed in the second item batch, after its first steered unit group (one per layer)
    run_b = kill_cli_sweep(cfg, tmp_path / "b", k=3)
    assert run_b.name == run_a.name  # the same configuration
    assert 0 < len(raw_parts(run_b)) < len(full)
    res = runner.invoke(app_(), ["sweep", str(cfg), "--no-progress", "--no-report"])
    assert res.exit_code == 0, res.output
    assert_resumed_equals(full, run_b)


def app_():
    from steerkit.cli import app

    return app


def test_config_generation_keys(tmp_path):
    from steerkit.sweep.config import SweepConfig

    cfg = SweepConfig.from_dict({"answer": "generate", "max_new_tokens": 8, "stop_strings": "</answer>",
                                 "when": "all"})
    assert (cfg.answer, cfg.max_new_tokens, cfg.stop_strings, cfg.when) == ("generate", 8, ["</answer>"], "all")
    with pytest.raises(DataError, match="answer="):
        SweepConfig.from_dict({"answer": "write"})
    with pytest.raises(DataError, match="when="):
        SweepConfig.from_dict({"when": "later"})
