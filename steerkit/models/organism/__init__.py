"""The model organism: a tiny text LM and a LLaVA-class MLLM built from it, trained by steerkit on a procedural
world of coloured shapes and two-digit additions (CPU, minutes). It is the embedded default model of steerkit
(``load_model("steerkit/organism")``); trained weights ship in ``data/organism/``.

Example:
    >>> from steerkit.models import organism
    >>> model, processor = organism.load()            # LlavaForConditionalGeneration + LlavaProcessor
    >>> lm, tokenizer = organism.load_text_lm()       # LlamaForCausalLM + its tokenizer
    >>> items = organism.world_items("Relation", 50, seed=0, mode="image")
    >>> organism.build("/tmp/organism", seed=0)        # retrain from scratch (~minutes on 2 cores)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from steerkit.models.organism.world import (
    CONCEPTS,
    FONTS,
    TASKS,
    TRAIN_FONT,
    UNSEEN_FONTS,
    arithmetic_problems,
    concept_sentences,
    render_arithmetic,
    render_scene,
    world_items,
    write_concept_corpora,
)

ENV_VAR = "STEERKIT_ORGANISM_DIR"
REPO_DIR = Path(__file__).resolve().parents[3] / "data" / "organism"


def default_dir() -> Path:
    """Where the organism is loaded from: ``$STEERKIT_ORGANISM_DIR`` if set, else ``data/organism`` in the repo."""
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else REPO_DIR


def _ensure(path: str | Path | None, part: str) -> Path:
    """``path`` (default :func:`default_dir`), building the organism there first if its ``part`` is missing."""
    path = Path(path) if path is not None else default_dir()
    if not (path / part / "config.json").exists():
        from steerkit.models.organism.train import build

        build(path)
    return path


def load(path: str | Path | None = None) -> tuple[Any, Any]:
    """The organism MLLM and its processor: ``(LlavaForConditionalGeneration, LlavaProcessor)`` in eval mode.

    Loads from ``path`` (default: :func:`default_dir`), building the organism there first when it is absent.
    """
    from transformers import LlavaForConditionalGeneration, LlavaProcessor

    path = _ensure(path, "mllm")
    model = LlavaForConditionalGeneration.from_pretrained(path / "mllm")
    processor = LlavaProcessor.from_pretrained(path / "mllm")
    return model.eval(), processor


def load_text_lm(path: str | Path | None = None) -> tuple[Any, Any]:
    """The organism's text-only LM and tokenizer: ``(LlamaForCausalLM, PreTrainedTokenizerFast)`` in eval mode."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    path = _ensure(path, "text")
    model = LlamaForCausalLM.from_pretrained(path / "text")
    tokenizer = AutoTokenizer.from_pretrained(path / "text")
    return model.eval(), tokenizer


def build(cache_dir: str | Path, seed: int = 0, fast: bool = False) -> Path:
    """Train the organism into ``cache_dir`` (see :func:`steerkit.models.organism.train.build`)."""
    from steerkit.models.organism.train import build as _build

    return _build(cache_dir, seed=seed, fast=fast)


__all__ = [
    "CONCEPTS", "ENV_VAR", "FONTS", "TASKS", "TRAIN_FONT", "UNSEEN_FONTS", "arithmetic_problems", "build",
    "concept_sentences", "default_dir", "load", "load_text_lm", "render_arithmetic", "render_scene", "world_items",
    "write_concept_corpora",
]
