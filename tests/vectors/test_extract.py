"""Activations and MeanShift / probe against direct computations on tiny offline models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steerkit.errors import DataError
from steerkit.vectors.activations import Activations, collect_activations
from steerkit.vectors.corpus import load_corpus, parse_marked
from steerkit.vectors.methods import anchor_word_split, extract, linear_probe, mean_shift, sentence_split

from .helpers import bytelevel_tokenizer, metaspace_tokenizer, tiny_llama


def _direct_mean_shift(model, tok, sentences, n_layers):
    """Reference: one sentence at a time, no padding; anchor tokens from ``char_to_token``; layer outputs from
    ``output_hidden_states`` (layers 0..L-2) and a plain forward hook (layer L-1, whose hidden_states entry is
    post-norm in transformers 5.x)."""
    anchor_sum, other_sum = torch.zeros(n_layers, model.config.hidden_size, dtype=torch.float64), None
    other_sum = torch.zeros_like(anchor_sum)
    n_anchor = n_other = 0
    last = {}
    handle = model.model.layers[-1].register_forward_hook(
        lambda m, i, o: last.__setitem__("h", o[0] if isinstance(o, tuple) else o))
    try:
        for s in sentences:
            enc = tok(s.text, return_tensors="pt")
            with torch.no_grad():
                out = model(**enc, output_hidden_states=True)
            hs = [out.hidden_states[l + 1][0] for l in range(n_layers - 1)] + [last["h"][0]]
            anchors = {enc.char_to_token(0, i) for a, b in s.spans for i in range(a, b)} - {None}
            for t in range(enc["input_ids"].shape[1]):
                if int(enc["input_ids"][0, t]) in tok.all_special_ids:
                    continue
                vec = torch.stack([h[t] for h in hs]).double()
                if t in anchors:
                    anchor_sum += vec
                    n_anchor += 1
                else:
                    other_sum += vec
                    n_other += 1
    finally:
        handle.remove()
    return (anchor_sum / n_anchor - other_sum / n_other).float()


@pytest.mark.parametrize("make_tok", [bytelevel_tokenizer, metaspace_tokenizer], ids=["bytelevel", "metaspace"])
def test_mean_shift_equals_direct_computation(make_tok):
    tok = make_tok()
    model = tiny_llama(tok, n_layers=3)
    sents = load_corpus("spatial_relation", n=12, seed=2)
    v = extract(model, tok, sents, methods=("mean_shift",), batch_size=5, progress=False)["mean_shift"]
    ref = _direct_mean_shift(model, tok, sents, 3)
    assert v.layers == [0, 1, 2] and v.hidden_size == 32 and v.n_layers == 3
    for l in range(3):
        torch.testing.assert_close(v[l], ref[l], atol=2e-5, rtol=1e-4)
    # raw, not normalised
    assert not np.allclose([v.norms[l] for l in v], 1.0)


def test_hidden_states_convention_holds_except_for_the_last_layer():
    """Documents why activations come from decoder-layer hooks: hidden_states[-1] is post-norm in 5.x."""
    tok = bytelevel_tokenizer()
    model = tiny_llama(tok, n_layers=3)
    sents = load_corpus("counting", n=1)
    acts = collect_activations(model, tok, sents, progress=False)
    enc = tok(sents[0].text, return_tensors="pt")
    out = model(**enc, output_hidden_states=True)
    real = enc["input_ids"][0] != tok.bos_token_id
    for l in (0, 1):
        torch.testing.assert_close(acts.layer(l), out.hidden_states[l + 1][0][real])
    torch.testing.assert_close(model.model.norm(acts.layer(2)), out.hidden_states[3][0][real])


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_padding_does_not_change_vectors(padding_side):
    tok = bytelevel_tokenizer()
    tok.padding_side = padding_side
    model = tiny_llama(tok, n_layers=2)
    sents = load_corpus("negation", n=9, seed=5)
    one = collect_activations(model, tok, sents, batch_size=1, progress=False)
    many = collect_activations(model, tok, sents, batch_size=4, progress=False)
    assert torch.equal(one.is_anchor, many.is_anchor) and torch.equal(one.sentence, many.sentence)
    torch.testing.assert_close(one.hidden, many.hidden, atol=1e-5, rtol=1e-4)


def test_mllm_text_backbone(tiny):
    """An MLLM goes through adapter.text_backbone: same numbers as its language model run directly."""
    from steerkit.models.adapters import adapter_for

    model, processor = tiny("llava")
    tok = processor.tokenizer
    sents = [parse_marked("The cat is [[to the left of]] the dog.", "spatial_relation"),
             parse_marked("[[Two]] red circles.", "counting")]
    acts = collect_activations(model, processor, sents, progress=False)
    assert acts.n_layers == adapter_for(model).num_layers(model) and acts.hidden_size == 32
    enc = tok([s.text for s in sents], return_tensors="pt", padding=True)
    lm = model.model.language_model
    out = lm(**enc, output_hidden_states=True)
    special = torch.isin(enc["input_ids"], torch.tensor(tok.all_special_ids)) | ~enc["attention_mask"].bool()
    torch.testing.assert_close(acts.layer(0), out.hidden_states[1][~special])
    v = mean_shift(acts)
    v.check_compatible(model)  # same width/depth as the MLLM it came from


def _separable(n_sent=60, d=16, layers=(0, 1), seed=0):
    """Synthetic activations: anchor tokens are shifted by 6 along a known direction."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(d, generator=g)
    u /= u.norm()
    sentence = torch.arange(n_sent).repeat_interleave(6)
    is_anchor = torch.tensor([True, False, False, False, False, False] * n_sent)
    hidden = torch.randn(len(layers), len(sentence), d, generator=g)
    hidden[:, is_anchor] += 6 * u
    hidden[:, :, 0] *= 50  # one huge residual dimension, as real LLMs have
    return Activations(hidden, list(layers), is_anchor, sentence, torch.zeros(len(sentence), dtype=torch.long),
                       n_layers=4, hidden_size=d, concept="toy", source_model="synthetic", corpus_hash="x"), u


