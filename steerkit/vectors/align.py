"""Token alignment: which tokens of a tokenised sentence belong to its anchor words.

Alignment uses character offsets from a fast tokenizer (``return_offsets_mapping=True``), never string matching
of token pieces, so it is the same for byte-level BPE ("Ġleft", GPT-2/Llama-3/SmolLM style), SentencePiece-style
("▁left", Llama-2/Gemma style) and word-level tokenizers. Rules:

* a token is an anchor token when its characters, with surrounding whitespace trimmed, overlap an anchor span
  (so "Ġleft" covering " left" matches the span of "left"; a token straddling a span edge counts as anchor);
* a token made only of whitespace (a lone "▁") is an anchor token only when it lies inside a span;
* special tokens (BOS/EOS/PAD/added specials, zero-width offsets) are never anchors and never "other" tokens;
  ``<unk>`` is not special here: it stands for real characters and is aligned by its offsets like any token;
* padding (``attention_mask == 0``) is neither;
* a tokenizer that adds no BOS (SmolLM2, GPT-2) gets one prepended, so no real token sits in the attention-sink
  position 0 (see :func:`align_batch`).

Example:
    >>> batch = align_batch(tokenizer, load_corpus("spatial_relation", n=4))
    >>> batch.anchor_mask.sum(dim=1)   # anchor tokens per sentence
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from steerkit.errors import DataError
from steerkit.vectors.corpus import ConceptSentence


@dataclass
class AlignedBatch:
    """A padded batch with per-token masks (all ``[batch, seq]``).

    Attributes:
        input_ids, attention_mask: the tokenizer's output (padding side as the tokenizer is set).
        anchor_mask: tokens inside an anchor span.
        other_mask: real, non-special tokens outside every span (the MeanShift/probe negatives).
        special_mask: special tokens (BOS/EOS/added specials).
        prepended_bos: whether a BOS was put in front of each sentence (see :func:`align_batch`).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    anchor_mask: torch.Tensor
    other_mask: torch.Tensor
    special_mask: torch.Tensor
    prepended_bos: bool = False

    def model_inputs(self, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """``input_ids`` and ``attention_mask`` for a forward call."""
        return {"input_ids": self.input_ids.to(device), "attention_mask": self.attention_mask.to(device)}


def token_anchor_flags(text: str, offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]],
                       special: Sequence[bool] | None = None) -> list[bool]:
    """For one tokenised sentence: True for each token that belongs to an anchor span.

    Args:
        text: the sentence.
        offsets: ``(start, end)`` character offsets per token (as a fast tokenizer returns them).
        spans: anchor character spans ``[start, end)``.
        special: per-token flag of special tokens (never anchors).

    Example:
        >>> token_anchor_flags("The cup is under it", [(0, 3), (3, 7), (7, 10), (10, 16), (16, 19)], [(11, 16)])
        [False, False, False, True, False]
    """
    flags = []
    for i, (ts, te) in enumerate(offsets):
        if (special is not None and special[i]) or te <= ts:
            flags.append(False)
            continue
        s0, e0 = ts, te
        while ts < te and text[ts].isspace():
            ts += 1
        while te > ts and text[te - 1].isspace():
            te -= 1
        if ts == te:  # whitespace-only piece: anchor only when inside a (multi-word) span
            flags.append(any(s <= s0 and e0 <= e for s, e in spans))
        else:
            flags.append(any(max(ts, s) < min(te, e) for s, e in spans))
    return flags


def _check_fast(tokenizer: Any) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise DataError(
            f"{type(tokenizer).__name__} is not a fast tokenizer, so it gives no character offsets; load it with "
            "AutoTokenizer.from_pretrained(..., use_fast=True) or wrap a `tokenizers` object in "
            "PreTrainedTokenizerFast"
        )


def special_token_ids(tokenizer: Any) -> set[int]:
    """Ids that are never anchors: the tokenizer's special ids and added special tokens."""
    ids = set(getattr(tokenizer, "all_special_ids", ()) or ())
    decoder = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    ids |= {int(i) for i, t in decoder.items() if getattr(t, "special", False)}
    ids.discard(getattr(tokenizer, "unk_token_id", None))  # <unk> stands for real characters of the text
    return ids


