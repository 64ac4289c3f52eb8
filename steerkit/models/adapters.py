"""The adapter table: every architecture fact steerkit relies on, one row per model family.

Nothing else in steerkit branches on ``config.model_type``. A family is described by data (dotted module paths,
config field names, prompt style); the :class:`Adapter` methods read those facts. Paths are tried in order, so one
row serves transformers 5.x (``model.language_model.layers``) and 4.51 (``language_model.model.layers``) alike.

Example:
    >>> adapter = adapter_for(model)
    >>> layers = adapter.decoder_layers(model)
    >>> inputs = adapter.build_inputs(processor, ["How many cats?"], images=[img])

To support a new family, describe it and register it:
    >>> register_adapter(Adapter(name="myvlm", model_types=("myvlm",), layers=("model.text.layers",), ...))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from steerkit.errors import SteeringError, UnknownModelFamilyError

# Linear layers of a decoder block across the families we support (LoRA targets).
_DECODER_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _resolve(root: nn.Module, path: str) -> Any:
    obj: Any = root
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _first(root: nn.Module, paths: Sequence[str]) -> tuple[str, Any] | None:
    for path in paths:
        try:
            return path, _resolve(root, path)
        except AttributeError:
            continue
    return None


@dataclass(frozen=True)
class Adapter:
    """Facts about one model family, and the operations steerkit derives from them.

    Attributes:
        name: short family name ("llava", "qwen2_vl", ...).
        model_types: values of ``config.model_type`` this row serves.
        layers: dotted paths (tried in order) from the top-level model to the text decoder ``ModuleList``.
        text_model: dotted paths to the text base model (embeddings + layers + final norm).
        lm_head: dotted paths to the output projection.
        vision: dotted paths to the vision tower(s); empty for text-only LMs.
        projector: dotted paths to the vision->text projector/connector.
        image_token_fields: config fields that may hold the image token id, tried in order.
        special_token_fields: config fields with further ids that are never "text" (image delimiters...).
        prompt_style: "chat" (processor chat template with an image entry) or "raw" (the processor places image
            tokens itself, as PaliGemma's does).
        drop_input_keys: processor outputs not meant for inference (PaliGemma returns ``labels``).
        multimodal: False for text-only causal LMs.
    """

    name: str
    model_types: tuple[str, ...]
    layers: tuple[str, ...]
    text_model: tuple[str, ...]
    lm_head: tuple[str, ...] = ("lm_head",)
    vision: tuple[str, ...] = ()
    projector: tuple[str, ...] = ()
    image_token_fields: tuple[str, ...] = ("image_token_id", "image_token_index")
    special_token_fields: tuple[str, ...] = ()
    prompt_style: str = "chat"
    drop_input_keys: tuple[str, ...] = ("labels",)
    multimodal: bool = True
    raw_text_format: str = "{prompt}"
    raw_image_format: str = "{prompt}"
    lora_linears: tuple[str, ...] = _DECODER_LINEARS
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    # ----------------------------------------------------------------------------------------- modules
    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        """The text decoder layers of ``model`` (layer l's output is ``hidden_states[l + 1]``)."""
        found = _first(model, self.layers)
        if found is None:
            raise UnknownModelFamilyError(
                f"{type(model).__name__}: none of the layer paths {list(self.layers)} of adapter {self.name!r} "
                "exist; this transformers version moved them. Add the new path to the adapter's `layers` "
                "(steerkit/models/adapters.py) or register_adapter(dataclasses.replace(adapter, layers=...))."
            )
        return found[1]

    def text_model_module(self, model: nn.Module) -> nn.Module:
        """The text base model (embeddings, decoder layers, final norm) inside ``model``."""
        found = _first(model, self.text_model)
        if found is None:
            raise UnknownModelFamilyError(f"adapter {self.name!r}: no text model at {list(self.text_model)}")
        return found[1]

    def lm_head_module(self, model: nn.Module) -> nn.Module:
        """The output projection of ``model``."""
        found = _first(model, self.lm_head)
        if found is None:
            raise UnknownModelFamilyError(f"adapter {self.name!r}: no lm_head at {list(self.lm_head)}")
        return found[1]

    def vision_modules(self, model: nn.Module) -> list[nn.Module]:
        """Vision tower followed by the projector (each once); empty for text-only LMs."""
        unique = {id(m): m for m in self.vision_tower_modules(model) + self.projector_modules(model)}
        return list(unique.values())

    def vision_tower_modules(self, model: nn.Module) -> list[nn.Module]:
        """The vision encoder (first of the ``vision`` paths that exists), or [] for text-only models."""
        found = _first(model, self.vision)
        return [found[1]] if found else []

    def projector_modules(self, model: nn.Module) -> list[nn.Module]:
        """The vision->text projector/connector, or []."""
        found = _first(model, self.projector)
        return [found[1]] if found else []

    def num_layers(self, model: nn.Module) -> int:
        """Number of text decoder layers."""
        return len(self.decoder_layers(model))

    def hidden_size(self, model: nn.Module) -> int:
        """Width of the text residual stream."""
        return int(text_config(model.config).hidden_size)

    def lora_target_modules(self, model: nn.Module) -> list[str]:
        """Fully qualified names of the language model's linear layers (LoRA targets; vision excluded)."""
        prefix = _first(model, self.layers)
        if prefix is None:
            self.decoder_layers(model)  # raises the explanatory error
        layer_path = prefix[0]  # type: ignore[index]
        names = []
        for name, module in model.named_modules():
            if name.startswith(layer_path + ".") and isinstance(module, nn.Linear):
                if name.rsplit(".", 1)[-1] in self.lora_linears:
                    names.append(name)
        return names

    # ----------------------------------------------------------------------------------------- tokens
    def image_token_id(self, model_or_config: Any) -> int | None:
        """The id of the image placeholder token, or None for text-only models."""
        if not self.multimodal:
            return None
        config = getattr(model_or_config, "config", model_or_config)
        for name in self.image_token_fields:
            value = getattr(config, name, None)
            if value is not None:
                return int(value)
        raise SteeringError(
            f"adapter {self.name!r}: the config has none of {list(self.image_token_fields)}; set the image token "
            "id on the config or extend `image_token_fields` for this family"
        )

    def special_ids(self, tokenizer_or_processor: Any = None, model: nn.Module | None = None) -> set[int]:
        """Token ids that are never steered as "text": BOS/EOS/PAD, added special tokens, image delimiters.

        The image token itself is excluded from this set (it has its own scope). With a tokenizer the set is
        complete; without one it falls back to what the config records (and to ids attached by
        :func:`attach_processor`).
        """
        ids: set[int] = set()
        if model is not None:
            ids |= set(getattr(model, "_steerkit_special_ids", ()))
            cfg = model.config
            tcfg = text_config(cfg)
            for c in (cfg, tcfg):
                for name in ("bos_token_id", "eos_token_id", "pad_token_id", *self.special_token_fields):
                    value = getattr(c, name, None)
                    if isinstance(value, int):
                        ids.add(value)
                    elif isinstance(value, (list, tuple)):
                        ids |= {int(v) for v in value}
        if tokenizer_or_processor is not None:
            tok = self.tokenizer(tokenizer_or_processor)
            ids |= set(tok.all_special_ids)
            ids |= {i for i, t in tok.added_tokens_decoder.items() if t.special}
        if model is not None and self.multimodal:
            ids.discard(self.image_token_id(model))
        return ids

    @staticmethod
    def tokenizer(tokenizer_or_processor: Any) -> Any:
        """The tokenizer inside a processor (or the tokenizer itself)."""
        return getattr(tokenizer_or_processor, "tokenizer", tokenizer_or_processor)

    # ----------------------------------------------------------------------------------------- inputs
    def format_prompt(self, processor: Any, prompt: str, with_image: bool) -> str:
        """The prompt string in the family's format (chat template with an image entry, or raw)."""
        if self.prompt_style == "raw" or not getattr(processor, "chat_template", None):
            return self.raw_image_format.format(prompt=prompt) if with_image else prompt
        content: list[dict[str, str]] = [{"type": "image"}] if with_image else []
        content.append({"type": "text", "text": prompt})
        return processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)

    def build_inputs(
        self,
        processor: Any,
        prompts: Sequence[str],
        images: Sequence[Any] | None = None,
        *,
        device: torch.device | str | None = None,
    ) -> Any:
        """Model inputs for a batch of (image, prompt) pairs, left-padded, ready for forward and ``generate``.

        ``images`` is None (text-only) or one PIL image per prompt. Prompts are formatted with the family's
        chat template (or passed raw, for families whose processor places the image tokens itself).
        """
        prompts = list(prompts)
        if images is not None and len(images) != len(prompts):
            raise ValueError(f"got {len(images)} images for {len(prompts)} prompts; pass one image per prompt")
        with_image = images is not None and self.multimodal
        texts = [self.format_prompt(processor, p, with_image) for p in prompts]
        tok = self.tokenizer(processor)
        tok.padding_side = "left"
        if with_image:
            inputs = processor(text=texts, images=[[im] for im in images], return_tensors="pt", padding=True)
        elif self.prompt_style == "raw" or processor is tok:
            # Text-only through the tokenizer, laid out as the processor would lay out the text part.
            texts = [self.raw_text_format.format(bos=tok.bos_token or "", prompt=t) for t in texts]
            inputs = tok(texts, return_tensors="pt", padding=True, add_special_tokens=processor is tok)
        else:
            # The processor itself, so text-only and image inputs get the same special-token treatment.
            inputs = processor(text=texts, return_tensors="pt", padding=True)
        for key in self.drop_input_keys:
            inputs.pop(key, None)
        if not with_image:
            inputs.pop("token_type_ids", None)
        return inputs.to(device) if device is not None else inputs

    # ----------------------------------------------------------------------------------------- backbone
    def text_backbone(self, model: nn.Module) -> nn.Module:
        """The text decoder as a standalone causal LM that shares ``model``'s weights.

        For a text-only LM this is ``model`` itself. For an MLLM it is a :class:`TextBackbone` that calls the
        language model and ``lm_head`` directly (no vision path), and that :func:`steerkit.steer` accepts.
        """
        if not self.multimodal:
            return model
        return TextBackbone(self.text_model_module(model), self.lm_head_module(model), text_config(model.config),
                            special_ids=getattr(model, "_steerkit_special_ids", ()))


def text_config(config: Any) -> Any:
    """The text sub-config of a multimodal config (the config itself for text-only models)."""
    getter = getattr(config, "get_text_config", None)
    return getter() if callable(getter) else getattr(config, "text_config", config)


class TextBackbone(nn.Module):
    """An MLLM's language model + ``lm_head`` behaving like an HF causal LM over text tokens.

    Example:
        >>> lm = adapter_for(mllm).text_backbone(mllm)
        >>> out = lm(input_ids, attention_mask=mask, output_hidden_states=True)
    """

    def __init__(self, text_model: nn.Module, lm_head: nn.Module, config: Any, special_ids: Iterable[int] = ()):
        super().__init__()
        self.model = text_model
        self.lm_head = lm_head
        self.config = config
        self._steerkit_special_ids = frozenset(special_ids)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        **kwargs: Any,
    ) -> Any:
        from transformers.modeling_outputs import CausalLMOutputWithPast

        # Text-only forward must not see PaliGemma's prefix ids or Qwen2-VL's modality ids.
        kwargs.pop("token_type_ids", None)
        kwargs.pop("mm_token_type_ids", None)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask,
                         output_hidden_states=output_hidden_states, **kwargs)
        logits = self.lm_head(out.last_hidden_state)
        cap = getattr(self.config, "final_logit_softcapping", None)
        if cap:  # Gemma2-style soft capping lives in the *ForCausalLM head, not in the base model
            logits = torch.tanh(logits / cap) * cap
        return CausalLMOutputWithPast(logits=logits, past_key_values=getattr(out, "past_key_values", None),
                                      hidden_states=out.hidden_states)


