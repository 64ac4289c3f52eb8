"""The hook engine: add ``alpha * v_l`` to the output of decoder layer ``l`` on chosen token positions.

One engine serves every method (MeanShift, probe, SAE vectors are all ``{layer: vector}`` mappings) and every
family (layer paths and token ids come from the adapter table). Positions are recomputed on every forward call
from that call's own ``input_ids`` (a forward pre-hook on the top-level model), so the masks are right for
prefill, chunked prefill and KV-cached decode steps, and under left or right padding.

Example:
    >>> with steer(model, vector, layers=[5], alpha=0.8, tokens="image"):
    ...     out = model(**inputs)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from steerkit.errors import SteeringError, VectorMismatchError
from steerkit.models.adapters import Adapter, adapter_for

Tokens = Literal["image", "text", "both"]
When = Literal["prefill", "all"]

_ACTIVE_ATTR = "_steerkit_active_layers"


@dataclass
class SteeringHandle:
    """What a running :func:`steer` context exposes: the last mask applied and call counters."""

    layers: list[int]
    tokens: str
    when: str
    last_mask: torch.Tensor | None = None
    steered_calls: int = 0
    skipped_calls: int = 0
    _current: torch.Tensor | None = field(default=None, repr=False)


def _mark(fn: Any) -> Any:
    fn._steerkit = True  # lets steering_hook_count recognise our hooks among anyone else's
    return fn


def _vectors_by_layer(vector: Any, layers: Sequence[int] | None, n_layers: int) -> dict[int, torch.Tensor]:
    if isinstance(vector, torch.Tensor):
        if layers is None:
            raise SteeringError("a single tensor needs layers=[...]; or pass a {layer: vector} mapping")
        return {_check_layer(int(l), n_layers): vector for l in layers}
    if not isinstance(vector, Mapping):
        raise SteeringError(f"vector must be a Tensor or a Mapping[int, Tensor], got {type(vector).__name__}")
    chosen = sorted(vector.keys()) if layers is None else list(layers)
    missing = [l for l in chosen if l not in vector]
    if missing:
        raise SteeringError(f"the vector has no entry for layers {missing}; it has {sorted(vector.keys())}")
    return {_check_layer(int(l), n_layers): vector[l] for l in chosen}


def _check_layer(layer: int, n_layers: int) -> int:
    if not 0 <= layer < n_layers:
        raise SteeringError(f"layer {layer} is out of range: this model has decoder layers 0..{n_layers - 1}")
    return layer


def _call_inputs(args: tuple, kwargs: dict) -> tuple[torch.Tensor | None, torch.Tensor | None, int | None]:
    """input_ids, attention_mask and the sequence length of one forward call."""
    ids = kwargs.get("input_ids", args[0] if args and isinstance(args[0], torch.Tensor) else None)
    mask = kwargs.get("attention_mask")
    embeds = kwargs.get("inputs_embeds")
    seq = ids.shape[1] if ids is not None else (embeds.shape[1] if embeds is not None else None)
    return ids, mask, seq


def _cached_length(kwargs: dict) -> int:
    """How many positions this call's KV cache already holds (0 for a fresh prompt pass or no cache)."""
    cache = kwargs.get("past_key_values", kwargs.get("cache"))
    if cache is not None and hasattr(cache, "get_seq_length"):
        n = int(cache.get_seq_length())
        if n > 0:
            return n
    pos = kwargs.get("cache_position")
    if pos is not None and pos.numel() > 0:
        return int(pos.reshape(-1)[0])
    return 0


def _is_decode_step(kwargs: dict, seq_len: int | None) -> bool:
    """A cached single-token call: generate()'s decode step (a 1-token prefill chunk counts as one too)."""
    return seq_len == 1 and _cached_length(kwargs) > 0


def last_prompt_token(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    special_ids: set[int] | frozenset[int],
) -> torch.Tensor:
    """Bool mask [batch, seq] marking, per row, the last real (non-padding) token that is not a special token.

    Rows without such a token get no mark. Works under left and right padding (the mask, not the row end, decides).

    Example:
        >>> last_prompt_token(torch.tensor([[0, 5, 7, 8, 1]]), None, {0, 1, 5}).tolist()
        [[False, False, False, True, False]]
    """
    seq = input_ids.shape[1]
    keep = torch.ones_like(input_ids, dtype=torch.bool)
    if attention_mask is not None:
        keep = attention_mask[:, -seq:].to(torch.bool)
    if special_ids:
        keep = keep & ~torch.isin(input_ids, torch.tensor(sorted(special_ids), device=input_ids.device))
    index = torch.arange(seq, device=input_ids.device).expand_as(input_ids)
    last = torch.where(keep, index, torch.full_like(index, -1)).max(dim=1).values  # -1: the row has none
    return (index == last[:, None]) & keep


