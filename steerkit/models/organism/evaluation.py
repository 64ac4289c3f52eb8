"""Evaluation of the organism on held-out sets (``split="test"``, never trained on): letter accuracy per task and
mode, chain-of-thought arithmetic per font, and the text-image arithmetic gap (the table behind
``metrics.parquet``).

Example:
    >>> metrics = evaluate(mllm, processor, text_lm, n=200)   # what the build writes to metrics.parquet
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from steerkit.models.adapters import adapter_for
from steerkit.models.organism import tokenizer as tk
from steerkit.models.organism import world as w
from steerkit.tasks.schema import Item
from steerkit.tasks.scoring import LetterScorer
from steerkit.tasks.stats import bootstrap_ci, paired_bootstrap_diff

ANSWER_RE = re.compile(r"<answer>\s*([0-9]+)\s*</answer>")
EVAL_SEED = 12345  # seed of the held-out evaluation sets (split="test") behind metrics.parquet


@torch.no_grad()
def letter_scores(model: Any, processor: Any, items: Sequence[Item], batch_size: int = 64) -> pd.DataFrame:
    """Letter scoring with steerkit's one scorer (:class:`steerkit.tasks.scoring.LetterScorer`) at the answer position.

    Works for the MLLM (processor; items with or without images, inputs built by steerkit's adapter) and for the
    text LM (tokenizer; text items only). Returns one row per item: id, task, mode, answer, pred, correct.
    """
    adapter = adapter_for(model)
    tok = adapter.tokenizer(processor)
    scorer = LetterScorer.for_items(tok, items)
    rows = []
    for start in range(0, len(items), batch_size):
        chunk = list(items[start:start + batch_size])
        with_image = chunk[0].image is not None
        if any((it.image is not None) != with_image for it in chunk):
            raise ValueError("a batch mixes image and text items; score the two modes separately")
        if processor is tok:  # text LM: the chat template by hand (the tokenizer has no image path)
            tok.padding_side = "left"
            inputs = tok([tk.format_user(it.prompt, False) for it in chunk], return_tensors="pt", padding=True)
        else:
            inputs = adapter.build_inputs(processor, [it.prompt for it in chunk],
                                          [it.image for it in chunk] if with_image else None)
        logits = model(**inputs).logits[:, -1].float()
        for it, scored in zip(chunk, scorer.score(logits, chunk)):
            rows.append(dict(id=it.id, task=it.task, mode="image" if with_image else "text", answer=it.answer,
                             pred=scored["pred"], correct=scored["correct"], n_choices=len(it.choices)))
    return pd.DataFrame(rows)


@torch.no_grad()
def solve_arithmetic(model: Any, processor: Any, problems: Sequence[dict[str, Any]], mode: str = "text",
                     font: str = w.TRAIN_FONT, max_new_tokens: int = 48, batch_size: int = 64) -> pd.DataFrame:
    """Greedy chain-of-thought generation on arithmetic problems (text mode, or rendered in ``font``).

    Returns one row per problem: id, mode, font, answer, output, pred, correct.
    """
    adapter = adapter_for(model)
    tok = adapter.tokenizer(processor)
    rows = []
    for start in range(0, len(problems), batch_size):
        chunk = list(problems[start:start + batch_size])
        if processor is tok:
            tok.padding_side = "left"
            inputs = tok([tk.format_user(p["text_prompt"], False) for p in chunk], return_tensors="pt", padding=True)
        elif mode == "image":
            imgs = [w.render_arithmetic(p["question"], font, seed=p["id"]) for p in chunk]
            inputs = adapter.build_inputs(processor, [p["image_prompt"] for p in chunk], imgs)
        else:
            inputs = adapter.build_inputs(processor, [p["text_prompt"] for p in chunk])
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        texts = tok.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        for p, text in zip(chunk, texts):
            m = ANSWER_RE.search(text)
            pred = m.group(1) if m else None
            rows.append(dict(id=p["id"], mode=mode, font=font if mode == "image" else None, answer=p["answer"],
                             output=text, pred=pred, correct=pred == p["answer"]))
    return pd.DataFrame(rows)


def evaluate(mllm: Any, processor: Any, text_lm: Any | None = None, n: int = 200, seed: int = EVAL_SEED,
             fonts: Iterable[str] = (w.TRAIN_FONT, *w.UNSEEN_FONTS)) -> pd.DataFrame:
    """Accuracy table of the organism on held-out items (``split="test"``, never trained on): rows (model, task,
    mode, font) with accuracy, its 95% bootstrap CI (``lo``, ``hi``), n and chance level; plus one row
    ``task="Arithmetic gap"`` (mode ``"text-image"``): text minus training-font image accuracy of the MLLM on the
    same problems, with a paired bootstrap CI."""
    rows = []

    def add(model_name: str, df: pd.DataFrame, task: str, mode: str, font: str | None, chance: float) -> None:
        ci = bootstrap_ci(df["correct"].astype(float).to_numpy(), n_boot=2000, seed=0)
        rows.append(dict(model=model_name, task=task, mode=mode, font=font, accuracy=float(df["correct"].mean()),
                         lo=ci.lo, hi=ci.hi, n=len(df), chance=chance))

    for task in w.TASKS:
        text_items = w.world_items(task, n, seed=seed, mode="text", split="test")
        image_items = w.world_items(task, n, seed=seed, mode="image", split="test")
        chance = float(np.mean([1 / len(it.choices) for it in text_items]))
        majority = float(pd.Series([it.answer for it in text_items]).value_counts(normalize=True).iloc[0])
        for model_name, model, proc, modes in (("mllm", mllm, processor, ("text", "image")),
                                               ("text_lm", text_lm, getattr(processor, "tokenizer", None), ("text",))):
            if model is None:
                continue
            for mode in modes:
                df = letter_scores(model, proc, text_items if mode == "text" else image_items)
                add(model_name, df, task, mode, None, chance)
                rows[-1]["majority"] = majority
    problems = w.arithmetic_problems(n, seed=seed, split="test")
    text_arith = solve_arithmetic(mllm, processor, problems, "text")
    add("mllm", text_arith, "Arithmetic", "text", None, 0.0)
    image_arith = None
    for font in fonts:
        df = solve_arithmetic(mllm, processor, problems, "image", font)
        image_arith = df if font == w.TRAIN_FONT else image_arith
        add("mllm", df, "Arithmetic", "image", font, 0.0)
    if image_arith is not None:
        gap = paired_bootstrap_diff(image_arith["correct"].astype(float).to_numpy(),
                                    text_arith["correct"].astype(float).to_numpy(), n_boot=2000, seed=0)
        rows.append(dict(model="mllm", task="Arithmetic gap", mode="text-image", font=w.TRAIN_FONT,
                         accuracy=gap.value, lo=gap.lo, hi=gap.hi, n=gap.n, chance=0.0))
    if text_lm is not None:
        add("text_lm", solve_arithmetic(text_lm, processor.tokenizer, problems, "text"), "Arithmetic", "text", None,
            0.0)
    return pd.DataFrame(rows)


__all__ = ["ANSWER_RE", "EVAL_SEED", "evaluate", "letter_scores", "solve_arithmetic"]
