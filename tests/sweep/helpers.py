"""Small items and random vectors for sweep tests (tiny random models: answers are arbitrary but deterministic)."""

from __future__ import annotations

import torch

from steerkit.models.adapters import adapter_for
from steerkit.models.tiny import tiny_image
from steerkit.tasks.schema import Item


def make_items(n: int = 6, with_images: bool = True) -> list[Item]:
    """n multiple-choice items; the first two thirds are "train", the rest "test"; two tasks alternate."""
    out = []
    for i in range(n):
        k = 2 + i % 3
        choices = [str(i + j) for j in range(k)]
        out.append(Item(id=f"it{i}", image=tiny_image(i) if with_images else None,
                        prompt=f"How many circles are there? " + " ".join(f"({'ABCD'[j]}) {c}" for j, c in enumerate(choices)),
                        choices=choices, answer="ABCD"[i % k], task=("Count", "Relation")[i % 2],
                        split="train" if i < 2 * n // 3 else "test"))
    return out


def make_vectors(model, concepts=("counting",), methods=("meanshift",), layers=(0, 1), scale=4.0, seed=0):
    """{(method, concept): {layer: random vector}} of the model's width."""
    d = adapter_for(model).hidden_size(model)
    g = torch.Generator().manual_seed(seed)
    return {(m, c): {l: torch.randn(d, generator=g) * scale for l in layers} for m in methods for c in concepts}