def token_masks(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    image_token_id: int | None,
    special_ids: set[int] | frozenset[int],
) -> dict[str, torch.Tensor]:
    """Boolean masks ``image``, ``text`` and ``both`` over ``input_ids`` [batch, seq].

    image = the image placeholder token; text = real (non-padding) tokens that are neither image nor special;
    both = their union. ``attention_mask`` may be longer than ``input_ids`` (decode steps): its last columns
    belong to this call.
    """
    seq = input_ids.shape[1]
    valid = torch.ones_like(input_ids, dtype=torch.bool)
    if attention_mask is not None:
        valid = attention_mask[:, -seq:].to(torch.bool)
    image = input_ids == image_token_id if image_token_id is not None else torch.zeros_like(valid)
    image = image & valid
    if special_ids:
        special = torch.isin(input_ids, torch.tensor(sorted(special_ids), device=input_ids.device))
    else:
        special = torch.zeros_like(valid)
    text = valid & ~image & ~special
    return {"image": image, "text": text, "both": image | text}


@contextmanager
def steer(
    model: nn.Module,
    vector: Mapping[int, torch.Tensor] | torch.Tensor,
    layers: Sequence[int] | None = None,
    alpha: float | torch.Tensor = 1.0,
    tokens: Tokens = "image",
    when: When = "prefill",
    positions: torch.Tensor | None = None,
    special_ids: set[int] | None = None,
    exclude_last_prompt_token: bool = False,
) -> Iterator[SteeringHandle]:
    """Steer ``model``: inside the context, decoder layer l outputs ``h + alpha * v_l`` on the chosen positions.

    Args:
        model: a top-level MLLM, a text-only causal LM, or a :class:`~steerkit.models.adapters.TextBackbone`.
        vector: ``{layer: Tensor[d]}`` (a ``SteeringVector`` is one) or one ``Tensor[d]`` for all ``layers``.
        layers: 0-based decoder layers to steer (default: every layer of the mapping).
        alpha: strength; a float, or a ``Tensor[batch]`` giving each row of the batch its own strength.
        tokens: "image" (image placeholder positions), "text" (non-image, non-special, non-padding) or "both".
        when: "prefill" steers only prompt passes; "all" also each generated token's decode step.
        positions: optional explicit bool mask [batch, seq] used instead of the token masks for calls of that shape.
        special_ids: token ids never counted as text (default: recorded at load time + config ids).
        exclude_last_prompt_token: for tokens "text"/"both", leave each row's last non-special prompt token
            unsteered on prompt (non-decode) calls, as the paper's public code's masks do; use it when comparing
            against the paper. The image scope and decode steps are unaffected.

    Raises:
        SteeringError: on a fresh prompt pass (no cached prefix) where the chosen scope selects no position in some
            row that has real tokens -- e.g. ``tokens="image"`` on a prompt without image tokens -- instead of
            silently steering nothing. The message names the rows. Explicit ``positions`` are not checked (the
            caller chose them), nor are decode steps or continuations of a cached prefix.

    Example:
        >>> with steer(model, {5: v}, alpha=torch.tensor([0.0, 0.5, 1.0]), tokens="image") as h:
        ...     logits = model(**inputs).logits
    """
    adapter: Adapter = adapter_for(model)
    decoder = adapter.decoder_layers(model)
    n_layers, hidden = len(decoder), adapter.hidden_size(model)
    check = getattr(vector, "check_compatible", None)
    if callable(check):
        check(model)
    vecs = _vectors_by_layer(vector, layers, n_layers)
    for layer, v in vecs.items():
        if v.ndim != 1 or v.shape[0] != hidden:
            raise VectorMismatchError(
                f"vector for layer {layer} has shape {tuple(v.shape)} but the model's hidden size is {hidden}; "
                "extract the vector from this model's text backbone (or one of the same width)"
            )
    if tokens not in ("image", "text", "both"):
        raise SteeringError(f"tokens={tokens!r}: use 'image', 'text' or 'both'")
    if when not in ("prefill", "all"):
        raise SteeringError(f"when={when!r}: use 'prefill' or 'all'")
    image_id = adapter.image_token_id(model)
    if tokens == "image" and image_id is None and positions is None:
        raise SteeringError(f"tokens='image' on a text-only model ({type(model).__name__}); use tokens='text'")
    specials = frozenset(special_ids) if special_ids is not None else frozenset(adapter.special_ids(None, model))
    if exclude_last_prompt_token and positions is not None:
        raise SteeringError("exclude_last_prompt_token applies to the token masks; with positions=, leave the last "
                            "prompt position out of positions yourself")
    exclude_last = exclude_last_prompt_token and tokens in ("text", "both")
    if isinstance(alpha, torch.Tensor) and alpha.ndim != 1:
        raise SteeringError(f"alpha tensor must be 1-D [batch], got shape {tuple(alpha.shape)}")

    active: set[int] = getattr(model, _ACTIVE_ATTR, set())
    clash = sorted(active & set(vecs))
    if clash:
        raise SteeringError(
            f"layers {clash} are already steered by an enclosing steer(); combine the vectors first "
            "(e.g. SteeringVector addition) or steer different layers"
        )
    handle = SteeringHandle(layers=sorted(vecs), tokens=tokens, when=when)

    def pre_hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        ids, attn, seq = _call_inputs(args, kwargs)
        handle._current = None
        if when == "prefill" and _is_decode_step(kwargs, seq):
            return
        if positions is not None and positions.shape[-1] == seq:
            handle._current = positions.to(torch.bool)
            return
        if ids is None:
            raise SteeringError(
                "this forward call has no input_ids (inputs_embeds only), so token positions are unknown; pass "
                "positions=<bool mask [batch, seq]> to steer()"
            )
        mask = token_masks(ids, attn, image_id, specials)[tokens]
        if exclude_last and not _is_decode_step(kwargs, seq):
            mask = mask & ~last_prompt_token(ids, attn, specials)
        if _cached_length(kwargs) == 0:  # a fresh prompt pass: every row must have something to steer
            _check_not_empty(mask, ids, attn, tokens)
        handle._current = mask

    def make_layer_hook(v: torch.Tensor) -> Any:
        cache: dict[tuple, torch.Tensor] = {}

        def layer_hook(_module: nn.Module, _args: tuple, output: Any) -> Any:
            mask = handle._current
            if mask is None:
                handle.skipped_calls += 1
                return output
            h = output[0] if isinstance(output, tuple) else output
            if mask.shape != h.shape[:2]:
                raise SteeringError(f"mask shape {tuple(mask.shape)} does not match activations {tuple(h.shape[:2])}")
            key = (h.dtype, h.device)
            if key not in cache:  # cast once per dtype/device, not per call
                cache[key] = v.detach().to(device=h.device, dtype=h.dtype)
            vv = cache[key]
            if isinstance(alpha, torch.Tensor):
                if alpha.shape[0] != h.shape[0]:
                    raise SteeringError(f"alpha has {alpha.shape[0]} rows but the batch has {h.shape[0]}")
                scale = alpha.to(device=h.device, dtype=h.dtype)[:, None, None]
            else:
                scale = torch.tensor(alpha, device=h.device, dtype=h.dtype)
            delta = scale * vv * mask.to(device=h.device, dtype=h.dtype)[..., None]
            new_h = h + delta
            handle.last_mask = mask
            handle.steered_calls += 1
            return (new_h, *output[1:]) if isinstance(output, tuple) else new_h

        return _mark(layer_hook)

    removers = []
    try:
        setattr(model, _ACTIVE_ATTR, active | set(vecs))
        removers.append(model.register_forward_pre_hook(_mark(pre_hook), with_kwargs=True))
        for layer, v in vecs.items():
            # prepend=True: run before transformers' own output recorders, so hidden_states[l+1] shows the change.
            removers.append(decoder[layer].register_forward_hook(make_layer_hook(v), prepend=True))
        yield handle
    finally:
        for r in removers:
            r.remove()
        remaining = getattr(model, _ACTIVE_ATTR, set()) - set(vecs)
        setattr(model, _ACTIVE_ATTR, remaining)
        handle._current = None


