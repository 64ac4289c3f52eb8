"""The model organism: a tiny text LM and a LLaVA-class MLLM built from it, trained by steerkit on a procedural
world of coloured shapes and two-digit additions (CPU, minutes). It is the embedded default model of steerkit
(``load_model("steerkit/organism")``); trained weights ship inside the package, in ``steerkit/data/organism/``.

Example:
    >>> from steerkit.models import organism
    >>> model, processor = organism.load()            # LlavaForConditionalGeneration + LlavaProcessor
    >>> lm, tokenizer = organism.load_text_lm()       # LlamaForCausalLM + its tokenizer
    >>> items = organism.world_items("Relation", 50, seed=0, mode="image")
    >>> organism.build("/tmp/organism", seed=0)        # retrain from scratch (~minutes on 2 cores)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from steerkit.errors import ModelNotBuiltError
from steerkit.models.organism.world import (
    CONCEPTS,
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
from steerkit.models.shipped import ShippedModel

SHIPPED = ShippedModel(module="steerkit.models.organism", folder="organism", env_var="STEERKIT_ORGANISM_DIR")
ENV_VAR = SHIPPED.env_var
#: The shipped build: package data (steerkit/data/organism), found wherever steerkit is installed.
SHIPPED_DIR = SHIPPED.shipped_dir
default_dir = SHIPPED.default_dir  # $STEERKIT_ORGANISM_DIR if set, else SHIPPED_DIR
build_command = SHIPPED.build_command  # the shell command that trains the organism into a folder


def _ensure(path: str | Path | None, part: str, build_if_missing: bool = False) -> Path:
    """``path`` (default :func:`default_dir`) when its ``part`` is built; else build it there if asked, or raise
    :class:`ModelNotBuiltError` (training takes minutes: it never starts unasked)."""
    path = Path(path) if path is not None else default_dir()
    if not (path / part / "config.json").exists():
        if not build_if_missing:
            raise ModelNotBuiltError(
                f"no trained organism in {path} ({part}/config.json is missing). Build it with "
                f"`{build_command(path)}` (~10 min on 2 CPU cores), or call load(path, build_if_missing=True); "
                f"set ${ENV_VAR} to load one built elsewhere")
        from steerkit.models.organism.recipe import build

        build(path)
    return path


def load(path: str | Path | None = None, *, build_if_missing: bool = False) -> tuple[Any, Any]:
    """The organism MLLM and its processor: ``(LlavaForConditionalGeneration, LlavaProcessor)`` in eval mode.

    Loads from ``path`` (default: :func:`default_dir`). A missing build raises :class:`ModelNotBuiltError`
    naming the build command, unless ``build_if_missing=True`` (then it trains there first, minutes on a CPU).
    """
    from transformers import LlavaForConditionalGeneration, LlavaProcessor

    path = _ensure(path, "mllm", build_if_missing)
    model = LlavaForConditionalGeneration.from_pretrained(path / "mllm")
    processor = LlavaProcessor.from_pretrained(path / "mllm")
    return model.eval(), processor


def load_text_lm(path: str | Path | None = None, *, build_if_missing: bool = False) -> tuple[Any, Any]:
    """The organism's text-only LM and tokenizer: ``(LlamaForCausalLM, PreTrainedTokenizerFast)`` in eval mode.

    A missing build raises :class:`ModelNotBuiltError` unless ``build_if_missing=True`` (see :func:`load`).
    """
    from transformers import AutoTokenizer, LlamaForCausalLM

    path = _ensure(path, "text", build_if_missing)
    model = LlamaForCausalLM.from_pretrained(path / "text")
    tokenizer = AutoTokenizer.from_pretrained(path / "text")
    return model.eval(), tokenizer


def build(cache_dir: str | Path, seed: int = 0, fast: bool = False) -> Path:
    """Train the organism into ``cache_dir`` (see :func:`steerkit.models.organism.recipe.build`)."""
    from steerkit.models.organism.recipe import build as _build

    return _build(cache_dir, seed=seed, fast=fast)


def remeasure(path: str | Path | None = None, n: int | None = None) -> Any:
    """Evaluate the build in ``path`` on its held-out sets again and rewrite ``path/metrics.parquet``; returns the
    table (see :func:`steerkit.models.organism.evaluation.evaluate`). ``n`` defaults to the build's ``eval_n``;
    another ``n`` writes ``metrics_n<n>.parquet`` instead (:meth:`ShippedModel.metrics_file`)."""
    import json

    from steerkit.models.organism.evaluation import evaluate

    path = Path(path) if path is not None else default_dir()
    info = json.loads((path / "build.json").read_text()) if (path / "build.json").exists() else {}
    config = info.get("config", {})
    model, processor = load(path)
    text_lm, _ = load_text_lm(path)
    build_n = config.get("eval_n", 200)
    metrics = evaluate(model, processor, text_lm, n=n or build_n)
    metrics["seed"] = config.get("seed", 0)
    metrics.to_parquet(SHIPPED.metrics_file(path, n, build_n))
    return metrics


__all__ = [
    "CONCEPTS", "ENV_VAR", "TASKS", "TRAIN_FONT", "UNSEEN_FONTS", "ModelNotBuiltError",
    "arithmetic_problems", "build", "build_command", "concept_sentences", "default_dir", "load", "load_text_lm",
    "remeasure", "render_arithmetic", "render_scene", "world_items", "write_concept_corpora",
]
