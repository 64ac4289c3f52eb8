"""Text generation through the adapter: one call for every family, text-only or with images."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from steerkit.models.adapters import adapter_for


@torch.no_grad()
def generate_text(
    model: Any,
    processor: Any,
    prompts: Sequence[str],
    images: Sequence[Any] | None = None,
    *,
    max_new_tokens: int = 32,
    temperature: float = 0.0,
    top_p: float = 1.0,
    num_return_sequences: int = 1,
    seed: int | None = None,
    batch_size: int = 16,
    stop_strings: Sequence[str] | None = None,
) -> list[str]:
    """Generate a continuation for each prompt (greedy at ``temperature=0``) and return the new text only.

    With ``num_return_sequences=k`` the result holds k samples per prompt, prompt-major.

    Example:
        >>> generate_text(model, processor, ["How many circles?"], images=[img], max_new_tokens=4)
    """
    adapter = adapter_for(model)
    tok = adapter.tokenizer(processor)
    device = next(model.parameters()).device
    if seed is not None:
        torch.manual_seed(seed)
    texts: list[str] = []
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start:start + batch_size])
        chunk_images = None if images is None else list(images[start:start + batch_size])
        inputs = adapter.build_inputs(processor, chunk, chunk_images, device=device)
        gen_kwargs: dict[str, Any] = dict(max_new_tokens=max_new_tokens, num_return_sequences=num_return_sequences,
                                          pad_token_id=tok.pad_token_id)
        if temperature > 0:
            gen_kwargs.update(do_sample=True, temperature=temperature, top_p=top_p)
        else:
            gen_kwargs.update(do_sample=False)
        if stop_strings:
            gen_kwargs.update(stop_strings=list(stop_strings), tokenizer=tok)
        out = model.generate(**inputs, **gen_kwargs)
        new = out[:, inputs["input_ids"].shape[1]:]
        texts.extend(tok.batch_decode(new, skip_special_tokens=True))
    return texts
