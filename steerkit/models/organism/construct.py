"""Model construction: the organism's text LM (LlamaForCausalLM), its processor (LlavaProcessor) and its MLLM
(LlavaForConditionalGeneration, CLIP tower 64 px / patch 16 -> 16 image tokens), whose language model and head
start as copies of the text LM's (module paths from the adapter table, :func:`steerkit.models.adapters.adapter_for`).
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from steerkit.models.adapters import adapter_for
from steerkit.models.organism import tokenizer as tk
from steerkit.models.organism import world as w
from steerkit.models.organism.config import OrganismConfig


def make_text_lm(tok: Any, cfg: OrganismConfig) -> Any:
    """A fresh LlamaForCausalLM of the organism's size (untied embeddings)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=cfg.hidden, intermediate_size=cfg.intermediate,
        num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads,
        max_position_embeddings=512, tie_word_embeddings=False, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    return LlamaForCausalLM(config)


def make_processor(tok: Any) -> Any:
    """LlavaProcessor with a PIL CLIP image processor (64 px, no torchvision) and the organism's chat template."""
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    ip = CLIPImageProcessorPil(size={"shortest_edge": w.IMAGE_SIZE},
                               crop_size={"height": w.IMAGE_SIZE, "width": w.IMAGE_SIZE})
    return LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=w.CELL,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1,
                          chat_template=tk.CHAT_TEMPLATE)


def make_mllm(text_lm: Any, tok: Any, cfg: OrganismConfig) -> Any:
    """LlavaForConditionalGeneration whose language model and head are copied from ``text_lm``."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    n_patches = (w.IMAGE_SIZE // w.CELL) ** 2
    vision = dict(model_type="clip_vision_model", hidden_size=cfg.vision_hidden, intermediate_size=4 * cfg.vision_hidden,
                  num_hidden_layers=cfg.vision_layers, num_attention_heads=4, image_size=w.IMAGE_SIZE,
                  patch_size=w.CELL, projection_dim=cfg.vision_hidden)
    config = LlavaConfig(text_config=text_lm.config.to_dict(), vision_config=vision,
                         image_token_index=tok.convert_tokens_to_ids(tk.IMAGE),
                         vision_feature_layer=-1,  # the default -2 would be the first layer of a 2-layer tower
                         vision_feature_select_strategy="default", image_seq_length=n_patches,
                         tie_word_embeddings=False)
    mllm = LlavaForConditionalGeneration(config)
    target, source = adapter_for(mllm), adapter_for(text_lm)
    target.text_model_module(mllm).load_state_dict(source.text_model_module(text_lm).state_dict())
    target.lm_head_module(mllm).load_state_dict(source.lm_head_module(text_lm).state_dict())
    return mllm


def image_seq_length(processor: Any) -> int:
    """Number of ``<image>`` tokens the processor expands one image into."""
    blank = Image.new("RGB", (w.IMAGE_SIZE, w.IMAGE_SIZE))
    ids = processor(text=[tk.IMAGE], images=[[blank]], return_tensors="pt")["input_ids"]
    return int((ids == processor.tokenizer.convert_tokens_to_ids(tk.IMAGE)).sum())


__all__ = ["image_seq_length", "make_mllm", "make_processor", "make_text_lm"]
