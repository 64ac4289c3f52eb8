"""Problem sources: GSM8K from a parquet in the hub schema, the seeded generator, the organism's arithmetic."""

from __future__ import annotations

import re

import pytest

from steerkit.errors import DataError
from steerkit.gap.problems import (
    TEMPLATES,
    canonical_number,
    gsm8k_final_answer,
    gsm8k_problems,
    load_gsm8k,
    problems_frame,
    word_problems,
)


def test_gsm8k_from_local_parquet(gsm8k_dir):
    test = load_gsm8k("test", path=gsm8k_dir)
    assert [p.answer for p in test] == ["18", "3", "70000"]
    assert test[0].question.startswith("Janet\u2019s ducks") and test[0].source == "gsm8k"
    assert "####" in test[0].extra["solution"] and test[0].id == "gsm8k-test-0"
    train = load_gsm8k("train", path=gsm8k_dir, n=1)
    assert len(train) == 1 and train[0].answer == "72"
    single = load_gsm8k("train", path=gsm8k_dir / "main" / "train-00000-of-00001.parquet")
    assert [p.answer for p in single] == ["72", "10"]
    assert list(problems_frame(test).columns) == ["question", "answer", "id", "source", "extra"]


def test_gsm8k_uses_the_hub_id(monkeypatch):
    import datasets

    seen = {}

    def fake(path, name=None, split=None, **kw):
        seen.update(path=path, name=name, split=split)
        return datasets.Dataset.from_list([{"question": "q?", "answer": "x\n#### 1,234"}])

    monkeypatch.setattr(datasets, "load_dataset", fake)
    probs = load_gsm8k("test")
    assert seen == {"path": "openai/gsm8k", "name": "main", "split": "test"}
    assert probs[0].answer == "1234"


def test_gsm8k_errors(gsm8k_dir, tmp_path):
    with pytest.raises(DataError, match="####"):
        gsm8k_final_answer("no marker 12")
    with pytest.raises(DataError, match="row 1"):
        gsm8k_problems([{"question": "a", "answer": "#### 1"}, {"question": "b", "answer": "none"}])
    with pytest.raises(DataError, match="validation"):
        load_gsm8k("validation", path=gsm8k_dir)
    assert canonical_number("$1,000.50") == "1000.5" and canonical_number("-3") == "-3"


def _solve(solution: str) -> int:
    """Re-derive the answer by evaluating each 'a op b = c' step of the worked solution."""
    last = None
    for a, op, b, c in re.findall(r"(\d+) ([-+*/]|\*) (\d+%?) = (\d+)", solution):
        a_, c_ = int(a), int(c)
        b_ = int(b.rstrip("%"))
        val = {"+": a_ + b_, "-": a_ - b_, "*": a_ * b_ if not b.endswith("%") else a_ * b_ // 100,
               "/": a_ // b_}[op]
        assert val == c_, f"step {a} {op} {b} = {c} is wrong"
        if op == "/":
            assert a_ % b_ == 0, "division must be exact"
        last = c_
    assert last is not None
    return last


def test_word_problems_exact_and_seeded():
    a = word_problems(30, seed=3)
    b = word_problems(30, seed=3)
    c = word_problems(30, seed=4)
    assert [p.question for p in a] == [p.question for p in b]
    assert [p.question for p in a] != [p.question for p in c]
    assert [p.question for p in word_problems(5, seed=3)] == [p.question for p in a[:5]]
    assert {p.extra["template"] for p in a} == set(TEMPLATES)
    for p in a:
        assert int(p.answer) > 0
        assert _solve(p.extra["solution"]) == int(p.answer), p
    assert len({p.id for p in a}) == 30
    with pytest.raises(DataError, match="unknown templates"):
        word_problems(2, templates=["nope"])


def test_word_problem_splits_are_by_content():
    from steerkit.tasks.splits import content_split

    for split in ("train", "test"):
        probs = word_problems(60, seed=2, split=split)
        assert all(content_split("wordproblem|" + p.question) == split for p in probs)
        assert all(p.extra["split"] == split and f"-{split}-" in p.id for p in probs)
    # Problem i does not depend on n, within a split too.
    assert [p.question for p in word_problems(7, seed=2, split="train")] == \
        [p.question for p in word_problems(60, seed=2, split="train")[:7]]
    with pytest.raises(DataError, match="split must be one of"):
        word_problems(2, split="validation")


def test_profile_problems_by_name_and_auto():
    from steerkit.gap.problems import problem_set

    probs = problem_set("organism", 5, seed=0)
    assert probs == problem_set("auto", 5, seed=0, model="steerkit/organism")
    assert problem_set("auto", 3, seed=0, model="tiny/llava")[0].source == "synthetic"
    with pytest.raises(DataError, match="unknown problem source 'nope'"):
        problem_set("nope", 2)
    assert len(probs) == 5 and all(p.source == "organism" for p in probs)
    for p in probs:
        a, b = map(int, p.question.split("+"))
        assert int(p.answer) == a + b
        assert f"<answer>{p.answer}</answer>" in p.extra["trace"]
