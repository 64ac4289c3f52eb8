"""Batched steered generation equals per-item generate() under steer(), token for token, on every tiny family and
the organism; prefix reuse really skips the prefix; hooks and layers are restored after errors."""

from __future__ import annotations

import contextlib
import functools

import pytest
import torch

from steerkit.errors import SteeringError, VectorMismatchError
from steerkit.models.adapters import adapter_for
from steerkit.models.tiny import FAMILIES, tiny_causal_lm, tiny_image
from steerkit.steer import assert_no_hooks, steer
from steerkit.sweep.generate import steered_generate

PROMPTS = ["How many red circles?", "Is the blue square to the left of the green triangle or to the right?",
           "Which object is closer to the camera?"]
ALPHAS = (0.0, 1.0, 4.0)
SCOPES = ("image", "text", "both")


def _vector(model, scale=3.0, seed=1):
    d = adapter_for(model).hidden_size(model)
    return torch.randn(d, generator=torch.Generator().manual_seed(seed)) * scale


def per_item(model, processor, prompts, images, v, layer, rows, *, when="prefill", max_new_tokens=6,
             stop_strings=None, exclude_last=False, steered=True):
    """The reference: each row alone (batch 1) through model.generate() inside steer()."""
    a = adapter_for(model)
    tok = a.tokenizer(processor)
    kw = dict(max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    if stop_strings:
        kw.update(stop_strings=list(stop_strings), tokenizer=tok)
    out: dict[tuple, str] = {}
    for i, alpha, scope in rows:
        if (i, alpha, scope) in out:
            continue
        inputs = a.build_inputs(processor, [prompts[i]], None if images is None else [images[i]])
        ctx = steer(model, {layer: v}, alpha=alpha, tokens=scope, when=when,
                    exclude_last_prompt_token=exclude_last) if steered else contextlib.nullcontext()
        with torch.no_grad(), ctx:
            gen = model.generate(**inputs, **kw)
        out[(i, alpha, scope)] = tok.decode(gen[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    return [out[r] for r in rows]


def _grid(n_items, alphas=ALPHAS, scopes=SCOPES):
    return [(i, a, s) for i in range(n_items) for a in alphas for s in scopes]


def _not_vacuous(rows, ref, distinct=2):
    """Steering changes some generation (else equality would prove nothing about the per-row steering)."""
    base = {i: t for (i, a, _), t in zip(rows, ref) if a == 0}
    assert any(t != base[i] for (i, a, _), t in zip(rows, ref) if a != 0)
    assert len(set(ref)) >= distinct


@pytest.mark.parametrize("when", ["prefill", "all"])
@pytest.mark.parametrize("family", FAMILIES)
def test_matches_per_item_generate(tiny, family, when):
    model, processor = tiny(family)
    images = [tiny_image(i) for i in range(3)]
    layer = adapter_for(model).num_layers(model) - 1  # the replay skips layer 0 and the vision tower
    v = _vector(model)
    rows = _grid(2)  # mixed alphas and scopes in one batch; the two prompts pad differently
    ref = per_item(model, processor, PROMPTS, images, v, layer, rows, when=when)
    _not_vacuous(rows, ref)
    for mode in ("replay", "full"):
        got = steered_generate(model, processor, PROMPTS, images, v, layer, rows, max_new_tokens=6, when=when,
                               mode=mode)
        assert got == ref, mode
    # an alpha-0 row is the unsteered generation
    plain = per_item(model, processor, PROMPTS, images, v, layer, [(0, 0.0, "both"), (1, 0.0, "both")],
                     steered=False)
    assert [t for (i, a, s), t in zip(rows, ref) if a == 0 and s == "both"] == plain
    assert_no_hooks(model)


@functools.cache
def _organism():
    from steerkit import load_model
    from steerkit.models.organism import world_items
    from steerkit.tasks.scoring import build_prompt, item_image

    model, processor = load_model("steerkit/organism")
    items = world_items("Count", 3, seed=0) + world_items("Relation", 3, seed=0)
    return model, processor, [build_prompt(it) for it in items], [item_image(it) for it in items]


@pytest.mark.parametrize("when", ["prefill", "all"])
def test_matches_per_item_generate_on_the_organism(when):
    # a trained model is sensitive to positions: this is where a prefix cache built with the wrong position ids
    # (a plain forward's, not generate()'s, under left padding) shows
    model, processor, prompts, images = _organism()
    v = _vector(model, scale=4.0)
    rows = _grid(len(prompts), alphas=(0.0, 1.0, 3.0), scopes=("image", "both"))
    for layer in (1, 3):
        ref = per_item(model, processor, prompts, images, v, layer, rows, when=when, max_new_tokens=8)
        _not_vacuous(rows, ref, distinct=3)
        for mode in ("replay", "replay_vision", "full"):
            got = steered_generate(model, processor, prompts, images, v, layer, rows, max_new_tokens=8, when=when,
                                   mode=mode)
            assert got == ref, (layer, mode)
    assert_no_hooks(model)


def test_stop_strings_end_each_row_as_per_item_generate(tiny):
    model, processor = tiny("paligemma")
    tok = adapter_for(model).tokenizer(processor)
    images = [tiny_image(i) for i in range(3)]
    v = _vector(model)
    rows = _grid(3, alphas=(0.0, 2.0), scopes=("image", "both"))
    free = per_item(model, processor, PROMPTS, images, v, 1, rows, max_new_tokens=8)
    # a stop string taken from one row's third new token: it must end some rows early and leave others running
    inputs = adapter_for(model).build_inputs(processor, [PROMPTS[0]], [images[0]])
    with steer(model, {1: v}, alpha=0.0, tokens="image"), torch.no_grad():
        gen = model.generate(**inputs, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    stop = tok.decode(gen[0, inputs["input_ids"].shape[1] + 2:][:1], skip_special_tokens=True).strip()
    assert stop
    ref = per_item(model, processor, PROMPTS, images, v, 1, rows, max_new_tokens=8, stop_strings=[stop])
    assert any(len(r) < len(f) for r, f in zip(ref, free)) and any(r == f for r, f in zip(ref, free))
    for mode in ("replay", "full"):
        got = steered_generate(model, processor, PROMPTS, images, v, 1, rows, max_new_tokens=8, stop_strings=[stop],
                               mode=mode)
        assert got == ref, mode


def test_any_row_order_and_count_and_small_batches(tiny):
    model, processor = tiny("qwen2_vl")
    images = [tiny_image(i) for i in range(3)]
    v = _vector(model)
    # unequal rows per item (fillers), shuffled order, a repeated row, and batches smaller than an item's rows
    rows = [(2, 4.0, "both"), (0, 1.0, "image"), (1, 0.0, "text"), (0, 4.0, "text"), (2, 1.0, "image"),
            (0, 0.0, "both"), (0, 4.0, "text"), (1, 4.0, "image")]
    ref = per_item(model, processor, PROMPTS, images, v, 1, rows, when="all")
    for batch_size in (1, 3, 64):
        got = steered_generate(model, processor, PROMPTS, images, v, 1, rows, max_new_tokens=6, when="all",
                               batch_size=batch_size)
        assert got == ref, batch_size


def test_paper_masks_and_first_layer(tiny):
    model, processor = tiny("llava")
    images = [tiny_image(i) for i in range(3)]
    v = _vector(model)
    rows = _grid(2, scopes=("text", "both"))
    for layer in (0, 1):
        ref = per_item(model, processor, PROMPTS, images, v, layer, rows, exclude_last=True)
        got = steered_generate(model, processor, PROMPTS, images, v, layer, rows, max_new_tokens=6,
                               exclude_last_prompt_token=True)
        assert got == ref, layer
    # the exclusion matters here, so the comparison above checks it
    assert got != steered_generate(model, processor, PROMPTS, images, v, 1, rows, max_new_tokens=6)


def test_text_only_lm():
    model, tok = tiny_causal_lm()
    v = _vector(model)
    rows = _grid(3, scopes=("text",))
    for when in ("prefill", "all"):
        ref = per_item(model, tok, PROMPTS, None, v, 1, rows, when=when)
        _not_vacuous(rows, ref)
        assert steered_generate(model, tok, PROMPTS, None, v, 1, rows, max_new_tokens=6, when=when) == ref
    with pytest.raises(SteeringError, match="text-only"):
        steered_generate(model, tok, PROMPTS, None, v, 1, [(0, 1.0, "image")], max_new_tokens=2)


def test_prefix_is_computed_once_per_item_batch(tiny):
    model, processor = tiny("gemma3")
    a = adapter_for(model)
    images = [tiny_image(i) for i in range(3)]
    rows = _grid(2)
    shapes: list[tuple] = []
    vision_calls: list[int] = []
    vision_block = next(m for m in a.vision_tower_modules(model)[0].modules() if isinstance(m, torch.nn.Linear))
    hooks = [a.decoder_layers(model)[0].register_forward_pre_hook(
                 lambda _m, args, kw: shapes.append(tuple(kw.get("hidden_states", args[0] if args else None).shape)),
                 with_kwargs=True),
             vision_block.register_forward_hook(lambda *_: vision_calls.append(1))]
    try:
        steered_generate(model, processor, PROMPTS, images, _vector(model), 1, rows, max_new_tokens=3)
    finally:
        for h in hooks:
            h.remove()
    prompt_len = a.build_inputs(processor, PROMPTS, images)["input_ids"].shape[1]
    # layer 0 saw the 2 items' prompts once (the capture), then only 1-token decode steps of the 14 distinct rows
    # (the 3 alpha-0 rows of an item are one unsteered generation)
    assert shapes[0][:2] == (2, prompt_len)
    assert all(s[:2] == (2 * 2 * 3 + 2, 1) for s in shapes[1:]) and len(shapes) > 1
    assert len(vision_calls) == 1  # a layer inside the vision tower ran for the capture only


def test_errors_leave_no_hooks_and_restore_layers(tiny):
    model, processor = tiny("llava")
    a = adapter_for(model)
    images = [tiny_image(i) for i in range(3)]
    v = _vector(model)
    rows = _grid(2)
    decoder = a.decoder_layers(model)
    layer0, vision = decoder[0], a.vision_tower_modules(model)[0]
    with pytest.raises(SteeringError, match="selects no position"):
        steered_generate(model, processor, PROMPTS, None, v, 1, [(0, 1.0, "image")], max_new_tokens=2)
    with pytest.raises(SteeringError, match="no entry for layer 1"):
        steered_generate(model, processor, PROMPTS, images, {0: v}, 1, rows, max_new_tokens=2)
    with pytest.raises(VectorMismatchError):  # raised by steer() once the capture has run
        steered_generate(model, processor, PROMPTS, images, torch.randn(7), 1, rows, max_new_tokens=2)
    assert_no_hooks(model)
    assert decoder[0] is layer0 and "forward" not in vision.__dict__
    for fail_on_call in (1, 2):  # 1: inside the replayed prefill (stand-ins in place); 2: a decode step
        calls = []

        def boom(*_):
            calls.append(1)
            if len(calls) == fail_on_call + 1:  # +1: the capture's own prefill comes first
                raise RuntimeError("boom")

        h = a.lm_head_module(model).register_forward_hook(boom)
        try:
            with pytest.raises(RuntimeError, match="boom"):
                steered_generate(model, processor, PROMPTS, images, v, 1, rows, max_new_tokens=4, when="all")
        finally:
            h.remove()
        assert_no_hooks(model)
        assert decoder[0] is layer0 and "forward" not in vision.__dict__
        assert not getattr(model, "_steerkit_active_layers", set())
    # and the model still generates exactly afterwards
    ref = per_item(model, processor, PROMPTS, images, v, 1, rows[:4])
    assert steered_generate(model, processor, PROMPTS, images, v, 1, rows[:4], max_new_tokens=6) == ref
