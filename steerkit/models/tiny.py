"""Tiny offline instances of every supported family: real transformers classes, random weights.

Each builder returns ``(model, processor)`` built without any hub access: the tokenizer is a byte-level BPE
trained in-process on a small corpus, wrapped in ``PreTrainedTokenizerFast`` with the family's special tokens,
and the processor is the family's real processor class around a PIL image processor (no torchvision needed).
Sizes follow the ones known to build, forward and generate on transformers 4.51-5.x (hidden 32, 2 layers).

Example:
    >>> from steerkit.models.tiny import tiny_model
    >>> model, processor = tiny_model("llava")
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from transformers import PreTrainedTokenizerFast

from steerkit.models.adapters import attach_processor
from steerkit.models.bpe import train_byte_bpe, wrap_fast

FAMILIES: tuple[str, ...] = (
    "paligemma",
    "idefics3",
    "smolvlm",
    "llava",
    "llava_next",
    "qwen2_vl",
    "qwen2_5_vl",
    "gemma3",
)

_CORPUS = [
    "Answer the multiple choice question by only responding the letter of the correct answer.",
    "How many red circles are in the image? Select from the following choices.",
    "(A) 1 (B) 2 (C) 3 (D) 4 (E) 5 (F) 6",
    "Is the cat to the left of the dog or to the right? Which object is closer to the camera?",
    "The blue square is above the green triangle, below the yellow star, in front of the box.",
    "Transcribe the text in the image, then solve it. <answer>42</answer> 0 1 2 3 4 5 6 7 8 9 + - * / =",
    "user assistant model system USER: ASSISTANT: User: Assistant:",
]

# Common text sizes (see module docstring); each family's text config gets these.
_TEXT = dict(
    hidden_size=32,
    intermediate_size=37,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    max_position_embeddings=512,
)


def _chat_template(user: str, image: str, end: str, assistant: str, bos: str = "") -> str:
    """A jinja chat template in the shape of the real family's: user turn, image placeholder, assistant turn."""
    return (
        bos + "{% for m in messages %}"
        "{% if m['role'] == 'user' %}" + user + "{% else %}" + assistant + "{% endif %}"
        "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
        "{% for c in m['content'] %}{% if c['type'] == 'image' %}" + image + "{% else %}{{ c['text'] }}{% endif %}"
        "{% endfor %}{% endif %}" + end + "{% endfor %}"
        "{% if add_generation_prompt %}" + assistant + "{% endif %}"
    )


def _tokenizer(
    specials: list[str],
    *,
    bos: str = "<bos>",
    eos: str = "<eos>",
    pad: str = "<pad>",
    unk: str | None = "<unk>",
    add_bos: bool = True,
    extra: dict[str, str] | None = None,
    chat_template: str | None = None,
) -> PreTrainedTokenizerFast:
    """Train a small byte-level BPE in-process and wrap it as a fast tokenizer with ``specials`` added."""
    base = [t for t in dict.fromkeys([pad, bos, eos, *([unk] if unk else [])])]
    tok = train_byte_bpe(_CORPUS * 4, vocab_size=400, special_tokens=base, unk=unk, prepend=bos if add_bos else None)
    fast = wrap_fast(tok, bos=bos, eos=eos, pad=pad, unk=unk, extra=extra)
    new = [s for s in specials if s not in fast.get_vocab()]
    if new:
        fast.add_special_tokens({"additional_special_tokens": new}, replace_extra_special_tokens=False)
    if chat_template:
        fast.chat_template = chat_template
    return fast


class _NoVideo:
    """Stands in for a video processor: SmolVLM's chat template reads these two attributes."""

    num_frames = 1
    fps = 1


def _without_video(processor_cls: type) -> type:
    """The family's processor class, accepting ``video_processor=None``.

    Video processors import torchvision, which has no build beside the local CPU torch; images never touch them.
    """

    class ImageOnly(processor_cls):  # type: ignore[misc,valid-type]
        def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
            if "video" in argument_name and (argument is None or isinstance(argument, _NoVideo)):
                return None
            return super().check_argument_for_proper_class(argument_name, argument)

    ImageOnly.__name__ = ImageOnly.__qualname__ = processor_cls.__name__
    return ImageOnly


def _vocab(tokenizer: PreTrainedTokenizerFast, margin: int = 0) -> int:
    return len(tokenizer) + margin


def _siglip_vision(**over: Any) -> dict[str, Any]:
    cfg = dict(
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=20,
        patch_size=5,
    )
    cfg.update(over)
    return cfg