def test_probe_recovers_a_planted_direction_with_sentence_split():
    acts, u = _separable()
    v = linear_probe(acts, progress=False)
    assert v.method == "probe" and v.layers == [0, 1] and v.n_layers == 4
    for l in v:
        assert abs(v.norms[l] - 1) < 1e-5
        assert float(v[l] @ u) > 0.9
    recs = v.extra["probe"]
    assert [r["layer"] for r in recs] == [0, 1]
    assert all(r["balanced_accuracy"] > 0.95 and r["test_accuracy"] > r["majority_baseline"] for r in recs)
    assert recs[0]["n_train_tokens"] + recs[0]["n_test_tokens"] == len(acts.is_anchor)


def test_sentence_split_is_disjoint_and_seeded():
    tr, te = sentence_split(40, 0.25, seed=3)
    assert len(te) == 10 and not set(tr) & set(te) and set(tr) | set(te) == set(range(40))
    assert np.array_equal(sentence_split(40, 0.25, seed=3)[1], te)
    with pytest.raises(DataError):
        sentence_split(1, 0.5)


def test_mean_shift_needs_both_token_kinds():
    acts, _ = _separable()
    acts.is_anchor[:] = True
    with pytest.raises(DataError, match="anchor"):
        mean_shift(acts)


def test_extract_rejects_unknown_method_and_missing_saes():
    tok = bytelevel_tokenizer()
    model = tiny_llama(tok, n_layers=2)
    sents = load_corpus("counting", n=4)
    with pytest.raises(DataError, match="unknown method"):
        extract(model, tok, sents, methods=("pca",))
    with pytest.raises(DataError, match="saes="):
        extract(model, tok, sents, methods=("sae",))


def test_anchor_word_split_holds_out_whole_wordings():
    keys = ["left"] * 5 + ["behind"] * 7 + ["in front of"] * 4 + ["above"] * 6 + ["under"] * 3
    tr, te = anchor_word_split(keys, 0.25, seed=1)
    assert not {keys[i] for i in tr} & {keys[i] for i in te}
    assert set(tr) | set(te) == set(range(len(keys))) and len(te) >= 6
    tok = bytelevel_tokenizer()
    model = tiny_llama(tok, n_layers=2)
    sents = load_corpus("spatial_relation", n=40, seed=0)
    acts = collect_activations(model, tok, sents, progress=False)
    assert acts.anchor_keys[0] == "|".join(a.lower() for a in sents[0].anchors)
    v = linear_probe(acts, split="anchor_word", progress=False)
    assert v.extra["split"] == "anchor_word" and len(v.extra["probe"]) == 2
    with pytest.raises(DataError, match="split"):
        linear_probe(acts, split="token", progress=False)
