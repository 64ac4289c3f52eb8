"""Token alignment by character offsets on two tokenizer styles (byte-level "Ġ" BPE and SentencePiece-style "▁")."""

from __future__ import annotations

import pytest
import torch

from steerkit.errors import DataError
from steerkit.vectors.align import align_batch, token_anchor_flags
from steerkit.vectors.corpus import CONCEPTS, load_corpus, parse_marked

from .helpers import bytelevel_tokenizer, metaspace_tokenizer

STYLES = {"bytelevel": bytelevel_tokenizer, "metaspace": metaspace_tokenizer}


def _anchor_text(tok, batch, row: int, text: str) -> str:
    """The sentence's characters under anchor tokens (from the tokenizer's own offsets), spaces collapsed."""
    enc = tok(text, return_offsets_mapping=True)
    flags = batch.anchor_mask[row][batch.attention_mask[row].bool()].tolist()
    covered = {i for (a, b), f in zip(enc["offset_mapping"], flags) if f for i in range(a, b)}
    return " ".join("".join(ch if i in covered else " " for i, ch in enumerate(text)).split())


@pytest.mark.parametrize("style", STYLES)
def test_multitoken_and_sentence_initial_anchors(style):
    tok = STYLES[style]()
    sents = [
        parse_marked("[[To the left of]] the fountain, a dog sleeps.", "spatial_relation"),
        parse_marked("The cup is [[in front of]] the plate.", "spatial_relation"),
        parse_marked("Unicycles are [[twenty-five]] percent [[cheaper than]] cars.", "comparison"),
        parse_marked("[[Unicycles]] wobble.", "entity"),
    ]
    batch = align_batch(tok, sents)
    assert _anchor_text(tok, batch, 0, sents[0].text) == "To the left of"
    assert _anchor_text(tok, batch, 1, sents[1].text) == "in front of"
    assert _anchor_text(tok, batch, 2, sents[2].text) == "twenty-five cheaper than"
    assert _anchor_text(tok, batch, 3, sents[3].text) == "Unicycles"
    # "Unicycles" is not in the training corpus: it must be split into several tokens, all anchors.
    assert int(batch.anchor_mask[3].sum()) > 1
    # BOS is a special token: never an anchor, never an "other" token.
    bos = tok.bos_token_id
    assert bool((batch.input_ids == bos).any())
    assert not bool(batch.anchor_mask[batch.input_ids == bos].any())
    assert not bool(batch.other_mask[batch.input_ids == bos].any())
    assert not bool((batch.anchor_mask & ~batch.attention_mask.bool()).any())


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_anchor_characters_match_spans_on_every_corpus(style, padding_side):
    """Over real corpus sentences: every token the tokenizer maps a span character to is an anchor (independent
    check through ``char_to_token``), and every anchor token holds span characters (a token straddling a span
    edge, like "y." for "nearby.", counts)."""
    tok = STYLES[style]()
    tok.padding_side = padding_side
    for concept in CONCEPTS:
        sents = load_corpus(concept, n=25, seed=1)
        batch = align_batch(tok, sents)
        enc = tok([s.text for s in sents], return_offsets_mapping=True, padding=True)
        for row, s in enumerate(sents):
            by_chars = {enc.char_to_token(row, i) for a, b in s.spans for i in range(a, b)} - {None}
            flagged = set(torch.nonzero(batch.anchor_mask[row]).flatten().tolist())
            assert by_chars <= flagged, (style, s.text, s.anchors)
            span_chars = {i for a, b in s.spans for i in range(a, b) if not s.text[i].isspace()}
            for t in flagged - by_chars:
                a, b = enc["offset_mapping"][row][t]
                assert span_chars & set(range(a, b)), (style, s.text, s.anchors, t)
            n_words = sum(len(s.text[a:b].split()) for a, b in s.spans)
            assert len(flagged) >= n_words
            assert batch.other_mask[row].sum() + batch.anchor_mask[row].sum() + batch.special_mask[row].sum() \
                == batch.attention_mask[row].sum()


def test_flags_whitespace_and_specials():
    text = "is in front of it"
    # a lone "▁" before "in" (outside the span) and one inside the span
    offsets = [(0, 0), (0, 2), (2, 3), (3, 5), (5, 11), (11, 12), (12, 14), (14, 17)]
    flags = token_anchor_flags(text, offsets, [(3, 14)], special=[True] + [False] * 7)
    assert flags == [False, False, False, True, True, True, True, False]


def test_truncated_anchor_and_slow_tokenizer_raise():
    tok = bytelevel_tokenizer()
    sent = parse_marked("The cup on the long wooden table is [[red]].", "attribute")
    with pytest.raises(DataError, match="truncated"):
        align_batch(tok, [sent], max_length=4)

    class Slow:
        is_fast = False

    with pytest.raises(DataError, match="fast tokenizer"):
        align_batch(Slow(), [sent])


def test_masks_are_boolean_and_aligned_to_inputs():
    tok = bytelevel_tokenizer()
    batch = align_batch(tok, load_corpus("counting", n=6))
    for m in (batch.anchor_mask, batch.other_mask, batch.special_mask):
        assert m.dtype == torch.bool and m.shape == batch.input_ids.shape
    assert not bool((batch.anchor_mask & batch.other_mask).any())


def test_bos_is_prepended_only_when_the_tokenizer_adds_none():
    """A tokenizer without a leading special (SmolLM2/GPT-2 style) gets BOS, so no real token is at position 0."""
    from transformers import PreTrainedTokenizerFast

    with_bos = bytelevel_tokenizer()
    inner = with_bos.backend_tokenizer.__class__.from_str(with_bos.backend_tokenizer.to_str())
    inner.post_processor = None
    no_bos = PreTrainedTokenizerFast(tokenizer_object=inner, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    sents = [parse_marked("[[Never]] leave the cup there.", "negation"), parse_marked("It is [[not]] red.", "negation")]
    for tok, expect in ((with_bos, False), (no_bos, True)):
        for side in ("left", "right"):
            tok.padding_side = side
            b = align_batch(tok, sents)
            assert b.prepended_bos is expect
            first = b.attention_mask.bool().long().argmax(dim=1)  # first real position per row
            assert all(int(b.input_ids[r, first[r]]) == tok.bos_token_id for r in range(2))
            assert int((b.input_ids == tok.bos_token_id).sum()) == 2  # exactly one BOS per row
            assert bool(b.anchor_mask[0, first[0] + 1])  # "Never" right after BOS is an anchor
    assert align_batch(no_bos, sents, prepend_bos=False).prepended_bos is False
