"""Prefix caching for steering sweeps: run the unsteered prefix once, replay only layers l.. for every strength.

Steering at decoder layer l leaves the vision tower and layers 0..l-1 untouched, so for one item batch their work
is the same for every (vector, strength, scope). :func:`capture` runs one real forward and records

* the input hidden state of every layer in the grid (a forward pre-hook on each layer), and
* the output of the vision tower (a forward hook on the adapter's vision modules),

and :func:`steered_logits` then runs the *real* top-level forward on a batch whose rows repeat the items (tiled:
row ``r * B + b`` is item ``b``), with

* layers 0..l-1 replaced by identity stand-ins (nothing computed),
* the vision tower replaced by a stub that returns its recorded output tiled the same way,
* a forward pre-hook on layer l that swaps in the recorded hidden state.

Everything else -- masks, rotary/M-RoPE positions, sliding windows, prefix-LM masks, final norm, lm_head, logit
soft-capping -- is computed by the model's own code from the real (tiled) inputs, so no family fact is needed
here beyond the adapter's layer and vision paths. Exactness against a fresh forward is tested on every tiny
family (``tests/sweep/test_replay.py``); :func:`self_check` verifies it at run time and the engine falls back to
full forwards where it does not hold.

Example:
    >>> cap = capture(model, inputs, layers=[3, 5])
    >>> logits = steered_logits(model, inputs, layer=5, repeats=6, vector=v, alpha=alphas, positions=pos, cap=cap)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from torch import nn

from steerkit.models.adapters import adapter_for
from steerkit.steer import steer
from steerkit.tasks.scoring import last_logits  # the one last-position forward (re-exported here)


@dataclass
class Capture:
    """What one unsteered forward over an item batch leaves behind for replays.

    Attributes:
        hidden: layer -> input hidden state of that decoder layer [B, S, d].
        vision: outputs of each vision-module call, in call order.
        tuple_output: whether each decoder layer returned a tuple (transformers 4.x) rather than a tensor.
        logits: last-position logits of the unsteered forward [B, V] (the baseline, for free).
        batch: number of items B.
        kv: layer -> (keys, values) that layer wrote into the KV cache (only under ``recording(..., kv_below=k)``,
            for layers < k): what a replayed *prefill* writes for the layers it skips.
    """

    hidden: dict[int, torch.Tensor]
    vision: list[Any] = field(default_factory=list)
    tuple_output: bool = False
    logits: torch.Tensor | None = None
    batch: int = 0
    kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)


def tile(obj: Any, repeats: int, n_images: int | None = None) -> Any:
    """Repeat every tensor in ``obj`` ``repeats`` times along dim 0 (tensors, tuples, lists, dicts, ModelOutputs).

    Tiling (not interleaving) keeps concatenated per-image data (e.g. Qwen2-VL's flattened patches) consistent
    with a batch whose rows are ``[items, items, ...]``. With ``n_images``, a tuple/list of ``n_images`` tensors
    that do not share that leading size is read as one entry per image (Qwen2-VL's split ``pooler_output``) and
    is repeated as a sequence; any other sequence (e.g. per-layer ``hidden_states``) is tiled element-wise.
    :func:`self_check` catches a wrong reading at run time.
    """
    if isinstance(obj, torch.Tensor):
        if obj.ndim == 0 or repeats == 1:
            return obj
        return obj.repeat(repeats, *([1] * (obj.ndim - 1)))
    if isinstance(obj, Mapping):
        items = {k: tile(v, repeats, n_images) for k, v in obj.items()}
        try:
            return type(obj)(**items)
        except TypeError:
            return dict(items)
    if isinstance(obj, (tuple, list)):
        tensors = [v for v in obj if isinstance(v, torch.Tensor)]
        per_image = (
            n_images is not None and len(obj) == n_images and len(tensors) == len(obj)
            and not all(t.ndim > 0 and t.shape[0] == n_images for t in tensors)
        )
        if per_image:
            return type(obj)(list(obj) * repeats)
        tiled = [tile(v, repeats, n_images) for v in obj]
        if hasattr(obj, "_fields"):
            return type(obj)(*tiled)
        return type(obj)(tiled)
    return obj


def tile_inputs(inputs: Mapping[str, Any], repeats: int) -> dict[str, Any]:
    """Processor outputs for a batch whose rows repeat the items ``repeats`` times (row ``r * B + b`` = item b)."""
    if repeats == 1:
        return dict(inputs)
    return {k: tile(v, repeats) for k, v in inputs.items()}


class _Skip(nn.Module):
    """Identity stand-in for a decoder layer below the replayed one; attribute reads fall through to the layer."""

    def __init__(self, layer: nn.Module, tuple_output: bool):
        super().__init__()
        object.__setattr__(self, "_wrapped", layer)  # not a submodule: no parameters, no hooks inherited
        self._tuple = tuple_output

    def forward(self, hidden_states: torch.Tensor | None = None, *args: Any, **kwargs: Any) -> Any:
        h = hidden_states if hidden_states is not None else args[0]
        return (h,) if self._tuple else h

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            # models read per-layer facts such as ``attention_type`` while looping over the layers
            return getattr(object.__getattribute__(self, "_wrapped"), name)


def _hidden_arg(args: tuple, kwargs: dict) -> torch.Tensor:
    return kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]


CACHE_KWARGS = ("cache", "past_key_values", "past_key_value")  # the KV cache's name in a decoder layer's call


def cache_arg(kwargs: Mapping[str, Any]) -> Any:
    """The KV cache object a decoder layer was called with, or None."""
    for name in CACHE_KWARGS:
        if kwargs.get(name) is not None:
            return kwargs[name]
    return None


@contextmanager
def recording(model: nn.Module, layers: Sequence[int], batch: int, *, kv_below: int = 0) -> Iterator[Capture]:
    """Inside: forwards of ``model`` (an item batch of ``batch`` rows) record what replays of ``layers`` need.

    The yielded :class:`Capture` fills as the model runs: each layer's input (the last call wins), the vision
    tower's outputs (every call, in order) and, with ``kv_below=k``, the keys and values each layer < k writes into
    the forward's KV cache (``Capture.kv``). :func:`capture` runs one plain forward inside it;
    :mod:`steerkit.sweep.generate` runs ``generate``'s own prefill inside it, so that the recorded cache has the
    position ids ``generate`` gives left-padded rows.

    Example:
        >>> with recording(model, [2], batch=4, kv_below=2) as cap:
        ...     model.generate(**inputs, max_new_tokens=1, do_sample=False)
    """
    adapter = adapter_for(model)
    decoder = adapter.decoder_layers(model)
    cap = Capture(hidden={}, batch=batch)
    handles = []

    def record_hidden(layer: int) -> Any:
        def hook(_m: nn.Module, args: tuple, kwargs: dict) -> None:
            cap.hidden[layer] = _hidden_arg(args, kwargs).detach().clone()

        return hook

    def record_output(_m: nn.Module, _a: tuple, output: Any) -> None:
        cap.tuple_output = isinstance(output, tuple)

    def record_vision(_m: nn.Module, _a: tuple, output: Any) -> None:
        # a fresh container: models overwrite fields of the returned output object afterwards (Qwen2-VL)
        cap.vision.append(tile(output, 1))

    patched: list[Any] = []

    def record_cache(_m: nn.Module, _args: tuple, kwargs: dict) -> None:
        # wrap this forward's own cache object: the layers' update calls are what a replayed prefill must repeat
        cache = cache_arg(kwargs)
        if cache is None or "update" in vars(cache):
            return
        original = cache.update

        def update(key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *a: Any, **kw: Any) -> Any:
            if layer_idx < kv_below:
                cap.kv[layer_idx] = (key_states.detach(), value_states.detach())
            return original(key_states, value_states, layer_idx, *a, **kw)

        cache.update = update
        patched.append(cache)

    try:
        for layer in sorted(set(layers)):
            handles.append(decoder[layer].register_forward_pre_hook(record_hidden(layer), with_kwargs=True))
        handles.append(decoder[0].register_forward_hook(record_output))
        for module in adapter.vision_tower_modules(model):
            handles.append(module.register_forward_hook(record_vision))
        if kv_below > 0:
            handles.append(decoder[0].register_forward_pre_hook(record_cache, with_kwargs=True))
        yield cap
    finally:
        for h in handles:
            h.remove()
        for cache in patched:
            vars(cache).pop("update", None)


@torch.no_grad()
def capture(model: nn.Module, inputs: Mapping[str, Any], layers: Sequence[int]) -> Capture:
    """One unsteered forward that records what :func:`steered_logits` needs for ``layers``.

    Example:
        >>> cap = capture(model, adapter_for(model).build_inputs(processor, prompts, images), layers=[2, 4])
    """
    with recording(model, layers, int(inputs["input_ids"].shape[0])) as cap:
        cap.logits = last_logits(model, inputs)
    return cap


@contextmanager
def _replaying(model: nn.Module, cap: Capture, layer: int, repeats: int, stub_vision: bool) -> Iterator[None]:
    """Inside: a forward of the tiled batch skips layers < ``layer`` and the vision tower."""
    adapter = adapter_for(model)
    decoder = adapter.decoder_layers(model)
    originals = {k: decoder[k] for k in range(layer)}
    hidden = tile(cap.hidden[layer], repeats)
    vision_modules = adapter.vision_tower_modules(model) if stub_vision else []
    calls = iter(tile(v, repeats, cap.batch) for v in cap.vision)

    def swap(_m: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if "hidden_states" in kwargs:
            kwargs = {**kwargs, "hidden_states": hidden}
        else:
            args = (hidden, *args[1:])
        return args, kwargs

    def vision_stub(*_args: Any, **_kwargs: Any) -> Any:
        return next(calls)

    handle = decoder[layer].register_forward_pre_hook(swap, with_kwargs=True)
    try:
        for k, orig in originals.items():
            decoder[k] = _Skip(orig, cap.tuple_output)
        for module in vision_modules:
            module.forward = vision_stub  # instance attribute shadows the class method; removed below
        yield
    finally:
        handle.remove()
        for k, orig in originals.items():
            decoder[k] = orig
        for module in vision_modules:
            module.__dict__.pop("forward", None)


@torch.no_grad()
def steered_logits(
    model: nn.Module,
    inputs: Mapping[str, Any],
    layer: int,
    repeats: int,
    vector: torch.Tensor,
    alpha: torch.Tensor,
    positions: torch.Tensor,
    *,
    cap: Capture | None = None,
    stub_vision: bool = True,
) -> torch.Tensor:
    """Last-position logits [B * repeats, V] of the steered forward on the tiled batch.

    ``inputs`` are the item batch's (untiled) inputs; ``alpha`` [B * repeats] and ``positions``
    [B * repeats, S] give each tiled row its strength and steered positions. With a :class:`Capture` ``cap`` only
    layers ``layer``.. are recomputed (the replay); without one it is a fresh full forward (the reference and the
    fallback).
    """
    tiled = tile_inputs(inputs, repeats)
    if cap is None:
        with steer(model, {layer: vector}, alpha=alpha, positions=positions):
            return last_logits(model, tiled)
    with _replaying(model, cap, layer, repeats, stub_vision):
        with steer(model, {layer: vector}, alpha=alpha, positions=positions):
            return last_logits(model, tiled)


def self_check(
    model: nn.Module,
    inputs: Mapping[str, Any],
    cap: Capture,
    layer: int,
    repeats: int,
    vector: torch.Tensor,
    alpha: torch.Tensor,
    positions: torch.Tensor,
    atol: float,
) -> str:
    """Which replay mode is exact on this model for one steered, tiled batch (log-probs compared with ``atol``).

    Returns "replay" (layers and vision skipped), "replay_vision" (layers skipped, vision recomputed) or "full"
    (no prefix cache: every cell is a fresh forward).
    """
    ref = torch.log_softmax(steered_logits(model, inputs, layer, repeats, vector, alpha, positions).float(), -1)
    for mode, stub in (("replay", True), ("replay_vision", False)):
        try:
            got = steered_logits(model, inputs, layer, repeats, vector, alpha, positions, cap=cap, stub_vision=stub)
        except Exception:  # noqa: BLE001 - a family the replay cannot drive falls back to the next mode
            continue
        if torch.allclose(torch.log_softmax(got.float(), -1), ref, atol=atol, rtol=0):
            return mode
    return "full"
