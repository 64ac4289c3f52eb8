"""Protocols (paper split, stratified split, hints) and the answer parser."""

from __future__ import annotations

import pandas as pd
import pytest

from steerkit.tasks.schema import Item
from steerkit.tasks.scoring import PAPER_PREFIX, build_prompt, parse_letter
from steerkit.tasks.splits import hint_for, paper_split, stratified_split, with_hint
from steerkit.tasks.synth import generate


def _items(task, n, start=0):
    return [Item(id=str(start + i), image=None, prompt=f"q{i}", choices=["x", "y"], answer="AB"[i % 2], task=task)
            for i in range(n)]


def test_paper_split_reproduces_the_paper_rule():
    items = _items("Count", 400) + _items("Relation", 300, start=400)
    sp = paper_split(items)
    assert [it.id for it in sp] == [it.id for it in items]  # order kept
    for task, n in (("Count", 400), ("Relation", 300)):
        rows = [it for it in sp if it.task == task]
        assert sum(it.split == "test" for it in rows) == 150 and sum(it.split == "train" for it in rows) == n - 150
        # the paper code: df.sample(frac=1, random_state=42); last 150 rows = test
        ids = [it.id for it in items if it.task == task]
        shuffled = pd.DataFrame({"id": ids}).sample(frac=1, random_state=42)["id"].tolist()
        assert {it.id for it in rows if it.split == "test"} == set(shuffled[-150:])
    assert all(it.split == "" for it in items)  # inputs untouched
    with pytest.warns(UserWarning, match="using 5 as test"):
        small = paper_split(_items("Depth", 10))
    assert sum(it.split == "test" for it in small) == 5


def test_stratified_split_balances_strata():
    items = generate(["Relation", "Depth"], n_per_task=40, seed=0, size=64)
    sp = stratified_split(items, test_frac=0.25, seed=1)
    assert [s.split for s in sp] == [s.split for s in stratified_split(items, test_frac=0.25, seed=1)]
    assert [s.split for s in sp] != [s.split for s in stratified_split(items, test_frac=0.25, seed=2)]
    for key in {(it.task, it.answer) for it in items}:
        members = [it for it in sp if (it.task, it.answer) == key]
        assert sum(it.split == "test" for it in members) == round(0.25 * len(members))
    with pytest.raises(ValueError):
        stratified_split(items, test_frac=1.0)


def test_hints_prepend_a_concept():
    items = generate(["Count", "Relation"], n_per_task=1, seed=0, size=64)
    hinted = with_hint(items)
    assert hinted[0].prompt.startswith(hint_for("Count") + " How many")
    assert hinted[1].prompt.startswith(hint_for("Relation") + " Considering")
    assert hinted[0].extra["prompt_without_hint"] == items[0].prompt and items[0].prompt.startswith("How many")
    assert with_hint(items, "Look.")[1].prompt.startswith("Look. Considering")
    assert hint_for("unknown task") == ""
    assert build_prompt(items[0]).startswith(PAPER_PREFIX + "How many")


@pytest.mark.parametrize("text,expected", [
    ("(C)", "C"), ("C", "C"), ("c.", "C"), ("c", "C"), ("C) 3", "C"), (" B", "B"), ("Answer: C", "C"),
    ("answer: (b)", "B"), ("The correct answer is C.", "C"), ("I think the answer is (d).", "D"),
    ("<answer>A</answer>", "A"), ("The answer is option B", "B"), ("so the final choice: A", "A"),
    ("3", "C"), ("There are 3 circles.", "C"), ("E", None), ("(E)", None), ("", None), ("I don't know", None),
    ("a cat", None), ("1 or 2", None),
])
def test_parse_letter(text, expected):
    assert parse_letter(text, ["1", "2", "3", "4"]) == expected


def test_parse_letter_choice_text():
    assert parse_letter("left", ["left", "right"]) == "A"
    assert parse_letter("It is to the right.", ["left", "right"]) == "B"
    assert parse_letter("the blue circle", ["red square", "blue circle"]) == "B"
    assert parse_letter("left of the table", ["left", "left of the table"]) == "B"
    assert parse_letter("left or right", ["left", "right"]) is None
    assert parse_letter("A blue circle", ["red square", "blue circle"]) == "B"  # article, not a label
    assert parse_letter("A red square", ["red square", "blue circle"]) == "A"
    assert parse_letter("A. blue circle", ["red square", "blue circle"]) == "A"  # an explicit label wins