def adds_leading_special(tokenizer: Any) -> bool:
    """Whether the tokenizer itself starts every encoding with a special token (BOS), as Llama's does."""
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0] in special_token_ids(tokenizer)


def align_batch(tokenizer: Any, sentences: Sequence[ConceptSentence], max_length: int | None = None,
                add_special_tokens: bool = True, prepend_bos: bool | None = None) -> AlignedBatch:
    """Tokenise ``sentences`` (padded) and mark anchor / other / special tokens by character offsets.

    ``prepend_bos`` (default: when the tokenizer adds no leading special token but has a BOS, as SmolLM2's and
    GPT-2's do) puts ``bos_token`` in front of every sentence. Without it the first real token is the model's
    attention sink, whose residual norm is ~100x the others' (25,000 vs ~150 at SmolLM2 layer 14), and it would
    swamp every mean it falls in; steered MLLM text never sits at position 0 either.

    Raises :class:`DataError` for a slow tokenizer, or when a sentence has no anchor token (e.g. truncated by
    ``max_length``) — a silently empty anchor set would bias the vector.

    Example:
        >>> b = align_batch(tok, [parse_marked("[[Two]] cats sleep.", "counting")])
        >>> tok.convert_ids_to_tokens(b.input_ids[0][b.anchor_mask[0]])
        ['Two']
    """
    _check_fast(tokenizer)
    if tokenizer.pad_token_id is None:
        raise DataError(f"{type(tokenizer).__name__} has no pad token; set tokenizer.pad_token = "
                        "tokenizer.eos_token (padding is masked out, so any id works)")
    if prepend_bos is None:
        prepend_bos = add_special_tokens and tokenizer.bos_token_id is not None and not adds_leading_special(tokenizer)
    if prepend_bos and tokenizer.bos_token_id is None:
        raise DataError(f"prepend_bos=True but {type(tokenizer).__name__} has no bos_token; set one or pass False")
    enc = tokenizer([s.text for s in sentences], return_offsets_mapping=True, return_special_tokens_mask=True,
                    truncation=max_length is not None, max_length=max_length, add_special_tokens=add_special_tokens)
    specials = special_token_ids(tokenizer)
    unk = getattr(tokenizer, "unk_token_id", None)
    rows = []
    for row, sent in enumerate(sentences):
        ids = list(enc["input_ids"][row])
        offsets = [tuple(int(x) for x in o) for o in enc["offset_mapping"][row]]
        special = [bool(m) or i in specials for i, m in zip(ids, enc["special_tokens_mask"][row])]
        special = [sp and i != unk for i, sp in zip(ids, special)]
        if prepend_bos:
            ids, offsets, special = [tokenizer.bos_token_id, *ids], [(0, 0), *offsets], [True, *special]
        flags = token_anchor_flags(sent.text, offsets, sent.spans, special)
        if not any(flags):
            raise DataError(
                f"no token of {sent.text!r} falls in its anchor spans {list(sent.spans)} "
                f"({sent.anchors}); the sentence was truncated (raise max_length) or its spans are wrong"
            )
        rows.append((ids, special, flags))
    width = max(len(r[0]) for r in rows)
    shape = (len(rows), width)
    input_ids = torch.full(shape, tokenizer.pad_token_id, dtype=torch.long)
    attn = torch.zeros(shape, dtype=torch.long)
    anchor = torch.zeros(shape, dtype=torch.bool)
    special_mask = torch.zeros(shape, dtype=torch.bool)
    left = getattr(tokenizer, "padding_side", "right") == "left"
    for r, (ids, special, flags) in enumerate(rows):
        cols = slice(width - len(ids), width) if left else slice(0, len(ids))
        input_ids[r, cols] = torch.tensor(ids)
        attn[r, cols] = 1
        anchor[r, cols] = torch.tensor(flags)
        special_mask[r, cols] = torch.tensor(special)
    other = attn.bool() & ~special_mask & ~anchor
    return AlignedBatch(input_ids, attn, anchor, other, special_mask, prepend_bos)
