"""Concept corpora: the shipped files, the seeded generator and the validator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steerkit.errors import DataError
from steerkit.vectors.corpus import (
    CONCEPTS,
    available_concepts,
    corpus_hash,
    generate_corpus,
    load_corpus,
    parse_marked,
    read_jsonl,
    validate_row,
)


def test_shipped_corpora_cover_the_eight_concepts_with_varied_anchors():
    assert available_concepts()[:8] == list(CONCEPTS)
    for concept in CONCEPTS:
        sents = load_corpus(concept)
        assert len(sents) >= 200, concept
        assert len({s.text for s in sents}) == len(sents), f"{concept}: duplicate sentences"
        assert all(s.concept == concept for s in sents)
        starts = sum(s.spans[0][0] == 0 for s in sents)
        ends = sum(s.spans[-1][1] >= len(s.text.rstrip(".?!")) for s in sents)
        middles = sum(0 < s.spans[0][0] and s.spans[-1][1] < len(s.text.rstrip(".?!")) for s in sents)
        multi = sum(any(" " in a or "-" in a for a in s.anchors) for s in sents)
        assert starts >= 5 and ends >= 5 and middles >= 50, (concept, starts, ends, middles)
        assert any(s.source.startswith("hand") for s in sents), concept
        if concept in ("spatial_relation", "comparison", "temporal"):
            assert multi >= 30, (concept, multi)
    spatial = {a for s in load_corpus("spatial_relation") for a in s.anchors}
    assert {"to the left of", "in front of"} <= spatial


def test_shipped_corpora_are_what_the_generator_makes():
    for concept in CONCEPTS:
        assert [s.to_json() for s in load_corpus(concept)] == [s.to_json() for s in generate_corpus(concept, 240, 0)]


def test_generator_is_seeded():
    a, b, c = (generate_corpus("counting", 80, seed=s) for s in (1, 1, 2))
    assert a == b
    assert [s.text for s in a] != [s.text for s in c]
    assert corpus_hash(a) == corpus_hash(b) != corpus_hash(c)


def test_load_corpus_subset_is_seeded_and_sized():
    assert len(load_corpus("negation", n=17)) == 17
    assert load_corpus("negation", n=17, seed=4) == load_corpus("negation", n=17, seed=4)


def test_parse_marked_multiword_and_initial_anchor():
    s = parse_marked("[[To the left of]] the door, a cat is [[behind]] a box.", "spatial_relation")
    assert s.spans == ((0, 14), (34, 40))
    assert s.anchors == ("To the left of", "behind")


@pytest.mark.parametrize("row, message", [
    ({"text": "The cup is under it.", "spans": [[11, 15]], "concept": "x", "anchors": ["under"]}, "cuts a word"),
    ({"text": "The cup is under it.", "spans": [[4, 7]], "concept": "x", "anchors": ["under"]}, "do not match"),
    ({"text": "The cup is under it.", "spans": [[11, 40]], "concept": "x"}, "out of range"),
    ({"text": "The cup is under it.", "spans": [[-1, 3]], "concept": "x"}, "out of range"),
    ({"text": "The cup is under it.", "spans": [[4, 16], [11, 16]], "concept": "x"}, "overlap"),
    ({"text": "The cup is under it.", "spans": [[10, 16]], "concept": "x"}, "whitespace"),
    ({"text": "The cup is under it.", "spans": [], "concept": "x"}, "non-empty list"),
    ({"text": "The cup is under it.", "spans": [[11, "16"]], "concept": "x"}, "pair of integers"),
    ({"text": "The cup is under it.", "concept": "x"}, "missing"),
])
def test_validator_rejects_bad_rows(row, message):
    with pytest.raises(DataError, match=message):
        validate_row(row, "t.jsonl:3")


def test_read_jsonl_names_the_line(tmp_path):
    good = {"text": "No cats.", "spans": [[0, 2]], "concept": "negation"}
    bad = {"text": "No cats.", "spans": [[0, 3]], "concept": "negation"}
    path = tmp_path / "negation.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(DataError, match=r"negation.jsonl:2"):
        read_jsonl(path)
    path.write_text(json.dumps(good) + "\n{oops\n")
    with pytest.raises(DataError, match="not valid JSON"):
        read_jsonl(path)
    path.write_text(json.dumps({**good, "concept": "counting"}) + "\n")
    with pytest.raises(DataError, match="differs"):
        load_corpus("negation", tmp_path)


def test_shipped_corpora_are_package_data():
    """The default folder is found through importlib.resources inside the steerkit package, not beside a checkout."""
    import importlib.resources

    from steerkit.vectors.corpus import DEFAULT_DIR, corpus_path

    assert DEFAULT_DIR == Path(importlib.resources.files("steerkit")) / "data" / "concepts"
    assert corpus_path("counting") == DEFAULT_DIR / "counting.jsonl"
    assert len(load_corpus("counting", DEFAULT_DIR / "organism")) == 240


def test_missing_shipped_corpora_raise_instead_of_finding_none(monkeypatch):
    """A broken install (package data left out of the wheel) names the fix; it never looks like an empty folder."""
    import steerkit.vectors.corpus as corpus

    monkeypatch.setattr(corpus, "_SHIPPED", ("data", "no-such-folder"))
    with pytest.raises(DataError, match="package data data/no-such-folder is missing.*reinstall"):
        available_concepts()
    with pytest.raises(DataError, match="reinstall"):
        load_corpus("counting")
