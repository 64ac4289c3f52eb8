"""Load any supported model by name: a registered profile (the embedded organism), a tiny offline instance, or a
hub/local checkpoint."""

from __future__ import annotations

from typing import Any

import torch

from steerkit.models.adapters import adapter_for, attach_processor
from steerkit.models.profiles import find_profile
from steerkit.models.textlm import TINY_LLAMA, load_text_model

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
        a registered profile's MLLM or text-LM name (:mod:`steerkit.models.profiles`; ``"steerkit/organism"`` and
        ``"steerkit/organism-text"``, shipped inside the package); ``"tiny/<family>"``: a tiny random instance
        (:data:`steerkit.models.tiny.FAMILIES`; ``"tiny/llama"`` is text-only); anything else: a hub id or local
        folder, loaded with ``AutoModelForImageTextToText`` + ``AutoProcessor``. ``text_only=True`` and text-LM
        names go through the one text-LM loader, :func:`steerkit.models.textlm.load_text_model`. Extra ``kwargs``
        go to ``from_pretrained`` (e.g. ``gguf_file=``, ``revision=``).

    Example:
        >>> model, processor = load_model("google/paligemma2-3b-pt-224", dtype=torch.bfloat16, device="cuda")
        >>> model, processor = load_model("steerkit/organism")
    """
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    profile = find_profile(name_or_path)
    if text_only or (profile is not None and name_or_path == profile.text_name) or name_or_path == TINY_LLAMA:
        model, processor = load_text_model(name_or_path, dtype=dtype, **kwargs)
    elif profile is not None and name_or_path == profile.name:
        model, processor = profile.load()
    elif name_or_path.startswith(TINY_PREFIX):
        from steerkit.models.tiny import tiny_model

        model, processor = tiny_model(name_or_path[len(TINY_PREFIX):])
    else:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        model = AutoModelForImageTextToText.from_pretrained(name_or_path, dtype=dtype, **kwargs)
        processor = AutoProcessor.from_pretrained(name_or_path)
    adapter_for(model)  # fail now, with the how-to-register message, rather than at the first hook
    attach_processor(model, processor)
    if dtype is not None:
        model = model.to(dtype)
    return model.to(device).eval(), processor