def _check_not_empty(mask: torch.Tensor, ids: torch.Tensor, attn: torch.Tensor | None, tokens: str) -> None:
    """Raise if the scope selects nothing in a row of a prompt pass (a silent no-op otherwise).

    Rows with no real token at all (pure padding) are not counted: there is nothing in them to steer.
    """
    real = torch.ones_like(ids, dtype=torch.bool) if attn is None else attn[:, -ids.shape[1]:].to(torch.bool)
    empty = (~mask.any(dim=1) & real.any(dim=1)).nonzero().flatten().tolist()
    if not empty:
        return
    fix = ("pass the images with the prompt (the processor inserts the image tokens), or steer tokens='text' or "
           "'both'" if tokens == "image" else "give the prompt text tokens, or steer another scope")
    raise SteeringError(f"tokens={tokens!r} selects no position in batch rows {empty} of this prompt pass, so "
                        f"steering would change nothing there; {fix}")


def steering_hook_count(model: nn.Module) -> int:
    """How many steerkit hooks are attached anywhere in ``model`` (0 outside every :func:`steer` context)."""
    count = 0
    for module in model.modules():
        for hooks in (module._forward_hooks, module._forward_pre_hooks):
            count += sum(1 for fn in hooks.values() if getattr(fn, "_steerkit", False))
    return count


def assert_no_hooks(model: nn.Module) -> None:
    """Raise :class:`SteeringError` if any steerkit hook is still attached to ``model``."""
    n = steering_hook_count(model)
    if n:
        raise SteeringError(f"{n} steerkit hooks are still attached to {type(model).__name__}; a steer() context leaked")
