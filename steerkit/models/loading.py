"""Load any supported model by name: the organism, a tiny offline instance, or a hub/local checkpoint."""

from __future__ import annotations

from typing import Any

import torch

from steerkit.models.adapters import adapter_for, attach_processor

ORGANISM = "steerkit/organism"
ORGANISM_TEXT = "steerkit/organism-text"
TINY_PREFIX = "tiny/"


def load_model(
    name_or_path: str,
    *,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device = "cpu",
    text_only: bool = False,
    **kwargs: Any,
) -> tuple[Any, Any]:
    """Load ``(model, processor)`` and check that steerkit has an adapter for it.

    Names:
        ``"steerkit/organism"``: the organism MLLM trained by steerkit (shipped in ``data/organism``);
        ``"steerkit/organism-text"``: its text-only LM; ``"tiny/<family>"``: a tiny random instance
        (:data:`steerkit.models.tiny.FAMILIES`); anything else: a hub id or local folder, loaded with
        ``AutoModelForImageTextToText`` + ``AutoProcessor`` (or ``AutoModelForCausalLM`` + ``AutoTokenizer``
        with ``text_only=True``). Extra ``kwargs`` go to ``from_pretrained`` (e.g. ``gguf_file=``, ``revision=``).

    Example:
        >>> model, processor = load_model("google/paligemma2-3b-pt-224", dtype=torch.bfloat16, device="cuda")
        >>> model, processor = load_model("steerkit/organism")
    """
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    if name_or_path == ORGANISM:
        from steerkit.models import organism

        model, processor = organism.load()
    elif name_or_path == ORGANISM_TEXT:
        from steerkit.models import organism

        model, processor = organism.load_text_lm()
    elif name_or_path.startswith(TINY_PREFIX):
        from steerkit.models.tiny import tiny_causal_lm, tiny_model

        family = name_or_path[len(TINY_PREFIX):]
        model, processor = tiny_causal_lm() if family == "llama" else tiny_model(family)
    elif text_only:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype, **kwargs)
        processor = AutoTokenizer.from_pretrained(name_or_path, **{k: v for k, v in kwargs.items() if k == "gguf_file"})
    else:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        model = AutoModelForImageTextToText.from_pretrained(name_or_path, dtype=dtype, **kwargs)
        processor = AutoProcessor.from_pretrained(name_or_path)
    adapter_for(model)  # fail now, with the how-to-register message, rather than at the first hook
    attach_processor(model, processor)
    if dtype is not None:
        model = model.to(dtype)
    return model.to(device).eval(), processor
