"""load_model: the real from_pretrained path, exercised offline on saved tiny checkpoints."""

from __future__ import annotations

import pytest
import torch

from steerkit.errors import UnknownModelFamilyError
from steerkit.models.adapters import adapter_for
from steerkit.models.loading import load_model
from steerkit.models.tiny import tiny_image

# Qwen2-VL/SmolVLM processors are left out: AutoProcessor rebuilds their video processor, which needs torchvision.
SAVABLE = ["llava", "paligemma", "idefics3", "gemma3"]


@pytest.mark.parametrize("family", SAVABLE)
def test_load_model_from_saved_checkpoint_matches(tiny, family, tmp_path):
    model, processor = tiny(family)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded, loaded_proc = load_model(str(tmp_path), dtype=torch.float32)
    assert type(loaded) is type(model) and not loaded.training
    a = adapter_for(loaded)
    inputs = a.build_inputs(loaded_proc, ["How many?"], images=[tiny_image(0)])
    ref = adapter_for(model).build_inputs(processor, ["How many?"], images=[tiny_image(0)])
    assert torch.equal(inputs["input_ids"], ref["input_ids"])
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, model(**ref).logits)
    assert a.image_token_id(loaded) in inputs["input_ids"]


def test_load_model_text_only_causal_lm(tmp_path):
    from steerkit.models.tiny import tiny_causal_lm

    lm, tok = tiny_causal_lm()
    lm.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, loaded_tok = load_model(str(tmp_path), text_only=True)
    ids = loaded_tok(["the red circle"], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(loaded(**ids).logits, lm(**ids).logits)
    assert getattr(loaded, "_steerkit_special_ids")


def test_load_model_tiny_names():
    model, processor = load_model("tiny/qwen2_vl")
    assert adapter_for(model).name == "qwen2_vl"


def test_load_model_unknown_family_message(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    from steerkit.models.tiny import tiny_causal_lm

    _, tok = tiny_causal_lm()
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=8, n_layer=1, n_head=2)).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    with pytest.raises(UnknownModelFamilyError, match="register_adapter"):
        load_model(str(tmp_path), text_only=True)