# --------------------------------------------------------------------------------------------- the table
_V5_LM = ("model.language_model.layers", "language_model.model.layers")
_V5_TEXT = ("model.language_model", "language_model.model")
_V5_HEAD = ("lm_head", "language_model.lm_head")

_TABLE: list[Adapter] = [
    Adapter(
        name="paligemma",
        model_types=("paligemma",),
        layers=_V5_LM,
        text_model=_V5_TEXT,
        lm_head=_V5_HEAD,
        vision=("model.vision_tower", "vision_tower"),
        projector=("model.multi_modal_projector", "multi_modal_projector"),
        prompt_style="raw",  # PaliGemmaProcessor prepends image tokens + BOS and appends "\n"
        raw_text_format="{bos}{prompt}\n",
        raw_image_format="<image>{prompt}",  # one marker; the processor expands it to image_seq_length tokens
        notes="PaliGemma / PaliGemma2; image token id in config.image_token_index before 4.52",
    ),
    Adapter(
        name="llava",
        model_types=("llava", "llava_next", "llava_onevision", "vipllava"),
        layers=_V5_LM,
        text_model=_V5_TEXT,
        lm_head=_V5_HEAD,
        vision=("model.vision_tower", "vision_tower"),
        projector=("model.multi_modal_projector", "multi_modal_projector"),
    ),
    Adapter(
        name="gemma3",
        model_types=("gemma3",),
        layers=_V5_LM,
        text_model=_V5_TEXT,
        lm_head=_V5_HEAD,
        vision=("model.vision_tower", "vision_tower"),
        projector=("model.multi_modal_projector", "multi_modal_projector"),
        special_token_fields=("boi_token_index", "eoi_token_index"),
    ),
    Adapter(
        name="qwen2_vl",
        model_types=("qwen2_vl", "qwen2_5_vl"),
        layers=("model.language_model.layers", "model.layers"),
        text_model=("model.language_model", "model"),
        vision=("model.visual", "visual"),
        projector=("model.visual.merger", "visual.merger"),
        special_token_fields=("vision_start_token_id", "vision_end_token_id", "video_token_id"),
        notes="the vision blocks are NOT the layers; projector (merger) lives inside the visual module",
    ),
    Adapter(
        name="idefics3",
        model_types=("idefics3", "smolvlm"),
        layers=("model.text_model.layers",),
        text_model=("model.text_model",),
        vision=("model.vision_model",),
        projector=("model.connector",),
    ),
    Adapter(
        name="causal_lm",
        model_types=("llama", "mistral", "gemma", "gemma2", "gemma3_text", "qwen2", "qwen3", "phi3", "olmo2",
                     "smollm3", "gpt_neox"),
        layers=("model.layers", "gpt_neox.layers"),
        text_model=("model", "gpt_neox"),
        lm_head=("lm_head", "embed_out"),
        multimodal=False,
        notes="text-only causal LMs: vector extraction sources",
    ),
]