def _build_paligemma() -> tuple[Any, Any]:
    from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor
    from transformers import SiglipImageProcessorPil

    tok = _tokenizer(["<image>"])
    ip = SiglipImageProcessorPil(size={"height": 20, "width": 20})
    ip.image_seq_length = 16
    proc = PaliGemmaProcessor(image_processor=ip, tokenizer=tok)
    cfg = PaliGemmaConfig(
        text_config=dict(model_type="gemma2", vocab_size=_vocab(proc.tokenizer), **_TEXT),
        vision_config=dict(model_type="siglip_vision_model", **_siglip_vision(), projection_dim=32),
        image_token_index=proc.tokenizer.convert_tokens_to_ids("<image>"),
        projection_dim=32,
        hidden_size=32,
        pad_token_id=proc.tokenizer.pad_token_id,
    )
    cfg.text_config.pad_token_id = proc.tokenizer.pad_token_id
    return PaliGemmaForConditionalGeneration(cfg), proc


def _idefics_tokenizer() -> PreTrainedTokenizerFast:
    rows = [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
    return _tokenizer(
        ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>", *rows],
        bos="<|begin_of_text|>",
        eos="<end_of_utterance>",
        add_bos=False,  # the chat template writes BOS itself
        chat_template=_chat_template("User:", "<image>", "<end_of_utterance>\n", "Assistant:", bos="<|begin_of_text|>"),
    )


def _build_idefics3(smol: bool = False) -> tuple[Any, Any]:
    import transformers as tf

    prefix = "SmolVLM" if smol else "Idefics3"
    Config = getattr(tf, f"{prefix}Config")
    Model = getattr(tf, f"{prefix}ForConditionalGeneration")
    Processor = _without_video(getattr(tf, f"{prefix}Processor"))
    ImageProcessor = getattr(tf, f"{prefix}ImageProcessorPil")
    tok = _idefics_tokenizer()
    # Images are not split (do_image_splitting False): one 16 px global image -> (16/4)^2 / 2^2 = 4 tokens.
    ip = ImageProcessor(
        do_image_splitting=False,
        size={"longest_edge": 16},
        max_image_size={"longest_edge": 16},
    )
    kwargs: dict[str, Any] = dict(image_processor=ip, tokenizer=tok, image_seq_len=4)
    if smol:

        kwargs["video_processor"] = _NoVideo()  # the real video processor needs torchvision
    proc = Processor(**kwargs, chat_template=tok.chat_template)
    cfg = Config(
        text_config=dict(model_type="llama", vocab_size=_vocab(proc.tokenizer), pad_token_id=tok.pad_token_id, **_TEXT),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                           image_size=16, patch_size=4),
        scale_factor=2,
        image_token_id=proc.tokenizer.convert_tokens_to_ids("<image>"),
        pad_token_id=tok.pad_token_id,
    )
    return Model(cfg), proc


def _build_llava(next_: bool = False) -> tuple[Any, Any]:
    from transformers import CLIPImageProcessorPil, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    tok = _tokenizer(["<image>"], chat_template=_chat_template("USER: ", "<image>\n", " ", "ASSISTANT:"))
    vision = dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                  num_attention_heads=4, image_size=8, patch_size=2, projection_dim=32)
    text = dict(model_type="llama", vocab_size=_vocab(tok, 1), pad_token_id=tok.pad_token_id, **_TEXT)
    image_id = tok.convert_tokens_to_ids("<image>")
    if next_:
        from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextImageProcessorPil
        from transformers import LlavaNextProcessor

        ip = LlavaNextImageProcessorPil(
            size={"shortest_edge": 8}, crop_size={"height": 8, "width": 8}, image_grid_pinpoints=[[8, 8]]
        )
        proc = LlavaNextProcessor(image_processor=ip, tokenizer=tok, patch_size=2,
                                  vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                  chat_template=tok.chat_template)
        cfg = LlavaNextConfig(text_config=text, vision_config=vision, image_token_index=image_id,
                              image_grid_pinpoints=[[8, 8]], vision_feature_layer=-1,
                              vision_feature_select_strategy="default", image_seq_length=16)
        return LlavaNextForConditionalGeneration(cfg), proc
    ip = CLIPImageProcessorPil(size={"shortest_edge": 8}, crop_size={"height": 8, "width": 8})
    proc = LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=2, vision_feature_select_strategy="default",
                          num_additional_image_tokens=1,
                          chat_template=tok.chat_template)
    cfg = LlavaConfig(text_config=text, vision_config=vision, image_token_index=image_id, vision_feature_layer=-1,
                      vision_feature_select_strategy="default", image_seq_length=16)
    return LlavaForConditionalGeneration(cfg), proc


