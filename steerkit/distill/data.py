"""Self-distillation, step 2: pair each kept text-mode trace with the image-mode input, and encode it for SFT.

A pair is (image-mode prompt, rendered image, response). Encoding builds the prompt through the family's adapter
(``adapter.build_inputs``: chat template, image tokens, pixel tensors), appends the response tokens and EOS, and
sets ``labels`` to -100 everywhere except the response: the prompt, the image tokens and any padding never carry
loss.

Prompt-aligned side inputs are extended over the response by what they mean, decided from the processor, never
from the model type: ``attention_mask`` 1; ``mm_token_type_ids`` (modality ids) 0 = text; ``token_type_ids`` 1
when the processor implements a prefix-LM with a ``suffix`` argument (the suffix is marked 1, and must attend
causally), else 0 (a text token, as opposed to an image token).

Example:
    >>> pairs = make_pairs(keep_correct(traces), problems, mode="instruction_image")
    >>> ds = SFTDataset(encode_pairs(model, processor, pairs))
    >>> batch = collate(ds[:4], pad_id=tokenizer.pad_token_id)
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset

from steerkit.errors import DistillError
from steerkit.gap.modes import PromptStyle, mode_input, style_for
from steerkit.gap.problems import TextProblem
from steerkit.render.text_image import RenderConfig

IGNORE_INDEX = -100


@dataclass
class SFTPair:
    """One supervised example: the model sees ``prompt`` (+ ``image``) and learns to answer ``response``."""

    item_id: str
    prompt: str
    image: Image.Image | None
    response: str
    kind: str = "image"  # "image" (the distillation target) or "text" (replay)


def make_pairs(
    kept: pd.DataFrame,
    problems: Sequence[TextProblem],
    *,
    mode: str = "instruction_image",
    style: PromptStyle | None = None,
    render: RenderConfig | None = None,
    text_replay: float = 0.0,
    seed: int = 0,
) -> list[SFTPair]:
    """Pair each kept trace with its problem's ``mode`` input (image rendered once per item).

    ``text_replay`` adds that fraction (of the image pairs) of text-mode pairs with the same traces, an optional
    guard against forgetting (the reference recipe uses none).
    """
    by_id = {p.id: p for p in problems}
    missing = sorted(set(kept["item_id"]) - set(by_id))
    if missing:
        raise DistillError(f"{len(missing)} traces have no problem (e.g. {missing[:3]}); pass the problems the "
                           "traces were sampled on")
    if kept.empty:
        raise DistillError("no correct traces to distil; sample more (k, temperature) or use more train items")
    style = style or style_for(list(by_id.values()))
    cache: dict[str, Any] = {}
    pairs = []
    for _, row in kept.iterrows():
        p = by_id[row["item_id"]]
        if p.id not in cache:
            cache[p.id] = mode_input(p, mode, style, render)
        inp = cache[p.id]
        pairs.append(SFTPair(p.id, inp.prompt, inp.image, row["response"], "image"))
    if text_replay > 0:
        g = torch.Generator().manual_seed(seed)
        n = int(round(text_replay * len(pairs)))
        idx = torch.randperm(len(kept), generator=g)[:n].tolist()
        for i in idx:
            row = kept.iloc[i]
            p = by_id[row["item_id"]]
            pairs.append(SFTPair(p.id, mode_input(p, "text", style).prompt, None, row["response"], "text"))
    return pairs


def _token_type_fill(processor: Any) -> int:
    call = getattr(type(processor), "__call__", None)
    try:
        return 1 if call is not None and "suffix" in inspect.signature(call).parameters else 0
    except (TypeError, ValueError):
        return 0


def encode_pair(model: Any, processor: Any, pair: SFTPair, *, max_length: int | None = None) -> dict[str, torch.Tensor]:
    """Token ids, attention mask, labels (response only) and image tensors of one pair; batch dimension 1.

    The response is tokenized without special tokens and followed by EOS (so the model learns to stop).
    """
    from steerkit.models.adapters import adapter_for

    adapter = adapter_for(model)
    tok = adapter.tokenizer(processor)
    images = [pair.image] if pair.image is not None else None
    inputs = adapter.build_inputs(processor, [pair.prompt], images)
    prompt_ids = inputs["input_ids"]
    resp = tok(pair.response, add_special_tokens=False, return_tensors="pt")["input_ids"]
    if tok.eos_token_id is None:
        raise DistillError("the tokenizer has no eos_token_id; set one so the model learns where to stop")
    resp = torch.cat([resp, torch.tensor([[tok.eos_token_id]])], dim=1)
    n_prompt, n_resp = prompt_ids.shape[1], resp.shape[1]
    out: dict[str, torch.Tensor] = {}
    fills = response_fills(processor)
    for key, value in inputs.items():
        if key == "input_ids":
            continue
        if isinstance(value, torch.Tensor) and value.dim() == 2 and value.shape == prompt_ids.shape:
            if key not in fills:
                raise DistillError(f"processor output {key!r} is aligned with the tokens but steerkit does not know "
                                   "how to extend it over the response; add it to the fills in "
                                   "steerkit/distill/data.py::encode_pair")
            out[key] = torch.cat([value, torch.full((1, n_resp), fills[key], dtype=value.dtype)], dim=1)
        else:
            out[key] = value
    out["input_ids"] = torch.cat([prompt_ids, resp], dim=1)
    labels = torch.full_like(out["input_ids"], IGNORE_INDEX)
    labels[:, n_prompt:] = resp
    out["labels"] = labels
    if max_length is not None and out["input_ids"].shape[1] > max_length:
        raise DistillError(f"example {pair.item_id!r} has {out['input_ids'].shape[1]} tokens > max_length "
                           f"{max_length}; raise max_length or shorten max_new_tokens when sampling traces")
    return out


def encode_pairs(model: Any, processor: Any, pairs: Sequence[SFTPair], *,
                 max_length: int | None = None) -> list[dict[str, torch.Tensor]]:
    """:func:`encode_pair` for every pair."""
    return [encode_pair(model, processor, p, max_length=max_length) for p in pairs]


class SFTDataset(Dataset):
    """A list of encoded examples as a torch Dataset (what the transformers Trainer consumes)."""

    def __init__(self, examples: Sequence[dict[str, torch.Tensor]]):
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int | slice) -> Any:
        return self.examples[i]


class Collator:
    """Right-pads token-aligned tensors (ids with ``pad_id``, labels with -100, masks and type ids with 0) and
    concatenates image tensors along their first dimension (each example carries its own batch dimension).

    Text-only (replay) and image examples may share a batch: image tensors are concatenated over the examples that
    have them, in order, which is the order of their image tokens in the batch. A token-aligned key that only image
    examples carry (``token_type_ids``) is rebuilt for the others: 0 on the prompt, ``response_fills[key]`` on the
    response.
    """

    def __init__(self, pad_id: int, response_fills: dict[str, int] | None = None):
        self.pad_id = pad_id
        self.response_fills = dict(response_fills or {})

    def __call__(self, examples: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        def aligned(e: dict[str, torch.Tensor], key: str) -> bool:
            v = e.get(key)
            return isinstance(v, torch.Tensor) and v.dim() == 2 and v.shape == e["input_ids"].shape

        keys = list(dict.fromkeys(k for e in examples for k in e))
        seq_keys = {k for k in keys if any(aligned(e, k) for e in examples)}
        longest = max(e["input_ids"].shape[1] for e in examples)
        batch: dict[str, torch.Tensor] = {}
        for key in keys:
            if key in seq_keys:
                fill = self.pad_id if key == "input_ids" else IGNORE_INDEX if key == "labels" else 0
                parts = []
                for e in examples:
                    v = e.get(key)
                    if v is None:  # rebuilt from the response positions
                        v = torch.where(e["labels"] != IGNORE_INDEX, self.response_fills.get(key, 0), 0)
                    parts.append(torch.nn.functional.pad(v, (0, longest - v.shape[1]), value=fill))
                batch[key] = torch.cat(parts)
            else:
                batch[key] = torch.cat([e[key] for e in examples if key in e])
        return batch


def collate(examples: Sequence[dict[str, torch.Tensor]], pad_id: int,
            response_fills: dict[str, int] | None = None) -> dict[str, torch.Tensor]:
    """One padded batch (see :class:`Collator`)."""
    return Collator(pad_id, response_fills)(examples)


def response_fills(processor: Any) -> dict[str, int]:
    """How token-aligned side inputs continue over response tokens, for this processor (see module docstring)."""
    return {"attention_mask": 1, "mm_token_type_ids": 0, "token_type_ids": _token_type_fill(processor)}
