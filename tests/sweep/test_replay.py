"""Prefix replay equals a fresh full forward on every tiny family (float32), with and without the vision stub."""

from __future__ import annotations

import pytest
import torch

from steerkit.models.adapters import adapter_for
from steerkit.models.tiny import FAMILIES, tiny_causal_lm, tiny_image
from steerkit.steer import assert_no_hooks, token_masks
from steerkit.sweep import replay as rp

PROMPTS = ["How many red circles?", "Is the blue square to the left of the green triangle or to the right?"]


def _setup(model, processor, images=True):
    a = adapter_for(model)
    inputs = a.build_inputs(processor, PROMPTS, images=[tiny_image(i) for i in range(2)] if images else None)
    masks = token_masks(inputs["input_ids"], inputs["attention_mask"], a.image_token_id(model), a.special_ids(None, model))
    return a, inputs, masks


@pytest.mark.parametrize("family", FAMILIES)
def test_replay_matches_full_forward(tiny, family):
    model, processor = tiny(family)
    a, inputs, masks = _setup(model, processor)
    n_layers = a.num_layers(model)
    cap = rp.capture(model, inputs, list(range(n_layers)))
    assert sorted(cap.hidden) == list(range(n_layers))
    g = torch.Generator().manual_seed(1)
    v = torch.randn(a.hidden_size(model), generator=g) * 3
    # three scopes x two items = 6 tiled rows with different strengths
    pos = torch.cat([masks["image"], masks["text"], masks["both"]])
    alpha = torch.tensor([0.5, 0.5, 1.0, 1.0, 2.0, 2.0])
    with torch.no_grad():
        base = rp.last_logits(model, inputs)
    torch.testing.assert_close(cap.logits, base, rtol=0, atol=0)
    for layer in range(n_layers):
        ref = rp.steered_logits(model, inputs, layer, 3, v, alpha, pos)
        for stub in (True, False):
            got = rp.steered_logits(model, inputs, layer, 3, v, alpha, pos, cap=cap, stub_vision=stub)
            torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
        # the steering actually changes something (else the comparison would be vacuous)
        assert not torch.allclose(ref, rp.steered_logits(model, inputs, layer, 3, v, alpha * 0, pos))
    assert rp.self_check(model, inputs, cap, 0, 3, v, alpha, pos, atol=1e-4) == "replay"
    assert_no_hooks(model)
    # layers and vision modules are restored after a replay
    assert all(type(m).__name__ != "_Skip" for m in a.decoder_layers(model))
    assert all("forward" not in m.__dict__ for m in a.vision_tower_modules(model))


def test_replay_text_only_lm():
    model, tok = tiny_causal_lm()
    a = adapter_for(model)
    inputs = a.build_inputs(tok, PROMPTS)
    masks = token_masks(inputs["input_ids"], inputs["attention_mask"], None, a.special_ids(None, model))
    cap = rp.capture(model, inputs, [1])
    v = torch.randn(a.hidden_size(model)) * 3
    pos = torch.cat([masks["text"]] * 2)
    alpha = torch.tensor([1.0, 1.0, 3.0, 3.0])
    torch.testing.assert_close(rp.steered_logits(model, inputs, 1, 2, v, alpha, pos, cap=cap),
                               rp.steered_logits(model, inputs, 1, 2, v, alpha, pos), rtol=1e-5, atol=1e-5)


def test_replay_restores_model_after_an_error(tiny):
    model, processor = tiny("llava")
    a, inputs, masks = _setup(model, processor)
    cap = rp.capture(model, inputs, [1])
    with pytest.raises(Exception):
        rp.steered_logits(model, inputs, 1, 2, torch.randn(7), torch.ones(4), torch.cat([masks["image"]] * 2), cap=cap)
    assert_no_hooks(model)
    assert all(type(m).__name__ != "_Skip" for m in a.decoder_layers(model))


def test_tile_reads_per_image_sequences():
    per_image = (torch.zeros(4, 3), torch.ones(4, 3))
    assert len(rp.tile(per_image, 3, n_images=2)) == 6
    per_layer = (torch.zeros(2, 5, 3), torch.ones(2, 5, 3), torch.ones(2, 5, 3))
    tiled = rp.tile(per_layer, 3, n_images=2)
    assert len(tiled) == 3 and tiled[0].shape == (6, 5, 3)
