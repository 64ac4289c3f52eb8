"""The SmolLM2 organism's :class:`~steerkit.models.profiles.ModelProfile`.

It answers the same world's questions as the small organism (same items, same held-out split) and the same
two-digit additions (re-sourced ``"organism-smol"``, so the gap harness asks them in this profile's style); its
text-only source of vectors is the unmodified SmolLM2. Unlike the small organism it was trained to transcribe a
rendered addition, so its style has the OCR prompts and all five gap modes run on it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from steerkit.models.organism import world
from steerkit.models.organism.profile import demo, text_problems
from steerkit.models.organism.profile import prompt_style as _small_style
from steerkit.models.profiles import ModelProfile

NAME = "steerkit/organism-smol"
TEXT_NAME = "steerkit/organism-smol-text"
SOURCE = "organism-smol"


def _load(path: Any = None) -> tuple[Any, Any]:
    from steerkit.models.organism_smol import load

    return load(path)


def _load_text(path: Any = None) -> tuple[Any, Any]:
    from steerkit.models.organism_smol import load_text_lm

    return load_text_lm(path)


def _evaluate(path: Any = None, n: int | None = None) -> Any:
    """Re-measure a build's ability table (scene tasks and additions) on held-out items; rewrites ``metrics.parquet``
    (``n`` defaults to the build's ``final_n``; another ``n`` writes ``metrics_n<n>.parquet`` instead)."""
    from pathlib import Path

    import pandas as pd

    from steerkit.models.organism_smol import SHIPPED, SmolOrganismConfig, default_dir, load
    from steerkit.models.organism_smol.evaluation import ability_table, arithmetic_table

    folder = Path(path) if path is not None else default_dir()
    config = SmolOrganismConfig.read(folder)
    build_n = config.final_n
    model, processor = load(folder)
    size = n or build_n
    table = pd.concat([ability_table(model, processor, n=size), arithmetic_table(model, processor, n=size)],
                      ignore_index=True)
    table["seed"] = config.seed
    table.to_parquet(SHIPPED.metrics_file(folder, n, build_n))
    return table


def prompt_style() -> Any:
    """The small organism's prompts and one-character-per-cell renderer (same world, same 64-pixel image) plus the
    transcription prompts this model was trained on (:mod:`steerkit.models.organism_smol.samples`)."""
    from steerkit.models.organism_smol.samples import TRANSCRIBE_PROMPT, TRANSCRIBE_SOLVE_PROMPT

    return dataclasses.replace(_small_style(), name=SOURCE, ocr_1p_prompt=TRANSCRIBE_SOLVE_PROMPT,
                               ocr_2p_transcribe_prompt=TRANSCRIBE_PROMPT)


PROFILE = ModelProfile(name=NAME, text_name=TEXT_NAME, source=SOURCE, load=_load, load_text=_load_text,
                       tasks=world.TASKS, items=world.world_items, demo=demo, evaluate=_evaluate,
                       problems=functools.partial(text_problems, source=SOURCE), prompt_style=prompt_style)
