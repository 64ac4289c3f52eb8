"""The SmolLM2 organism's recipe: sizes, stages, steps and learning rates (``fast()`` gives the smoke-test variant)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Stage:
    """One LoRA stage: ``steps`` optimiser steps, each on a batch drawn by ``mix``.

    Attributes:
        name: the stage's name (its checkpoint is ``stage_<name>.pt``; its curve points carry it).
        steps: optimiser steps.
        lr: peak learning rate (linear warm-up over ``warmup`` steps, then cosine down to ``min_lr_frac * lr``).
        mix: ``((kind, count), ...)``: how many training samples of each kind one step takes
            (kinds: :data:`steerkit.models.organism_smol.samples.KINDS`).
        eval_every: steps between held-out learning-curve points (and checkpoints).
        warmup: warm-up steps.
        min_lr_frac: where the cosine ends, as a fraction of ``lr``.
    """

    name: str
    steps: int
    lr: float
    mix: tuple[tuple[str, int], ...]
    eval_every: int = 100
    warmup: int = 15
    min_lr_frac: float = 0.0

    def kinds(self) -> tuple[str, ...]:
        """The sample kinds this stage trains on."""
        return tuple(k for k, n in self.mix if n)


# Text first: on text-only batches the pretrained LM learns the scene questions' binding within ~300 steps (the
# joint image+text schedule from scratch reached Count/Attribute but not Relation/Depth in 600 steps). Then image
# and text jointly; then reading and solving rendered additions, with replay of everything learnt before.
# Steps: a 500/600-step run's curve had every scene task above chance + 15 in both modes from joint step 300 and
# text additions at 0.95 by text step 250 (docs/organism-smol.md); 300/300/150 keeps the build near 90 min on 2 cores.
DEFAULT_STAGES: tuple[Stage, ...] = (
    Stage("text", steps=300, lr=5e-4, eval_every=150, mix=(("scene_text", 8), ("arith_text", 2))),
    Stage("joint", steps=300, lr=5e-4, eval_every=150,
          mix=(("scene_image", 4), ("scene_text", 3), ("arith_text", 1))),
    Stage("arith", steps=150, lr=8e-4, eval_every=75, warmup=10, min_lr_frac=0.1,
          mix=(("arith_instruction_image", 2), ("arith_image", 1), ("transcribe", 2), ("transcribe_solve", 1),
               ("arith_text", 2), ("scene_image", 2), ("scene_text", 2))),
)


@dataclass(frozen=True)
class SmolOrganismConfig:
    """What the build trains, with the defaults of the recipe.

    The vision side is a CLIP tower over the world's 64-pixel image with ``patch``-pixel patches (8 -> 64 image
    tokens, four per grid cell), trained from scratch; the language side is the unmodified SmolLM2-135M-Instruct
    plus a LoRA of rank ``rank`` on its decoder's linear layers.

    Attributes:
        seed: seeds every draw (data order, initialisation).
        patch: vision patch size in pixels.
        vision_hidden, vision_layers, vision_heads: the CLIP tower's width, depth and heads.
        ground_steps, ground_batch, ground_problems, ground_lr: stage 1, the tower + projector pulled to the "grid
            sentence" of ``ground_batch`` scenes and the character cells of ``ground_problems`` rendered additions
            per step.
        stages: the LoRA stages, in order (:class:`Stage`).
        rank: LoRA rank (alpha = 2 x rank, no dropout).
        n_train: training questions per task and training additions (train split only).
        eval_n: held-out scene items per task and mode at each learning-curve point.
        eval_arith_n: held-out additions per arithmetic mode at each learning-curve point.
        final_n: held-out items per task and mode (and additions per mode) for the final table (metrics.parquet).
        precision: "auto" (bf16 autocast where the device has fast bf16 kernels, :func:`steerkit.precision.fast_bf16`),
            "bf16" or "fp32"; what it resolved to is in ``build.json`` (``machine.bf16``).
    """

    seed: int = 0
    patch: int = 8
    vision_hidden: int = 192
    vision_layers: int = 4
    vision_heads: int = 4
    ground_steps: int = 500
    ground_batch: int = 16
    ground_problems: int = 16
    ground_lr: float = 2e-3
    stages: tuple[Stage, ...] = DEFAULT_STAGES
    rank: int = 16
    n_train: int = 2000
    eval_n: int = 30
    eval_arith_n: int = 40
    final_n: int = 200
    precision: str = "auto"

    def fast(self) -> SmolOrganismConfig:
        """A few steps of everything: checks that the build runs end to end (its model is untrained)."""
        stages = tuple(dataclasses.replace(s, steps=2, eval_every=2, warmup=1,
                                           mix=tuple((k, min(n, 1)) for k, n in s.mix)) for s in self.stages)
        return dataclasses.replace(self, vision_hidden=32, vision_layers=1, ground_steps=3, ground_batch=2,
                                   ground_problems=2, stages=stages, rank=2, n_train=8, eval_n=1, eval_arith_n=2,
                                   final_n=2)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``config.json``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SmolOrganismConfig:
        """The config a ``config.json`` describes (unknown keys are ignored: older builds load)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in raw.items() if k in names}
        if "stages" in kwargs:
            kwargs["stages"] = tuple(Stage(**{**s, "mix": tuple(tuple(m) for m in s["mix"])})
                                     for s in kwargs["stages"])
        return cls(**kwargs)

    @classmethod
    def read(cls, folder: str | Path) -> SmolOrganismConfig:
        """The config of the build in ``folder``."""
        return cls.from_dict(json.loads((Path(folder) / "config.json").read_text()))


__all__ = ["DEFAULT_STAGES", "SmolOrganismConfig", "Stage"]
