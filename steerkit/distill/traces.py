"""Self-distillation, step 1: sample the model's own text-mode solutions and keep the correct ones.

The teacher is the model itself reading the problem as text. ``k`` samples per training item at a temperature
(greedy traces of a small model are nearly all identical to the gold trace, so sampling is what makes the targets
the model's *own*); a trace is kept when its parsed ``<answer>`` equals the gold answer.

Example:
    >>> traces = sample_traces(model, processor, train_problems, k=4, temperature=0.7)
    >>> kept = keep_correct(traces, max_per_item=2)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from steerkit.gap.modes import PromptStyle, mode_input, style_for
from steerkit.gap.parse import answers_match, parse_number
from steerkit.gap.problems import TextProblem


def sample_traces(
    model: Any,
    processor: Any,
    problems: Sequence[TextProblem],
    *,
    k: int = 4,
    temperature: float = 0.7,
    top_p: float = 1.0,
    max_new_tokens: int = 512,
    style: PromptStyle | None = None,
    seed: int = 0,
    batch_size: int = 8,
) -> pd.DataFrame:
    """``k`` text-mode samples per problem (``temperature=0`` gives one greedy trace per problem).

    Columns: item_id, sample, prompt, response, answer, format_ok, correct, gold, temperature.
    Generation goes through :func:`steerkit.models.generation.generate_text` with ``num_return_sequences=k``.
    """
    from steerkit.models.generation import generate_text

    problems = list(problems)
    style = style or style_for(problems)
    k = 1 if temperature == 0 else k
    prompts = [mode_input(p, "text", style).prompt for p in problems]
    responses = generate_text(model, processor, prompts, None, max_new_tokens=max_new_tokens,
                              temperature=temperature, top_p=top_p, num_return_sequences=k, seed=seed,
                              batch_size=max(1, batch_size))
    rows = []
    for i, p in enumerate(problems):
        for j in range(k):
            resp = responses[i * k + j]
            parsed = parse_number(resp)
            rows.append(dict(item_id=p.id, sample=j, prompt=prompts[i], response=resp, answer=parsed.value,
                             format_ok=parsed.format_ok, correct=answers_match(parsed.value, p.answer),
                             gold=p.answer, temperature=temperature))
    return pd.DataFrame(rows)


def keep_correct(traces: pd.DataFrame, *, max_per_item: int | None = None, dedupe: bool = True,
                 require_format: bool = True) -> pd.DataFrame:
    """The correct traces (closed ``<answer>`` tag required unless ``require_format=False``), optionally
    de-duplicated per item and capped at ``max_per_item``."""
    kept = traces[traces["correct"] & (traces["format_ok"] | (not require_format))]
    if dedupe:
        kept = kept.assign(_norm=kept["response"].str.strip()).drop_duplicates(["item_id", "_norm"])
        kept = kept.drop(columns="_norm")
    if max_per_item is not None:
        kept = kept.groupby("item_id", sort=False).head(max_per_item)
    return kept.reset_index(drop=True)


def trace_summary(traces: pd.DataFrame) -> dict[str, float]:
    """Yield of a sampling run: sample accuracy, share of items with at least one correct sample, distinct
    correct traces per item."""
    per_item = traces.groupby("item_id")["correct"].any()
    kept = keep_correct(traces)
    return {
        "samples": float(len(traces)),
        "sample_accuracy": float(traces["correct"].mean()),
        "items_with_a_correct_trace": float(per_item.mean()),
        "distinct_correct_per_item": float(kept.groupby("item_id").size().mean()) if len(kept) else 0.0,
    }
