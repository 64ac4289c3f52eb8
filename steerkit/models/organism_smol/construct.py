"""Model construction: a LlavaForConditionalGeneration whose language model is SmolLM2-135M-Instruct, with a CLIP
tower trained by steerkit, its processor, and the LoRA on the language model (module paths and LoRA targets come
from the adapter table, :func:`steerkit.models.adapters.adapter_for`).

The base LM is never modified: the one new token, ``<image>``, gets an embedding row computed from the base (the
mean of its rows; the row is replaced by image features in every forward anyway), so only the tower, the projector
and the LoRA are trained and shipped.
"""

from __future__ import annotations

from typing import Any

import torch

from steerkit.models.adapters import adapter_for
from steerkit.models.organism import world as w
from steerkit.models.organism_smol.config import SmolOrganismConfig

IMAGE = "<image>"
# SmolLM2's ChatML with an image entry: the user turn holds "<image>\n" before the text when there is an image.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}{% else %}{% for c in message['content'] %}{% if c['type'] == 'image' %}" + IMAGE + "\n"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def n_image_tokens(cfg: SmolOrganismConfig) -> int:
    """Image tokens per image: one per ``patch`` x ``patch`` patch of the 64-pixel world image."""
    return (w.IMAGE_SIZE // cfg.patch) ** 2


def make_processor(tokenizer: Any, cfg: SmolOrganismConfig) -> Any:
    """LlavaProcessor: a PIL CLIP image processor at the world's 64 px, SmolLM2's tokenizer with ``<image>`` added
    (as a special token; added in place if missing) and the ChatML template with an image entry."""
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    if IMAGE not in tokenizer.get_vocab():
        tokenizer.add_tokens([IMAGE], special_tokens=True)
    ip = CLIPImageProcessorPil(size={"shortest_edge": w.IMAGE_SIZE},
                               crop_size={"height": w.IMAGE_SIZE, "width": w.IMAGE_SIZE})
    return LlavaProcessor(image_processor=ip, tokenizer=tokenizer, patch_size=cfg.patch, image_token=IMAGE,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1,
                          chat_template=CHAT_TEMPLATE)


def make_mllm(lm: Any, processor: Any, cfg: SmolOrganismConfig) -> Any:
    """The MLLM around ``lm`` (SmolLM2, weights copied, tied head), with a freshly initialised tower and projector
    (seeded by ``cfg.seed``) and the ``<image>`` row appended to the embeddings."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    tok = processor.tokenizer
    vision = dict(model_type="clip_vision_model", hidden_size=cfg.vision_hidden, intermediate_size=4 * cfg.vision_hidden,
                  num_hidden_layers=cfg.vision_layers, num_attention_heads=cfg.vision_heads,
                  image_size=w.IMAGE_SIZE, patch_size=cfg.patch, projection_dim=cfg.vision_hidden)
    config = LlavaConfig(text_config=lm.config.to_dict(), vision_config=vision,
                         image_token_index=tok.convert_tokens_to_ids(IMAGE),
                         vision_feature_layer=-1,  # the last layer: the default -2 wastes a layer of a small tower
                         vision_feature_select_strategy="default", image_seq_length=n_image_tokens(cfg),
                         tie_word_embeddings=True)
    torch.manual_seed(cfg.seed)
    mllm = LlavaForConditionalGeneration(config)
    adapter = adapter_for(mllm)
    adapter.text_model_module(mllm).load_state_dict(adapter_for(lm).text_model_module(lm).state_dict())
    base_rows = lm.get_input_embeddings().weight.detach()
    mllm.resize_token_embeddings(len(tok), mean_resizing=False)
    embed = mllm.get_input_embeddings()
    with torch.no_grad():
        embed.weight[len(base_rows):] = base_rows.mean(0)
    retie(mllm)
    return mllm.eval()


def lora_config(model: Any, cfg: SmolOrganismConfig) -> Any:
    """The peft LoRA of the recipe on the language model's linear layers (names from the adapter table)."""
    from peft import LoraConfig

    return LoraConfig(r=cfg.rank, lora_alpha=2 * cfg.rank, lora_dropout=0.0,
                      target_modules=adapter_for(model).lora_target_modules(model))


def vision_state(model: Any) -> dict[str, torch.Tensor]:
    """The trained vision side (tower + projector) as one flat state dict, keyed by module path."""
    adapter = adapter_for(model)
    named = dict(model.named_modules())
    out = {}
    for module in adapter.vision_modules(model):
        prefix = next(name for name, m in named.items() if m is module)
        out.update({f"{prefix}.{k}": v.detach().contiguous() for k, v in module.state_dict().items()})
    return out


def retie(model: Any) -> None:
    """Point the LM head at the input embeddings again (tied, as in SmolLM2) after weights were swapped in."""
    adapter_for(model).lm_head_module(model).weight = model.get_input_embeddings().weight
