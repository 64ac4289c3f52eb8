"""The SmolLM2 organism's :class:`~steerkit.models.profiles.ModelProfile`.

It answers the same world's questions as the small organism (same items, same held-out split); its text-only
source of vectors is the unmodified SmolLM2. It has no arithmetic problems yet (the recipe trains scene questions
only), so the gap harness uses the generic word problems with it.
"""

from __future__ import annotations

from typing import Any

from steerkit.models.organism import world
from steerkit.models.organism.profile import demo
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
    """Re-measure a build's ability table on held-out items and rewrite its ``metrics.parquet``."""
    from pathlib import Path

    from steerkit.models.organism_smol import default_dir, load
    from steerkit.models.organism_smol.evaluation import ability_table

    folder = Path(path) if path is not None else default_dir()
    model, processor = load(folder)
    table = ability_table(model, processor, n=n or 200)
    table.to_parquet(folder / "metrics.parquet")
    return table


PROFILE = ModelProfile(name=NAME, text_name=TEXT_NAME, source=SOURCE, load=_load, load_text=_load_text,
                       tasks=world.TASKS, items=world.world_items, demo=demo, evaluate=_evaluate)
