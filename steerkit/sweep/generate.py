"""Batched steered generation for sweeps: all (item x strength x scope) rows of one vector and layer in one
``generate`` batch, token for token what per-item ``generate()`` under :func:`steerkit.steer` returns.

The rows of a batch repeat an item batch (tiled: row ``r * B + b`` is item ``b``, as in
:mod:`steerkit.sweep.replay`), left-padded as :meth:`~steerkit.models.adapters.Adapter.build_inputs` pads them.
Each row gets its own strength and steered positions through :func:`steerkit.steer`'s per-row ``alpha`` tensor and
explicit ``positions`` (the row's scope mask, computed as ``steer`` computes it for that scope). With
``when="all"`` the decode steps steer each row's new token when it lies in the row's scope, as ``steer(tokens=scope,
when="all")`` does; a small pre-hook sets each row's strength for that step (0 outside its scope), since one
``steer`` context has one ``tokens`` scope for decode steps. ``generate`` stops each row at EOS or a stop string as
a batch-1 call would (finished rows are padded, and the padding is a special token that decoding drops).

Prefix reuse (``mode="replay"``, the default): steering at layer l leaves the vision tower and layers 0..l-1 of
the *prompt* the same for every row of an item. One unsteered prefill per item batch (``generate``'s own, under
:func:`steerkit.sweep.replay.recording` with ``kv_below=l``) records layer l's input, the vision tower's output
and the keys/values layers < l write into the KV cache. The prefill of the row batch then runs the real top-level
forward with layers < l replaced by stand-ins that write those recorded keys/values (tiled) into ``generate``'s
cache and compute nothing, the vision tower stubbed with its recorded output, and layer l's input swapped for the
recorded one; after that first forward the real layers are back and greedy decoding continues on the cache.
``mode="replay_vision"`` recomputes the vision tower; ``mode="full"`` reuses nothing (one batched ``generate``).
Exactness of every mode against per-item ``generate`` is tested on every tiny family and the organism
(``tests/sweep/test_generate.py``). In a sweep (``SweepRequest(answer="generate")``, mode "auto"),
:func:`verified_generation_mode` compares the replay with ``mode="full"`` on the first steered group once per model
and falls back to "full" when they differ.

Example:
    >>> rows = [(i, a, s) for i in range(len(prompts)) for a in (0.5, 1.0) for s in ("image", "both")]
    >>> texts = steered_generate(model, processor, prompts, images, vector, 2, rows, max_new_tokens=8)
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from tqdm.auto import tqdm

from steerkit.errors import SteeringError
from steerkit.models.adapters import adapter_for
from steerkit.steer import _call_inputs, _is_decode_step, last_prompt_token, steer, token_masks
from steerkit.sweep import replay as rp

Row = tuple[int, float, str]
"""One generation: (index of the item in ``prompts``, strength alpha, scope "image" | "text" | "both")."""
Mode = Literal["replay", "replay_vision", "full"]
SCOPES = ("image", "text", "both")
MODES = ("replay", "replay_vision", "full")


@torch.no_grad()
def steered_generate(
    model: nn.Module,
    processor: Any,
    prompts: Sequence[str],
    images: Sequence[Any] | None,
    vector: torch.Tensor | Mapping[int, torch.Tensor],
    layer: int,
    rows: Sequence[Row],
    *,
    max_new_tokens: int,
    when: Literal["prefill", "all"] = "prefill",
    stop_strings: Sequence[str] | None = None,
    batch_size: int = 64,
    mode: Mode = "replay",
    exclude_last_prompt_token: bool = False,
    special_ids: set[int] | None = None,
    progress: bool = False,
) -> list[str]:
    """Greedy generations of every row (item, alpha, scope) with ``vector`` added at decoder layer ``layer``.

    Row k's text equals ``tok.decode(model.generate(**item_inputs, max_new_tokens=..., do_sample=False,
    stop_strings=...)[0, S:], skip_special_tokens=True)`` run on the row's item alone (batch 1) inside
    ``steer(model, {layer: v}, alpha=alpha, tokens=scope, when=when,
    exclude_last_prompt_token=exclude_last_prompt_token)``.

    Args:
        model, processor: a model with an adapter (MLLM or text LM) and its processor or tokenizer.
        prompts: the item prompts, unformatted (the adapter applies the family's chat template).
        images: one image per prompt, or None for text-only prompts.
        vector: ``Tensor[d]`` for ``layer``, or a ``{layer: Tensor[d]}`` mapping (a ``SteeringVector``).
        layer: the 0-based decoder layer to steer.
        rows: (item index, alpha, scope) per generation; items may appear any number of times, in any order.
        max_new_tokens: new tokens per row at most.
        when: "prefill" steers the prompt pass only; "all" also each new token that lies in the row's scope.
        stop_strings: a row ends after the token that completes one of these (as ``generate(stop_strings=...)``).
        batch_size: rows per ``generate`` call; an item batch holds ``batch_size // (rows per item)`` items.
        mode: "replay" (vision tower and layers < ``layer`` of the prompt computed once per item), "replay_vision"
            (the same, vision tower recomputed per row), "full" (nothing reused).
        exclude_last_prompt_token: for scopes "text"/"both", leave each prompt's last non-special token unsteered
            (the paper's masks; see :func:`steerkit.steer`).
        special_ids: token ids never steered as text (default: ``steer``'s default).
        progress: show a tqdm bar over the rows generated (rows that steer identically -- repeats, and the
            alpha-0 rows of an item, which are all its unsteered generation -- are generated once).

    Returns:
        The new text of each row, in the order of ``rows``.

    Raises:
        SteeringError: a row's scope selects no token of its prompt (``steer`` refuses that prompt pass too), an
            unknown scope, mode or ``when``, an item index out of range, or a replayed prefill that cannot write
            the KV cache (use ``mode="full"``).
    """
    adapter = adapter_for(model)
    tok = adapter.tokenizer(processor)
    check = getattr(vector, "check_compatible", None)
    if callable(check):  # a SteeringVector checks its source model's shape, as steer() has it do
        check(model)
    if isinstance(vector, Mapping) and layer not in vector:
        raise SteeringError(f"the vector has no entry for layer {layer}; it has {sorted(vector.keys())}")
    v = vector[layer] if isinstance(vector, Mapping) else vector
    if when not in ("prefill", "all"):
        raise SteeringError(f"when={when!r}: use 'prefill' or 'all'")
    if mode not in MODES:
        raise SteeringError(f"mode={mode!r}: use one of {list(MODES)}")
    if images is not None and len(images) != len(prompts):
        raise SteeringError(f"got {len(images)} images for {len(prompts)} prompts; pass one image per prompt")
    image_id = adapter.image_token_id(model)
    for i, _, scope in rows:
        if scope not in SCOPES:
            raise SteeringError(f"scope {scope!r}: use one of {list(SCOPES)}")
        if scope == "image" and image_id is None:
            raise SteeringError(f"scope 'image' on a text-only model ({type(model).__name__}); use 'text'")
        if not 0 <= i < len(prompts):
            raise SteeringError(f"row item index {i} is out of range for {len(prompts)} prompts")
    if batch_size < 1:
        raise SteeringError(f"batch_size={batch_size}: use at least 1")
    specials = frozenset(special_ids) if special_ids is not None else frozenset(adapter.special_ids(None, model))
    # rows that steer identically are generated once: repeats, and every alpha-0 row of an item (= unsteered)
    distinct: dict[tuple, int] = {}
    todo: list[Row] = []
    of_row: list[int] = []
    scopes: dict[int, set[str]] = {}
    for i, alpha, scope in rows:
        key = (i, float(alpha), scope) if alpha != 0 else (i, 0.0, None)
        if key not in distinct:
            distinct[key] = len(todo)
            todo.append((i, float(alpha), scope))
        of_row.append(distinct[key])
        scopes.setdefault(i, set()).add(scope)
    job = _Job(model=model, processor=processor, tok=tok, prompts=prompts, images=images, vector=v, layer=layer,
               rows=todo, scopes=scopes, when=when, mode=mode, exclude_last=exclude_last_prompt_token,
               specials=specials, image_id=image_id, batch_size=batch_size,
               gen_kwargs=_generate_kwargs(tok, max_new_tokens, stop_strings),
               device=next(model.parameters()).device)
    by_item: dict[int, list[int]] = {}
    for k, (i, _, _) in enumerate(todo):
        by_item.setdefault(i, []).append(k)
    items = list(by_item)
    texts: list[str] = [""] * len(todo)
    if not items:
        return []
    per_batch = max(1, batch_size // max(len(ks) for ks in by_item.values()))
    with tqdm(total=len(todo), desc=f"generate L{layer}", disable=not progress) as bar:
        for start in range(0, len(items), per_batch):
            job.item_batch(items[start:start + per_batch], by_item, texts, bar)
    return [texts[k] for k in of_row]


def verified_generation_mode(model: nn.Module, run: Callable[[str], list[str]], key: Hashable) -> tuple[str, list[str]]:
    """The generation mode a sweep uses on ``model``: "replay" when it gives the texts of "full" on this first group
    of rows, else "full" (with a warning); checked once per model object and ``key`` (e.g. dtype and autocast).

    Args:
        model: the model (the verdict is cached on it, like the letter path's
            :func:`steerkit.sweep.executor.verified_mode`).
        run: ``mode -> texts`` of one :func:`steered_generate` call on the group being checked.
        key: what else the verdict depends on.

    Returns:
        (mode, the group's texts in that mode); when checked, the texts are those of "full", the reference.

    Example:
        >>> mode, texts = verified_generation_mode(model, lambda m: steered_generate(..., mode=m), ("float32",))
    """
    cached: dict[Hashable, str] = getattr(model, "_steerkit_generation_mode", {})
    if key in cached:
        return cached[key], run(cached[key])
    full = run("full")
    try:
        replay: list[str] | None = run("replay")
    except SteeringError:  # a family whose layers do not write the KV cache the replay fills: "full" is exact
        replay = None
    cached[key] = "replay" if replay == full else "full"
    model._steerkit_generation_mode = cached  # type: ignore[assignment]
    if cached[key] != "replay":
        warnings.warn(f"replayed prefills do not reproduce full steered generation on {type(model).__name__}; "
                      "generating in mode 'full' (slower, same results)", stacklevel=3)
    return cached[key], full


def _generate_kwargs(tok: Any, max_new_tokens: int, stop_strings: Sequence[str] | None) -> dict[str, Any]:
    """``generate`` arguments of a greedy call, as :func:`steerkit.models.generation.generate_text` passes them."""
    kw: dict[str, Any] = dict(max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    if stop_strings:
        kw.update(stop_strings=list(stop_strings), tokenizer=tok)
    return kw


@dataclass
class _Job:
    """One :func:`steered_generate` call: its settings and the work per item batch."""

    model: nn.Module
    processor: Any
    tok: Any
    prompts: Sequence[str]
    images: Sequence[Any] | None
    vector: torch.Tensor
    layer: int
    rows: list[Row]  # the distinct rows to generate
    scopes: dict[int, set[str]]  # item -> every scope requested for it (checked like steer() checks a prompt pass)
    when: str
    mode: str
    exclude_last: bool
    specials: frozenset[int]
    image_id: int | None
    batch_size: int
    gen_kwargs: dict[str, Any]
    device: torch.device

    def scope_masks(self, inputs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Steered prompt positions [B, S] per scope, exactly as ``steer`` computes them on a prompt pass."""
        ids, attn = inputs["input_ids"], inputs.get("attention_mask")
        masks = token_masks(ids, attn, self.image_id, self.specials)
        if self.exclude_last:
            last = last_prompt_token(ids, attn, self.specials)
            masks = {s: (m & ~last if s != "image" else m) for s, m in masks.items()}
        return masks

    def item_batch(self, items: list[int], by_item: Mapping[int, list[int]], texts: list[str], bar: Any) -> None:
        """Generate every row of ``items``: one capture, then ``generate`` over tiled blocks of rows."""
        images = None if self.images is None else [self.images[i] for i in items]
        inputs = adapter_for(self.model).build_inputs(self.processor, [self.prompts[i] for i in items], images,
                                                      device=self.device)
        masks = self.scope_masks(inputs)
        b, s = inputs["input_ids"].shape
        for j, i in enumerate(items):
            for scope in sorted(self.scopes[i]):  # every requested scope, also of rows merged away as alpha 0
                if not masks[scope][j].any():
                    raise SteeringError(
                        f"scope {scope!r} selects no position of item {i}'s prompt, so steering would change "
                        "nothing there (steer() refuses this prompt pass too); "
                        + ("pass its image" if scope == "image" else "steer another scope"))
        repeats = max(len(by_item[i]) for i in items)
        # slot r * B + j holds the r-th row of item j; missing rows are fillers (alpha 0, nothing steered)
        slots = [by_item[i][r] if r < len(by_item[i]) else None for r in range(repeats) for i in items]
        cap = None
        if self.mode != "full":
            # generate()'s own prefill (max_new_tokens=1 is that one forward), so the recorded keys carry the
            # position ids generate gives left-padded rows; a plain forward numbers them differently
            with rp.recording(self.model, [self.layer], b, kv_below=self.layer) as cap:
                self.model.generate(**inputs, **{**self.gen_kwargs, "max_new_tokens": 1})
        per_call = max(1, self.batch_size // b)
        for r0 in range(0, repeats, per_call):
            block = slots[r0 * b:min(repeats, r0 + per_call) * b]
            new = self.generate_block(inputs, masks, cap, block, len(block) // b)
            for text, k in zip(self.tok.batch_decode(new, skip_special_tokens=True), block):
                if k is not None:
                    texts[k] = text
            bar.update(sum(k is not None for k in block))

    def generate_block(self, inputs: Mapping[str, Any], masks: Mapping[str, torch.Tensor], cap: rp.Capture | None,
                       block: list[int | None], repeats: int) -> torch.Tensor:
        """New tokens [repeats * B, T] of one ``generate`` call over tiled rows ``block``."""
        b, s = inputs["input_ids"].shape
        if s == 1 and self.when == "all":  # steer() would read the prompt's positions as a decode step's
            raise SteeringError("when='all' needs prompts of more than one token")
        alpha = torch.tensor([self.rows[k][1] if k is not None else 0.0 for k in block], device=self.device)
        none = torch.zeros(s, dtype=torch.bool, device=self.device)
        pos = torch.stack([masks[self.rows[k][2]][j % b] if k is not None else none for j, k in enumerate(block)])
        scopes = [self.rows[k][2] if k is not None else None for k in block]
        live = alpha.clone()  # what steer() reads on each call; the decode gate rewrites it per step
        with contextlib.ExitStack() as stack:
            if cap is not None:
                stack.enter_context(_replayed_prefill(self.model, cap, self.layer, repeats,
                                                      stub_vision=self.mode == "replay"))
            # tokens="both" only serves decode steps (prompt passes use pos); the gate narrows it to each row's scope
            stack.enter_context(steer(self.model, {self.layer: self.vector}, alpha=live, tokens="both",
                                      when=self.when, positions=pos, special_ids=set(self.specials)))
            if self.when == "all":
                stack.enter_context(self.decode_gate(alpha, live, scopes))
            out = self.model.generate(**rp.tile_inputs(inputs, repeats), **self.gen_kwargs)
        return out[:, s:]

    @contextlib.contextmanager
    def decode_gate(self, alpha: torch.Tensor, live: torch.Tensor, scopes: list[str | None]) -> Iterator[None]:
        """Inside: on each decode step, row r's strength is ``alpha[r]`` if its new token lies in its scope, else 0;
        on prompt passes it is ``alpha[r]``."""
        code = torch.tensor([SCOPES.index(sc) if sc is not None else -1 for sc in scopes], device=alpha.device)

        def gate(_m: nn.Module, args: tuple, kwargs: dict) -> None:
            ids, attn, seq = _call_inputs(args, kwargs)
            if ids is None or not _is_decode_step(kwargs, seq):
                live.copy_(alpha)
                return
            m = {k: t[:, -1].to(alpha.device) for k, t in token_masks(ids, attn, self.image_id, self.specials).items()}
            inside = torch.zeros_like(code, dtype=torch.bool)
            for c, scope in enumerate(SCOPES):
                inside |= (code == c) & m[scope]
            live.copy_(alpha * inside)

        gate._steerkit = True  # type: ignore[attr-defined]  # counted by steering_hook_count
        handle = self.model.register_forward_pre_hook(gate, with_kwargs=True)
        try:
            yield
        finally:
            handle.remove()
            live.copy_(alpha)


class _PrefillSkip(rp._Skip):
    """Decoder layer k < l during a replayed prefill: writes the item batch's recorded keys/values of layer k
    (tiled) into the call's KV cache and passes the hidden state through, computing nothing."""

    def __init__(self, layer: nn.Module, index: int, kv: tuple[torch.Tensor, torch.Tensor], tuple_output: bool):
        super().__init__(layer, tuple_output)
        self._index = index
        self._kv = kv
        self._used = False

    def forward(self, hidden_states: torch.Tensor | None = None, *args: Any, **kwargs: Any) -> Any:
        if self._used:  # the real layer must be back for decode steps; a second call means it is not
            raise SteeringError("a replayed prefill stand-in was called twice; generation with prefix reuse needs "
                                "generate()'s prefill in one forward (no prefill chunking); use mode='full'")
        self._used = True
        cache = rp.cache_arg(kwargs)
        if cache is None:
            raise SteeringError(f"decoder layer {self._index} was called without a KV cache, so the replayed "
                                "prefill cannot fill it; use mode='full'")
        cache.update(self._kv[0], self._kv[1], self._index)
        return super().forward(hidden_states, *args, **kwargs)


@contextlib.contextmanager
def _replayed_prefill(model: nn.Module, cap: rp.Capture, layer: int, repeats: int,
                      stub_vision: bool) -> Iterator[None]:
    """Inside: the next top-level forward (``generate``'s prefill) of the tiled batch skips layers < ``layer`` and
    (with ``stub_vision``) the vision tower, filling their KV cache from ``cap``; later forwards run normally."""
    adapter = adapter_for(model)
    decoder = adapter.decoder_layers(model)
    missing = [k for k in range(layer) if k not in cap.kv]
    if missing:
        raise SteeringError(f"the capture holds no KV-cache entries for layers {missing} (this family's layers did "
                            "not write their cache through cache.update); use mode='full'")
    hidden = rp.tile(cap.hidden[layer], repeats)
    originals = {k: decoder[k] for k in range(layer)}
    vision_modules = adapter.vision_tower_modules(model) if stub_vision else []
    calls = iter([rp.tile(v, repeats, cap.batch) for v in cap.vision])
    handles: list[Any] = []

    def swap(_m: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        got = rp._hidden_arg(args, kwargs)
        if got.shape != hidden.shape:
            raise SteeringError(f"replayed prefill: layer {layer} got input {tuple(got.shape)}, the capture holds "
                                f"{tuple(hidden.shape)}; use mode='full'")
        if "hidden_states" in kwargs:
            return args, {**kwargs, "hidden_states": hidden}
        return (hidden, *args[1:]), kwargs

    def vision_stub(*_args: Any, **_kwargs: Any) -> Any:
        return next(calls)

    def restore(*_args: Any) -> None:
        for h in handles:
            h.remove()
        handles.clear()
        for k, orig in originals.items():
            decoder[k] = orig
        for module in vision_modules:
            module.__dict__.pop("forward", None)

    handles.append(decoder[layer].register_forward_pre_hook(swap, with_kwargs=True))
    handles.append(model.register_forward_hook(restore))  # the prefill is done: decode steps run the real model
    try:
        for k, orig in originals.items():
            decoder[k] = _PrefillSkip(orig, k, (rp.tile(cap.kv[k][0], repeats), rp.tile(cap.kv[k][1], repeats)),
                                      cap.tuple_output)
        for module in vision_modules:
            module.forward = vision_stub  # instance attribute shadows the class method; removed in restore
        yield
    finally:
        restore()


__all__ = ["steered_generate", "verified_generation_mode", "Row", "MODES", "SCOPES"]
