"""Held-out evaluation of the SmolLM2 organism: letter accuracy per task and mode on ``split="test"`` items (never
trained on), with bootstrap CIs and the chance level, through steerkit's one scorer (:func:`steerkit.tasks.evaluate`);
and greedy accuracy on held-out two-digit additions (text, rendered in the training font, transcription), parsed by
the gap harness's parsers.

Example:
    >>> table = ability_table(model, processor, n=200)   # what the build writes to metrics.parquet
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from steerkit.models.organism import world as w
from steerkit.models.organism.evaluation import EVAL_SEED  # the same held-out sets as the small organism's table
from steerkit.models.organism_smol.loop import MODES
from steerkit.models.organism_smol.samples import TRANSCRIBE_PROMPT
from steerkit.precision import autocast
from steerkit.tasks.evaluate import evaluate
from steerkit.tasks.stats import bootstrap_ci


def held_out_items(n: int, seed: int = EVAL_SEED) -> dict[tuple[str, str], list[Any]]:
    """``{(task, mode): items}``: ``n`` test-split questions per task, each asked as an image and as text."""
    return {(t, m): w.world_items(t, n, seed=seed, mode=m, split="test") for t in w.TASKS for m in MODES}


def ability_table(model: Any, processor: Any, n: int = 200, seed: int = EVAL_SEED,
                  model_name: str = "steerkit/organism-smol") -> pd.DataFrame:
    """One row per (task, mode): accuracy, its 95% bootstrap CI (``lo``, ``hi``), n and chance."""
    rows = []
    for (task, mode), items in held_out_items(n, seed).items():
        df = evaluate(model, processor, items, progress=False)
        ci = bootstrap_ci(df["correct"].to_numpy(dtype=float), seed=0)
        rows.append(dict(model=model_name, task=task, mode=mode, accuracy=ci.value, lo=ci.lo, hi=ci.hi, n=len(df),
                         chance=float(np.mean([1 / len(it.choices) for it in items]))))
    return pd.DataFrame(rows)


def curve_point(model: Any, processor: Any, sets: dict[tuple[str, str], list[Any]]) -> dict[str, float]:
    """``{"mode/task": accuracy}`` on small held-out sets (a learning-curve point)."""
    return {f"{mode}/{task}": float(evaluate(model, processor, items, progress=False)["correct"].mean())
            for (task, mode), items in sets.items()}


ARITH_MODES = ("text", "image", "transcribe")  # text: asked in text; image: rendered, with the instruction


def arithmetic_problems(n: int, seed: int = EVAL_SEED) -> list[dict[str, Any]]:
    """``n`` held-out additions (``split="test"``: disjoint from every training addition by construction)."""
    return w.arithmetic_problems(n, seed=seed, split="test")


def arithmetic_correct(model: Any, processor: Any, problems: list[dict[str, Any]], mode: str,
                       font: str = w.TRAIN_FONT, batch_size: int = 25) -> tuple[list[bool], list[str]]:
    """Greedy answers to ``problems`` in ``mode`` (:data:`ARITH_MODES`; rendered in ``font``): whether each is right
    (the ``<answer>`` value, or the exact transcript) and the responses."""
    from steerkit.gap.parse import parse_number, parse_transcript
    from steerkit.models.generation import generate_text

    images = None if mode == "text" else [w.render_arithmetic(r["question"], font=font, seed=r["id"]) for r in problems]
    prompts = {"text": [r["text_prompt"] for r in problems], "image": [r["image_prompt"] for r in problems],
               "transcribe": [TRANSCRIBE_PROMPT] * len(problems)}[mode]
    stop = "</transcript>" if mode == "transcribe" else "</answer>"
    with torch.no_grad():
        responses = generate_text(model, processor, prompts, images, max_new_tokens=24 if mode == "transcribe" else 56,
                                  batch_size=batch_size, stop_strings=[stop])
    if mode == "transcribe":
        return [parse_transcript(x) == r["question"] for x, r in zip(responses, problems)], responses
    return [parse_number(x).value == r["answer"] for x, r in zip(responses, problems)], responses


def arithmetic_table(model: Any, processor: Any, n: int = 200, seed: int = EVAL_SEED,
                     model_name: str = "steerkit/organism-smol") -> pd.DataFrame:
    """The ability table's arithmetic rows (task ``"Arithmetic"``, chance 0): one per :data:`ARITH_MODES`, the
    rendered ones in the training font (the gap harness measures the other fonts and modes)."""
    problems = arithmetic_problems(n, seed)
    rows = []
    for mode in ARITH_MODES:
        correct, _ = arithmetic_correct(model, processor, problems, mode)
        ci = bootstrap_ci(np.asarray(correct, dtype=float), seed=0)
        rows.append(dict(model=model_name, task="Arithmetic", mode=mode, accuracy=ci.value, lo=ci.lo, hi=ci.hi,
                         n=len(problems), chance=0.0))
    return pd.DataFrame(rows)


def arithmetic_point(model: Any, processor: Any, problems: list[dict[str, Any]],
                     modes: tuple[str, ...] = ARITH_MODES, bf16: bool = False) -> dict[str, float]:
    """``{"arith/mode": accuracy}`` on a few held-out additions (a learning-curve point; bf16 autocast if ``bf16``)."""
    with autocast(next(model.parameters()).device, bf16):
        return {f"arith/{m}": float(np.mean(arithmetic_correct(model, processor, problems, m)[0])) for m in modes}