def _index() -> dict[str, Adapter]:
    return {t: a for a in _TABLE for t in a.model_types}


def register_adapter(adapter: Adapter, *, override: bool = False) -> Adapter:
    """Add a family to the table (or replace one with ``override=True``).

    Example:
        >>> base = adapter_for(llava_model)
        >>> register_adapter(dataclasses.replace(base, name="mylava", model_types=("mylava",)))
    """
    taken = [t for t in adapter.model_types if t in _index()]
    if taken and not override:
        raise ValueError(f"model types {taken} already have an adapter; pass override=True to replace it")
    for old in list(_TABLE):
        remaining = tuple(t for t in old.model_types if t not in adapter.model_types)
        if remaining != old.model_types:
            _TABLE.remove(old)
            if remaining:
                _TABLE.append(dataclasses.replace(old, model_types=remaining))
    _TABLE.append(adapter)
    return adapter


def registered_model_types() -> list[str]:
    """Every ``config.model_type`` with an adapter."""
    return sorted(_index())


def adapter_for(model_or_config: Any) -> Adapter:
    """The adapter of a model (or config), chosen by ``config.model_type``.

    A :class:`TextBackbone` gets the text-only row. Unknown families raise :class:`UnknownModelFamilyError`
    whose message says how to register one.
    """
    if isinstance(model_or_config, TextBackbone):
        return _index()["llama"]
    config = getattr(model_or_config, "config", model_or_config)
    model_type = getattr(config, "model_type", None)
    found = _index().get(model_type)  # type: ignore[arg-type]
    if found is None:
        raise UnknownModelFamilyError(
            f"no steerkit adapter for model_type={model_type!r} ({type(model_or_config).__name__}). Known: "
            f"{registered_model_types()}. Describe the family with steerkit.Adapter(name=..., model_types="
            f"({model_type!r},), layers=('<dotted path to decoder ModuleList>',), text_model=(...), ...) and call "
            "steerkit.register_adapter(adapter); see docs/architecture.md."
        )
    return found


def attach_processor(model: nn.Module, processor: Any) -> None:
    """Record the processor's special token ids on ``model`` so that masks need no processor later."""
    adapter = adapter_for(model)
    model._steerkit_special_ids = frozenset(adapter.special_ids(processor, model))  # type: ignore[assignment]
