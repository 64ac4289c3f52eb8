"""The anchor-word probe split on the shipped concept corpora: no anchor string on both sides, dropped sentences
counted, one split per seed."""

from __future__ import annotations

import numpy as np
import pytest

from steerkit.errors import DataError
from steerkit.vectors.activations import anchor_key, collect_activations
from steerkit.vectors.corpus import available_concepts, load_corpus
from steerkit.vectors.methods import anchor_word_split, linear_probe

from .helpers import bytelevel_tokenizer, tiny_llama

CONCEPTS = available_concepts()


def _anchors(sentences, ids) -> set[str]:
    """Lower-cased anchor strings of the given sentences, read from the corpus rows (not from the keys)."""
    return {a.lower() for i in ids for a in sentences[int(i)].anchors}


def test_the_shipped_corpora_are_all_here():
    assert set(CONCEPTS) >= {"spatial_relation", "counting", "attribute", "entity", "action", "temporal",
                             "comparison", "negation"}


@pytest.mark.parametrize("concept", CONCEPTS)
def test_no_test_anchor_is_a_training_anchor(concept):
    sentences = load_corpus(concept)
    split = anchor_word_split([anchor_key(s) for s in sentences], 0.25, seed=0)
    train, test = split
    assert len(train) and len(test)
    assert not _anchors(sentences, test) & _anchors(sentences, train)
    # What counts as "test" is exactly the held-out anchors, and the held-out set is what the split reports.
    assert _anchors(sentences, test) <= set(split.held_out)
    assert not _anchors(sentences, train) & set(split.held_out)
    assert len(test) >= 0.25 * (len(train) + len(test))


@pytest.mark.parametrize("concept", CONCEPTS)
def test_mixed_sentences_are_dropped_and_counted(concept):
    sentences = load_corpus(concept)
    split = anchor_word_split([anchor_key(s) for s in sentences], 0.25, seed=0)
    held = set(split.held_out)
    mixed = [i for i, s in enumerate(sentences)
             if {a.lower() for a in s.anchors} & held and not {a.lower() for a in s.anchors} <= held]
    assert split.dropped.tolist() == mixed
    assert split.n_dropped == len(mixed)
    # train, test and dropped partition the corpus.
    ids = np.concatenate([split.train, split.test, split.dropped])
    assert sorted(ids.tolist()) == list(range(len(sentences)))


@pytest.mark.parametrize("concept", CONCEPTS)
def test_split_is_deterministic_per_seed(concept):
    keys = [anchor_key(s) for s in load_corpus(concept)]
    for seed in (0, 1):
        a, b = anchor_word_split(keys, 0.25, seed=seed), anchor_word_split(keys, 0.25, seed=seed)
        assert a.held_out == b.held_out
        for x, y in zip((a.train, a.test, a.dropped), (b.train, b.test, b.dropped)):
            np.testing.assert_array_equal(x, y)
    assert len({anchor_word_split(keys, 0.25, seed=s).held_out for s in range(5)}) > 1


def test_entity_sentences_with_two_nouns_are_dropped_not_leaked():
    # 98 of the 240 entity sentences name two nouns; with a quarter of the nouns held out some of them must mix.
    sentences = load_corpus("entity")
    split = anchor_word_split([anchor_key(s) for s in sentences], 0.25, seed=0)
    assert split.n_dropped > 0
    assert all(len(sentences[int(i)].anchors) == 2 for i in split.dropped)


def test_split_unpacks_and_survives_pickling():
    import pickle

    split = anchor_word_split(["left", "right", "above|below", "below", "under", "near|left"], 0.25, seed=3)
    train, test = split
    again = pickle.loads(pickle.dumps(split))
    assert again.held_out == split.held_out and again.n_dropped == split.n_dropped
    np.testing.assert_array_equal(again.test, test)


def test_split_errors_name_the_fix():
    with pytest.raises(DataError, match="split='sentence'"):
        anchor_word_split(["left"] * 8, 0.25)
    with pytest.raises(DataError, match="test_fraction"):
        anchor_word_split(["left", "right"], 1.0)
    with pytest.raises(DataError, match="no anchor key"):
        anchor_word_split(["left", "", "right"], 0.25)
    # Every sentence shares an anchor with another one: holding any out mixes the rest, so training runs dry.
    with pytest.raises(DataError, match="smaller test_fraction"):
        anchor_word_split(["a|b", "a|b", "b|c", "c|a"], 0.25, seed=0)


def test_probe_records_the_dropped_sentences():
    tok = bytelevel_tokenizer()
    model = tiny_llama(tok, n_layers=2)
    sentences = load_corpus("entity", n=60, seed=0)
    acts = collect_activations(model, tok, sentences, progress=False)
    split = anchor_word_split(acts.anchor_keys, 0.25, seed=0)
    v = linear_probe(acts, split="anchor_word", progress=False)
    assert v.extra["n_dropped_sentences"] == split.n_dropped
    assert v.extra["held_out_anchors"] == list(split.held_out)
    for rec in v.extra["probe"]:
        assert (rec["n_train_sentences"], rec["n_test_sentences"], rec["n_dropped_sentences"]) == (
            len(split.train), len(split.test), split.n_dropped)
        assert rec["n_test_tokens"] == int(np.isin(acts.sentence.numpy(), split.test).sum())
    plain = linear_probe(acts, split="sentence", progress=False)
    assert plain.extra["n_dropped_sentences"] == 0
    assert plain.extra["probe"][0]["n_train_sentences"] + plain.extra["probe"][0]["n_test_sentences"] == 60
