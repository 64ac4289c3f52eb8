"""Collect every decoder layer's output on the tokens of a concept corpus, in one batched pass per batch.

Works on any causal LM and on an MLLM's text backbone: the model goes through
``adapter_for(model).text_backbone(model)`` (the model itself for a text-only LM), and the decoder layers come
from the adapter table. Layer outputs are read with forward hooks on the decoder layers — the very values that
:func:`steerkit.steer` adds to. They equal ``output_hidden_states``' ``hidden_states[l + 1]`` for every layer but
the last: transformers 5.x reports the last entry *after* the final norm (checked on 5.24, LlamaModel).

Only real (non-padding, non-special) tokens are kept, flattened over the corpus.

Example:
    >>> acts = collect_activations(model, tokenizer, load_corpus("counting", n=64))
    >>> acts.hidden.shape        # [n_layers, n_tokens, hidden_size]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from steerkit.errors import DataError
from steerkit.vectors.align import align_batch
from steerkit.vectors.corpus import ConceptSentence, corpus_hash


def anchor_key(sentence: ConceptSentence) -> str:
    """A sentence's anchor strings, lower-cased and joined by "|": its entry in :attr:`Activations.anchor_keys`.

    Example:
        >>> anchor_key(parse_marked("[[Two]] cats and [[three]] dogs.", "counting"))
        'two|three'
    """
    return "|".join(a.lower() for a in sentence.anchors)


def key_anchors(key: str) -> frozenset[str]:
    """The anchor strings of one :func:`anchor_key` (``"two|three"`` -> ``{"two", "three"}``)."""
    return frozenset(a for a in key.split("|") if a)


@dataclass
class Activations:
    """Layer outputs on a corpus's real tokens.

    Attributes:
        hidden: ``[n_layers_kept, n_tokens, hidden_size]`` float32 on CPU; row i is layer ``layers[i]``.
        layers: the decoder layers kept (0-based).
        is_anchor: ``[n_tokens]`` bool, token in an anchor span.
        sentence: ``[n_tokens]`` index of the token's sentence in the corpus (for sentence-level splits).
        token_ids: ``[n_tokens]`` token ids.
        n_layers, hidden_size: the source model's decoder depth and width.
        concept, source_model, corpus_hash: provenance, copied into vectors.
        prepended_bos: whether BOS was put in front of each sentence (the tokenizer adds none itself).
        anchor_keys: per sentence, its anchor words lower-cased and joined by "|" (for held-out-word probes).
    """

    hidden: torch.Tensor
    layers: list[int]
    is_anchor: torch.Tensor
    sentence: torch.Tensor
    token_ids: torch.Tensor
    n_layers: int
    hidden_size: int
    concept: str
    source_model: str
    corpus_hash: str
    prepended_bos: bool = False
    anchor_keys: list[str] | None = None

    @property
    def n_sentences(self) -> int:
        """Number of sentences the tokens came from."""
        return int(self.sentence.max()) + 1 if len(self.sentence) else 0

    def layer(self, layer: int) -> torch.Tensor:
        """``[n_tokens, hidden_size]`` outputs of decoder layer ``layer``."""
        if layer not in self.layers:
            raise DataError(f"layer {layer} was not collected; collected layers are {self.layers}")
        return self.hidden[self.layers.index(layer)]


def model_name(model: nn.Module) -> str:
    """A model's name or path as recorded in vectors (``config._name_or_path``, else its class name)."""
    cfg = getattr(model, "config", None)
    return str(getattr(cfg, "_name_or_path", "") or type(model).__name__)


def _layer_output(output: Any) -> torch.Tensor:
    # Decoder layers return a tensor in transformers 5.x, a tuple (hidden, ...) in 4.x.
    return output[0] if isinstance(output, (tuple, list)) else output


@torch.no_grad()
def collect_activations(
    model: nn.Module,
    tokenizer: Any,
    sentences: Sequence[ConceptSentence],
    *,
    layers: Sequence[int] | None = None,
    batch_size: int = 32,
    max_length: int | None = 128,
    source_model: str | None = None,
    progress: bool = True,
) -> Activations:
    """Run ``sentences`` through ``model``'s text decoder and keep every requested layer's output per token.

    Args:
        model: a causal LM or an MLLM (its text backbone is used; weights shared, nothing copied).
        tokenizer: a fast tokenizer (a processor works: its ``.tokenizer`` is used).
        sentences: validated corpus sentences of one concept.
        layers: decoder layers to keep (default: all).
        batch_size: sentences per forward pass.
        max_length: truncation length (a truncated anchor raises).
        source_model: recorded name (default: ``config._name_or_path``).

    Example:
        >>> acts = collect_activations(lm, tok, load_corpus("negation", n=32), batch_size=16)
    """
    from steerkit.models.adapters import adapter_for

    if not sentences:
        raise DataError("no sentences to collect activations from")
    concepts = sorted({s.concept for s in sentences})
    adapter = adapter_for(model)
    tokenizer = adapter.tokenizer(tokenizer)
    backbone = adapter.text_backbone(model)
    back_adapter = adapter_for(backbone)
    decoder = back_adapter.decoder_layers(backbone)
    # The base model alone: the lm_head's vocabulary projection is not needed for layer outputs.
    base = back_adapter.text_model_module(backbone)
    n_layers, hidden_size = len(decoder), back_adapter.hidden_size(backbone)
    keep = list(range(n_layers)) if layers is None else sorted({int(l) for l in layers})
    bad = [l for l in keep if not 0 <= l < n_layers]
    if bad:
        raise DataError(f"layers {bad} out of range: the model has decoder layers 0..{n_layers - 1}")
    try:
        device = next(base.parameters()).device
    except StopIteration:
        device = torch.device("cpu")

    captured: dict[int, torch.Tensor] = {}
    handles = [decoder[l].register_forward_hook(
        lambda _m, _i, out, l=l: captured.__setitem__(l, _layer_output(out))) for l in keep]
    chunks: list[torch.Tensor] = []
    anchors, sent_ids, tok_ids = [], [], []
    prepended = False
    was_training = base.training
    base.eval()
    try:
        starts = range(0, len(sentences), batch_size)
        for start in tqdm(starts, desc=f"activations {','.join(concepts)}", disable=not progress, leave=False):
            batch = align_batch(tokenizer, sentences[start:start + batch_size], max_length=max_length)
            prepended = batch.prepended_bos
            captured.clear()
            base(**batch.model_inputs(device), use_cache=False)
            keep_mask = batch.anchor_mask | batch.other_mask  # real, non-special tokens
            chunks.append(torch.stack([captured[l][keep_mask.to(device)].float().cpu() for l in keep]))
            anchors.append(batch.anchor_mask[keep_mask])
            rows = torch.arange(start, start + len(batch.input_ids)).unsqueeze(1).expand_as(keep_mask)
            sent_ids.append(rows[keep_mask])
            tok_ids.append(batch.input_ids[keep_mask])
    finally:
        for h in handles:
            h.remove()
        base.train(was_training)
    return Activations(
        hidden=torch.cat(chunks, dim=1),
        layers=keep,
        is_anchor=torch.cat(anchors),
        sentence=torch.cat(sent_ids),
        token_ids=torch.cat(tok_ids),
        n_layers=n_layers,
        hidden_size=hidden_size,
        concept="+".join(concepts),
        source_model=source_model or model_name(model),
        corpus_hash=corpus_hash(sentences),
        prepended_bos=prepended,
        anchor_keys=[anchor_key(s) for s in sentences],
    )
