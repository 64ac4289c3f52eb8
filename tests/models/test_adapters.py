"""The adapter table on a tiny instance of every family."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from steerkit.errors import UnknownModelFamilyError
from steerkit.models.adapters import Adapter, TextBackbone, adapter_for, register_adapter, registered_model_types
from steerkit.models.tiny import FAMILIES, tiny_causal_lm, tiny_image


@pytest.mark.parametrize("family", FAMILIES)
def test_adapter_resolves_family_facts(tiny, family):
    model, processor = tiny(family)
    a = adapter_for(model)
    layers = a.decoder_layers(model)
    assert isinstance(layers, nn.ModuleList) and len(layers) == 2 == a.num_layers(model)
    assert a.hidden_size(model) == 32
    # the decoder layers are the text layers: their first child is self-attention over hidden 32, never vision blocks
    assert all(type(l).__name__.endswith("DecoderLayer") for l in layers), [type(l).__name__ for l in layers]
    image_id = a.image_token_id(model)
    tok = a.tokenizer(processor)
    assert tok.convert_ids_to_tokens(image_id) in {"<image>", "<|image_pad|>", "<image_soft_token>"}
    specials = a.special_ids(processor, model)
    assert image_id not in specials and tok.pad_token_id in specials
    vision = a.vision_modules(model)
    assert vision and all(isinstance(m, nn.Module) for m in vision)
    vision_params = {id(p) for m in vision for p in m.parameters()}
    layer_params = {id(p) for p in layers.parameters()}
    assert not vision_params & layer_params
    targets = a.lora_target_modules(model)
    assert len(targets) == 2 * 7 and all(isinstance(model.get_submodule(t), nn.Linear) for t in targets)


@pytest.mark.parametrize("family", FAMILIES)
def test_build_inputs_places_image_tokens_and_pads_left(tiny, family):
    model, processor = tiny(family)
    a = adapter_for(model)
    inputs = a.build_inputs(processor, ["How many?", "Is the red circle to the left of the blue square?"],
                            images=[tiny_image(0), tiny_image(1)])
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    n_image = (ids == a.image_token_id(model)).sum(1)
    assert n_image[0] == n_image[1] > 0
    assert mask[0, 0] == 0 and mask[0, -1] == 1  # left padding on the shorter prompt
    assert "labels" not in inputs
    out = model(**inputs)
    assert out.logits.shape[:2] == ids.shape


@pytest.mark.parametrize("family", FAMILIES)
def test_text_backbone_matches_mllm_on_text(tiny, family):
    model, processor = tiny(family)
    a = adapter_for(model)
    inputs = a.build_inputs(processor, ["How many red circles?"])
    backbone = a.text_backbone(model)
    assert isinstance(backbone, TextBackbone) and adapter_for(backbone).decoder_layers(backbone) is a.decoder_layers(model)
    with torch.no_grad():
        full = model(**inputs, output_hidden_states=True)
        bb = backbone(**inputs, output_hidden_states=True)
    assert len(bb.hidden_states) == 3
    torch.testing.assert_close(bb.hidden_states[-1], full.hidden_states[-1], rtol=1e-4, atol=1e-5)


def test_text_only_lm_backbone_is_itself():
    lm, tok = tiny_causal_lm()
    a = adapter_for(lm)
    assert a.text_backbone(lm) is lm and a.image_token_id(lm) is None and not a.multimodal


def test_unknown_family_error_names_register_adapter():
    cfg = type("Cfg", (), {"model_type": "my_new_vlm"})()
    with pytest.raises(UnknownModelFamilyError, match="register_adapter"):
        adapter_for(cfg)


def test_register_adapter_adds_and_refuses_duplicates():
    base = adapter_for(type("Cfg", (), {"model_type": "llava"})())
    new = dataclasses.replace(base, name="llava_clone", model_types=("llava_clone_test",))
    register_adapter(new)
    assert "llava_clone_test" in registered_model_types()
    assert adapter_for(type("Cfg", (), {"model_type": "llava_clone_test"})()) is new
    with pytest.raises(ValueError, match="override=True"):
        register_adapter(new)
    assert isinstance(new, Adapter)


def test_moved_layer_path_gives_actionable_error():
    lm, _ = tiny_causal_lm()
    broken = dataclasses.replace(adapter_for(lm), layers=("nowhere.layers",))
    with pytest.raises(UnknownModelFamilyError, match="layers"):
        broken.decoder_layers(lm)
