"""The organism recipe's sizes, steps and learning rates (:class:`OrganismConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class OrganismConfig:
    """Sizes, steps and learning rates of the organism recipe (``fast()`` gives the smoke-test variant)."""

    seed: int = 0
    vocab_size: int = 512
    hidden: int = 128
    intermediate: int = 512
    layers: int = 4
    heads: int = 4
    vision_hidden: int = 128
    vision_layers: int = 2
    text_steps: int = 1000
    text_batch: int = 48
    text_lr: float = 3e-3
    warmup: int = 50
    mllm_steps: int = 800
    mllm_batch: int = 48
    tower_lr: float = 3e-3
    lm_lr: float = 3e-4
    replay: float = 0.2
    ground_weight: float = 1.0
    prompt_weight: float = 0.1
    # Per-token weight = length**-power. 0 (per-token sum) is what lets arithmetic learn: with per-example means
    # (power 1) each digit of a ~35-token trace weighs 1/35 of an answer letter and text-mode arithmetic stays
    # at 0.01-0.02; power 0 gives 0.61 (text LM alone, 1000 steps, docs/organism.md).
    length_power: float = 0.0
    mllm_length_power: float = 1.0  # the MLLM phase keeps per-example means (the grounding loss converges with it)
    arith_jitter: int = 1
    prefix_p: float = 0.5
    eval_n: int = 200
    mix_text: dict[str, float] = field(default_factory=lambda: {"qa": 0.6, "arith": 0.25, "plain": 0.15})
    mix_image: dict[str, float] = field(default_factory=lambda: {"qa": 0.7, "arith": 0.3})

    @staticmethod
    def fast(seed: int = 0) -> OrganismConfig:
        """A few steps of everything: exercises the whole path in seconds (not a useful model)."""
        return OrganismConfig(seed=seed, text_steps=4, text_batch=8, mllm_steps=3, mllm_batch=8, warmup=1,
                              eval_n=8)


__all__ = ["OrganismConfig"]
