"""The SmolLM2 organism's recipe: sizes, steps and learning rates (``fast()`` gives the smoke-test variant)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


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
        ground_steps, ground_batch, ground_lr: stage 1, the tower + projector pulled to the "grid sentence".
        steps, image_batch, text_batch, lr, warmup: stage 2, joint LoRA on image- and text-mode questions.
        rank: LoRA rank (alpha = 2 x rank, no dropout).
        n_train: training questions per task (train split only).
        eval_every, eval_n: held-out learning-curve points (items per task and mode).
        final_n: held-out items per task and mode for the final table (metrics.parquet).
    """

    seed: int = 0
    patch: int = 8
    vision_hidden: int = 192
    vision_layers: int = 4
    vision_heads: int = 4
    ground_steps: int = 300
    ground_batch: int = 32
    ground_lr: float = 2e-3
    steps: int = 600
    image_batch: int = 4
    text_batch: int = 4
    lr: float = 5e-4
    warmup: int = 15
    rank: int = 16
    n_train: int = 2000
    eval_every: int = 100
    eval_n: int = 40
    final_n: int = 200

    def fast(self) -> SmolOrganismConfig:
        """A few steps of everything: checks that the build runs end to end (its model is untrained)."""
        return dataclasses.replace(self, vision_hidden=32, vision_layers=1, ground_steps=3, ground_batch=4,
                                   steps=3, image_batch=2, text_batch=2, rank=2, n_train=8, eval_every=3,
                                   eval_n=2, final_n=4)