def _build_qwen2_vl(v25: bool = False) -> tuple[Any, Any]:
    import transformers as tf

    prefix = "Qwen2_5_VL" if v25 else "Qwen2VL"
    Config = getattr(tf, f"{prefix}Config")
    Model = getattr(tf, f"{prefix}ForConditionalGeneration")
    Processor = _without_video(getattr(tf, f"{prefix}Processor"))
    specials = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    tok = _tokenizer(
        specials,
        bos="<|endoftext|>",
        eos="<|im_end|>",
        pad="<|endoftext|>",
        add_bos=False,
        chat_template=_chat_template(
            "<|im_start|>user\n", "<|vision_start|><|image_pad|><|vision_end|>", "<|im_end|>\n",
            "<|im_start|>assistant\n",
        ),
    )
    # 28x28 image, patch 14, merge 2 -> grid [1, 2, 2] -> 4 patches -> 1 merged token per 2x2: 1 image token
    # would be too few to test masks, so use 56x56 -> grid [1,4,4] -> 4 image tokens.
    ip = tf.Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=56 * 56, patch_size=14, merge_size=2,
                                     temporal_patch_size=2)
    proc = Processor(image_processor=ip, tokenizer=tok, video_processor=None,
                     chat_template=tok.chat_template)
    vision: dict[str, Any] = dict(depth=2, embed_dim=32, hidden_size=32, num_heads=4, mlp_ratio=1, patch_size=14,
                                  spatial_merge_size=2, temporal_patch_size=2, in_chans=3)
    if v25:
        vision.update(intermediate_size=37, out_hidden_size=32, window_size=56, fullatt_block_indexes=[1])
    text = dict(vocab_size=_vocab(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, rope_scaling={"type": "mrope", "mrope_section": [2, 1, 1]},
                pad_token_id=tok.pad_token_id, **_TEXT)
    cfg = Config(
        text_config=text,
        vision_config=vision,
        image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tok.convert_tokens_to_ids("<|vision_end|>"),
    )
    return Model(cfg), proc


def _build_gemma3() -> tuple[Any, Any]:
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessorPil, Gemma3Processor

    extra = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
    tok = _tokenizer(
        ["<start_of_turn>", "<end_of_turn>", *extra.values()],
        extra=extra,
        chat_template=_chat_template("<start_of_turn>user\n", "<start_of_image>", "<end_of_turn>\n",
                                     "<start_of_turn>model\n"),
    )
    ip = Gemma3ImageProcessorPil(size={"height": 20, "width": 20}, do_pan_and_scan=False)
    # 20 px / patch 5 = 16 patches, pooled to 4 tokens (mm_tokens_per_image=4).
    proc = Gemma3Processor(image_processor=ip, tokenizer=tok, image_seq_length=4, chat_template=tok.chat_template)
    cfg = Gemma3Config(
        text_config=dict(vocab_size=_vocab(tok), sliding_window=64, pad_token_id=tok.pad_token_id, **_TEXT),
        vision_config=_siglip_vision(),
        mm_tokens_per_image=4,
        boi_token_index=tok.convert_tokens_to_ids("<start_of_image>"),
        eoi_token_index=tok.convert_tokens_to_ids("<end_of_image>"),
        image_token_index=tok.convert_tokens_to_ids("<image_soft_token>"),
    )
    return Gemma3ForConditionalGeneration(cfg), proc


_BUILDERS: dict[str, Callable[[], tuple[Any, Any]]] = {
    "paligemma": _build_paligemma,
    "idefics3": _build_idefics3,
    "smolvlm": functools.partial(_build_idefics3, smol=True),
    "llava": _build_llava,
    "llava_next": functools.partial(_build_llava, next_=True),
    "qwen2_vl": _build_qwen2_vl,
    "qwen2_5_vl": functools.partial(_build_qwen2_vl, v25=True),
    "gemma3": _build_gemma3,
}


def tiny_model(family: str, seed: int = 0, dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """Build a tiny random instance of ``family`` (one of :data:`FAMILIES`) and its offline processor.

    The same ``seed`` gives the same weights. The model is in eval mode.

    Example:
        >>> model, processor = tiny_model("qwen2_vl", seed=1)
    """
    if family not in _BUILDERS:
        raise ValueError(f"unknown tiny family {family!r}; choose one of {list(FAMILIES)}")
    torch.manual_seed(seed)
    model, processor = _BUILDERS[family]()
    attach_processor(model, processor)
    return model.to(dtype).eval(), processor


def tiny_causal_lm(seed: int = 0) -> tuple[Any, PreTrainedTokenizerFast]:
    """A tiny random ``LlamaForCausalLM`` and its in-process tokenizer (text-only extraction tests).

    Example:
        >>> lm, tok = tiny_causal_lm()
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _tokenizer([])
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, **_TEXT)
    model = LlamaForCausalLM(cfg).eval()
    attach_processor(model, tok)
    return model, tok


def tiny_image(seed: int = 0, size: int = 32) -> Any:
    """A small random RGB PIL image (the processors resize it)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
