"""benchmarks/sweep_bench.py: the paper protocol's JSON line (fields, not timings) and its strict answer parser."""

from __future__ import annotations

import json

import pytest

from steerkit.tasks.scoring import parse_letter

from .scripts import script_module


@pytest.fixture(scope="module")
def bench():
    """The benchmark script as a module (benchmarks/ is not a package)."""
    with script_module("sweep_bench") as module:
        yield module


@pytest.mark.parametrize("text", ["B", " (B)", "B.", "B)\n", "(B)."])
def test_strict_letter_accepts_bare_labels(bench, text):
    assert bench.strict_letter(text, ["left", "right"]) == "B"


@pytest.mark.parametrize("text", ["B. right", "Answer: B", "right", "b", "(C)", "", "AB"])
def test_strict_letter_rejects_everything_else(bench, text):
    assert bench.strict_letter(text, ["left", "right"]) is None


def test_strict_letter_is_stricter_than_parse_letter(bench):
    # the lenient parser reads these as B; the paper's normalisation counts them wrong
    for text in ("Answer: B", "right", "B. right"):
        assert parse_letter(text, ["left", "right"]) == "B"
        assert bench.strict_letter(text, ["left", "right"]) is None


def _check_line(line: dict, n_items: int) -> None:
    assert line["bench_version"] == 2
    assert line["paper_max_new_tokens"] == 20
    assert line["paper_processor_per_item"] is True
    assert line["paper_batch_size"] == 1 and line["paper_steer_when"] == "prefill"
    assert line["paper_1tok_lower_bound_processor_per_item"] is False
    for key in ("engine_ms_per_item_cell", "paper_ms_per_item_cell", "paper_1tok_lower_bound_ms_per_item_cell",
                "engine_speedup_vs_paper", "engine_speedup_vs_paper_1tok_lower_bound", "floor_ms_per_item_cell"):
        assert line[key] > 0, key
    for key in ("answers_agree", "answers_agree_engine_greedy", "paper_1tok_lower_bound_agrees_with_paper",
                "paper_stopped_at_eos", "paper_unparsed"):
        assert 0.0 <= line[key] <= 1.0, key
    for key in ("answers_agree_by_scope", "answers_agree_engine_greedy_by_scope"):
        assert set(line[key]) == set(line["scopes"]) and all(0.0 <= v <= 1.0 for v in line[key].values()), key
    assert len(line["paper_stopped_at_eos_per_item"]) == n_items
    assert 1 <= line["paper_mean_new_tokens"] <= 20
    assert line["paper_time_is_upper_bound"] == (line["paper_stopped_at_eos"] < 1.0)
    assert ("upper bound" in line["paper_time_note"]) == line["paper_time_is_upper_bound"]


def test_main_writes_the_paper_protocol_line_for_the_organism(bench, tmp_path):
    out = tmp_path / "bench.jsonl"
    line = bench.main(["--model", "steerkit/organism", "--n-items", "2", "--layers", "1", "--alphas", "0.5",
                       "--scopes", "image", "both",
                       "--threads", "1", "--no-progress", "--out", str(out)])
    assert json.loads(out.read_text().splitlines()[-1]) == line
    _check_line(line, 2)
    # the trained organism answers a letter and stops at EOS well before 20 tokens
    assert line["paper_stopped_at_eos"] == 1.0 and line["paper_mean_new_tokens"] < 20


def test_main_on_a_tiny_random_family_labels_the_time_bounds(bench, tmp_path):
    line = bench.main(["--model", "tiny/llava", "--n-items", "2", "--layers", "0", "--alphas", "0.5", "1.0",
                       "--threads", "1", "--no-progress", "--out", str(tmp_path / "bench.jsonl")])
    _check_line(line, 2)
    assert line["n_cells"] == 2
    assert line["paper_mean_new_tokens"] > 1  # the paper protocol generates past the first token


@pytest.mark.parametrize("stopped, upper", [(0.0, True), (0.5, True), (1.0, False)])
def test_eos_note_says_which_time_is_a_bound(bench, stopped, upper):
    note = bench.eos_note(stopped, 20.0 if upper else 2.0)
    assert ("upper bound" in note and "lower bound" in note) == upper


def test_text_scopes_need_the_paper_masks(bench, monkeypatch):
    """Without steer(exclude_last_prompt_token=...), text/both cannot reproduce the paper and must say so."""
    import inspect

    import steerkit

    if "exclude_last_prompt_token" in inspect.signature(steerkit.steer).parameters:
        assert bench.paper_steer_kwargs("both") == {"exclude_last_prompt_token": True}

        def old_steer(model, vector, layers=None, alpha=1.0, tokens="image", when="prefill"):
            """steer() as it was before the keyword existed."""

        monkeypatch.setattr(steerkit, "steer", old_steer)
    with pytest.raises(TypeError, match="exclude_last_prompt_token"):
        bench.paper_steer_kwargs("text")
    assert bench.paper_steer_kwargs("image") == {}


def test_generate_compares_batched_and_per_item_generation_exactly(bench, tmp_path):
    line = bench.main(["--model", "tiny/llava", "--n-items", "2", "--alphas", "0.5", "2.0",
                       "--scopes", "image", "both", "--skip-paper", "--generate", "--gen-layer", "1",
                       "--gen-max-new-tokens", "6", "--threads", "1", "--no-progress",
                       "--out", str(tmp_path / "bench.jsonl")])
    assert line["engine_ms_per_item_cell"] > 0  # the letter bench still runs
    assert line["gen_rows"] == 2 * 2 * 2 and line["gen_layer"] == 1 and line["gen_max_new_tokens"] == 6
    assert line["gen_outputs_equal"] is True and line["gen_rows_equal_fraction"] == 1.0
    assert line["gen_distinct_outputs"] >= 2  # steering changed some texts, so equality is not vacuous
    for key in ("gen_engine_ms_per_item_cell", "gen_per_item_ms_per_item_cell", "gen_speedup"):
        assert line[key] > 0, key
    assert line["gen_speedup"] == pytest.approx(line["gen_per_item_seconds"] / line["gen_engine_seconds"])
    assert 2 * 2 * 2 <= line["gen_new_tokens"] <= 2 * 2 * 2 * 6
    assert line["gen_prompt"].startswith("open") and line["gen_excludes_last_prompt_token"] is True


def test_generation_fields_report_any_differing_row(bench):
    rows = [(0, 1.0, "image"), (1, 1.0, "image")]
    gen = bench.GenRun(engine_seconds=1.0, per_item_seconds=4.0, engine_texts=["a b", "c"],
                       per_item_texts=["a b", "c d"], new_tokens=[3, 5], stopped_at_eos=[True, False])
    f = bench.generation_fields(gen, rows)
    assert f["gen_outputs_equal"] is False and f["gen_rows_equal_fraction"] == 0.5
    assert f["gen_speedup"] == 4.0 and f["gen_engine_ms_per_item_cell"] == 500.0
    assert f["gen_new_tokens"] == 8 and f["gen_stopped_at_eos"] == 0.5 and f["gen_distinct_outputs"] == 2


def test_generation_prompts(bench):
    from steerkit.tasks.scoring import build_prompt
    from steerkit.tasks.synth import generate

    items = generate(["Count", "Relation"], n_per_task=2, seed=0, size=64)
    prompts, images, kind = bench.generation_prompts("tiny/llava", items, 3, 0, "open")
    assert prompts == [it.prompt for it in items[:3]] and len(images) == 3 and kind.startswith("open")
    prompts, _, _ = bench.generation_prompts("tiny/llava", items, 2, 0, "item")
    assert prompts == [build_prompt(it) for it in items[:2]]
