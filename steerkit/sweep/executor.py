"""The forwards of a sweep on one model: capture the unsteered prefix, the prompting baseline, steered cells.

Modes (:class:`~steerkit.sweep.plan.SweepRequest` ``mode``):

* ``"replay"``: per item batch, one unsteered forward records each grid layer's input and the vision tower's
  output (:func:`steerkit.sweep.replay.capture`); each (vector, layer) then replays only layers l.. over rows
  that repeat the items for every strength x scope (:func:`steerkit.sweep.replay.steered_logits` with a capture).
* ``"replay_vision"``: the same, recomputing the vision tower.
* ``"full"``: a fresh steered forward per group of cells (:func:`steerkit.sweep.replay.steered_logits` without one).
* ``"auto"``: the first steered group is checked against a full forward (:func:`steerkit.sweep.replay.self_check`,
  once per model object and dtype); the exact mode is used from then on, with a warning when it is not "replay".

Example:
    >>> ex = Executor(model, processor, request)
    >>> inputs = ex.inputs(batch.items)
    >>> cap = ex.capture(inputs, layers=[2])
    >>> logits = ex.steered_logits(inputs, cap, 2, vector[2], request.combos, ex.masks(inputs, batch.items))
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ContextManager

import torch

from steerkit.errors import SteeringError
from steerkit.models.adapters import adapter_for
from steerkit.precision import autocast
from steerkit.steer import last_prompt_token, token_masks
from steerkit.sweep import replay as rp
from steerkit.sweep.plan import SweepRequest
from steerkit.tasks.schema import Item
from steerkit.tasks.scoring import item_inputs
from steerkit.tasks.splits import with_hint


def verified_mode(model: torch.nn.Module, inputs: Any, cap: rp.Capture, layer: int, v: torch.Tensor,
                  alpha: torch.Tensor, pos: torch.Tensor, atol: float, b: int) -> str:
    """The exact replay mode for this model, checked once per model object on two tiled strengths.

    The result is cached on the model (per ``atol`` and parameter dtype), so later sweeps skip the check.
    """
    key = (atol, str(next(model.parameters()).dtype))
    cached = getattr(model, "_steerkit_replay_mode", {})
    if key not in cached:
        r = min(2, alpha.shape[0] // b)
        cached[key] = rp.self_check(model, inputs, cap, layer, r, v, alpha[: r * b], pos[: r * b], atol)
        model._steerkit_replay_mode = cached  # type: ignore[assignment]
        if cached[key] != "replay":
            warnings.warn(f"prefix replay is not exact on {type(model).__name__}; sweeping in mode "
                          f"{cached[key]!r} (slower, same results)", stacklevel=4)
    return cached[key]


class Executor:
    """Runs the forwards of one sweep on ``model``; ``mode`` becomes the verified one after the first steered group.

    Args:
        model, processor: the model under the sweep and its processor.
        request: the sweep's :class:`~steerkit.sweep.plan.SweepRequest` (prompt prefix, scopes, mode, autocast).
    """

    def __init__(self, model: torch.nn.Module, processor: Any, request: SweepRequest):
        self.model = model
        self.processor = processor
        self.request = request
        self.adapter = adapter_for(model)
        param = next(model.parameters())
        self.device, dtype = param.device, param.dtype
        self.use_autocast = (self.device.type == "cuda" and dtype == torch.float32) if request.autocast is None \
            else request.autocast
        # replay and full forwards agree to float32 rounding; under bfloat16 only to its rounding
        self.atol = 1e-4 if dtype == torch.float32 and not self.use_autocast else 0.1
        self.image_id = self.adapter.image_token_id(model)
        self.specials = self.adapter.special_ids(None, model)
        self.mode = request.mode

    def autocast(self) -> ContextManager[Any]:
        """bfloat16 autocast when the request (or the default for float32 CUDA models) asks for it."""
        return autocast(self.device, self.use_autocast)

    def inputs(self, items: Sequence[Item]) -> Any:
        """Model inputs of an item batch (the request's prompt prefix + each prompt, images when present)."""
        if len({it.image is None for it in items}) > 1:
            raise SteeringError("an item batch mixes items with and without images; sweep them separately")
        return item_inputs(self.adapter, self.processor, items, self.request.prompt_prefix, self.device)

    def masks(self, inputs: Mapping[str, Any], items: Sequence[Item], check: bool = True) -> dict[str, torch.Tensor]:
        """Steered positions per scope [B, S]. With ``check``, refuse a requested scope that selects no token of an
        item: the replay steers through explicit positions, which ``steer()`` does not check, so such rows would
        silently equal the baseline."""
        masks = token_masks(inputs["input_ids"], inputs.get("attention_mask"), self.image_id, self.specials)
        if self.request.exclude_last_prompt_token:  # the paper's text/both masks (as steer() computes them)
            last = last_prompt_token(inputs["input_ids"], inputs.get("attention_mask"), self.specials)
            masks = {k: (m & ~last if k in ("text", "both") else m) for k, m in masks.items()}
        for scope in self.request.scopes if check else ():
            empty = [items[r].id for r in (~masks[scope].any(dim=1)).nonzero().flatten().tolist()]
            if empty:
                raise SteeringError(f"scope {scope!r} selects no token of items {empty[:10]} (e.g. 'image' on "
                                    "items without images); sweep those items with scopes 'text'/'both'")
        return masks

    def capture(self, inputs: Mapping[str, Any], layers: Sequence[int]) -> rp.Capture:
        """The unsteered forward: baseline logits, plus what replays of ``layers`` need (nothing in mode "full")."""
        return rp.capture(self.model, inputs, list(layers) if self.mode != "full" else [])

    def hinted_logits(self, items: Sequence[Item], hint: str) -> torch.Tensor:
        """Last-position logits with ``hint`` prepended to every prompt (the prompting baseline)."""
        return rp.last_logits(self.model, self.inputs(with_hint(items, hint)))

    def steered_logits(self, inputs: Mapping[str, Any], cap: rp.Capture, layer: int, vector: torch.Tensor,
                       group: Sequence[tuple[str, float]], masks: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Last-position logits [len(group) * B, V] with ``vector`` added at ``layer``: row ``k * B + b`` is item
        ``b`` under ``group[k]`` = (scope, strength)."""
        b = int(inputs["input_ids"].shape[0])
        r = len(group)
        alpha = torch.tensor([a for _, a in group for _ in range(b)], device=self.device)
        pos = torch.cat([masks[s] for s, _ in group])
        if self.mode == "auto":
            self.mode = verified_mode(self.model, inputs, cap, layer, vector, alpha, pos, self.atol, b)
        return rp.steered_logits(self.model, inputs, layer, r, vector, alpha, pos,
                                 cap=None if self.mode == "full" else cap, stub_vision=self.mode == "replay")


__all__ = ["Executor", "verified_mode"]
