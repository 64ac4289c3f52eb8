"""``evaluate``: score items under one or more conditions and return a tidy DataFrame.

A condition is a name plus, optionally, a steering context (a zero-argument callable returning a context manager,
e.g. ``lambda: steer(model, vec, layers=[3], alpha=1.0, tokens="image")``) and/or a prompt hint (the prompting
baseline). Every (item, condition) pair becomes one row: ``id, task, source, split, condition, method, pred,
answer, correct, n_choices, lp_A .. lp_F`` (letter log-probs; NaN for ``method="generate"`` and beyond an item's
choices) and ``generation`` (the raw text for ``method="generate"``).

Example:
    >>> from steerkit.steer import steer
    >>> df = evaluate(model, processor, items, conditions={
    ...     "baseline": None,
    ...     "steered": lambda: steer(model, vec, layers=[3], alpha=1.0, tokens="image"),
    ...     "hint": Condition("hint", hint="Count the objects carefully, one by one."),
    ... })
    >>> df.groupby(["condition", "task"]).correct.mean()
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager, Literal

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from steerkit.tasks.schema import LETTERS, Item
from steerkit.tasks.scoring import PAPER_PREFIX, LetterScorer, generate_answers, letter_logprobs
from steerkit.tasks.splits import with_hint

Method = Literal["letter", "generate"]
MAX_LETTERS = 6


@dataclass(frozen=True)
class Condition:
    """A named evaluation condition: an optional steering context factory and an optional prompt hint."""

    name: str
    context: Callable[[], ContextManager[Any]] | None = None
    hint: str | Callable[[Item], str] | None = None

    def enter(self) -> ContextManager[Any]:
        """The context to score under (a no-op without ``context``)."""
        return self.context() if self.context is not None else contextlib.nullcontext()


def as_conditions(conditions: Any) -> list[Condition]:
    """Normalise ``None`` / a mapping name -> (None | context factory | Condition) / a list of Conditions."""
    if conditions is None:
        return [Condition("baseline")]
    if isinstance(conditions, Condition):
        return [conditions]
    if isinstance(conditions, Mapping):
        out = []
        for name, c in conditions.items():
            if c is None:
                out.append(Condition(str(name)))
            elif isinstance(c, Condition):
                out.append(Condition(str(name), c.context, c.hint))
            elif callable(c):
                out.append(Condition(str(name), c))
            else:
                raise TypeError(f"condition {name!r}: expected None, a Condition or a callable returning a context "
                                f"manager, got {type(c).__name__}")
        return out
    out = list(conditions)
    if not all(isinstance(c, Condition) for c in out):
        raise TypeError("conditions must be None, a mapping, or a list of Condition")
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise ValueError(f"condition names must be unique, got {names}")
    return out


def evaluate(
    model: Any,
    processor: Any,
    items: Sequence[Item],
    *,
    method: Method = "letter",
    batch_size: int = 16,
    conditions: Any = None,
    prefix: str = PAPER_PREFIX,
    max_new_tokens: int = 8,
    out: str | Path | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Score ``items`` under each condition; one row per item x condition (see the module docstring).

    ``method="letter"``: the argmax over the choice letters' log-probs at the last prompt position (one forward per
    batch), by :class:`steerkit.tasks.scoring.LetterScorer` (one scorer for all items and conditions).
    ``method="generate"``: greedy generation parsed by :func:`steerkit.tasks.scoring.parse_letter` (unparsable
    answers get ``pred=""`` and count as wrong). ``out``: also write the frame as parquet there.

    Example:
        >>> df = evaluate(model, processor, generate(n_per_task=20), method="letter", batch_size=32)
    """
    if method not in ("letter", "generate"):
        raise ValueError(f"method must be 'letter' or 'generate', got {method!r}")
    items = list(items)
    conds = as_conditions(conditions)
    # Items with and without images go in separate batches; rows are returned in input order.
    groups = [[i for i, it in enumerate(items) if it.image is not None],
              [i for i, it in enumerate(items) if it.image is None]]
    scorer = None
    if method == "letter" and items:
        from steerkit.models.adapters import adapter_for

        scorer = LetterScorer.for_items(adapter_for(model).tokenizer(processor), items)
    rows: list[dict[str, Any]] = []
    total = sum(len(g) for g in groups) * len(conds)
    bar = tqdm(total=total, desc=f"evaluate ({method})", disable=not progress, leave=False)
    for cond in conds:
        scored = items if cond.hint is None else with_hint(items, cond.hint)
        for group in groups:
            for start in range(0, len(group), batch_size):
                idx = group[start:start + batch_size]
                chunk = [scored[i] for i in idx]
                with cond.enter():
                    if method == "letter":
                        lp = letter_logprobs(model, processor, chunk, prefix=prefix, batch_size=len(chunk),
                                             scorer=scorer)
                        answers = [(None, it.letters[int(np.argmax(lp[r, :len(it.choices)]))])
                                   for r, it in enumerate(chunk)]
                    else:
                        lp = None
                        answers = generate_answers(model, processor, chunk, prefix=prefix, batch_size=len(chunk),
                                                   max_new_tokens=max_new_tokens)
                for r, (i, it) in enumerate(zip(idx, chunk)):
                    text, pred = answers[r]
                    row = {"order": i, "id": it.id, "task": it.task, "source": it.source, "split": it.split,
                           "condition": cond.name, "method": method, "pred": pred or "", "answer": it.answer,
                           "correct": bool(pred == it.answer), "n_choices": len(it.choices), "generation": text}
                    for c in range(MAX_LETTERS):
                        row[f"lp_{LETTERS[c]}"] = float(lp[r, c]) if lp is not None and c < len(it.choices) else np.nan
                    rows.append(row)
                bar.update(len(idx))
    bar.close()
    df = pd.DataFrame(rows)
    if not df.empty:
        cond_order = {c.name: k for k, c in enumerate(conds)}
        df = (df.assign(_c=df["condition"].map(cond_order)).sort_values(["_c", "order"], kind="stable")
              .drop(columns=["_c", "order"]).reset_index(drop=True))
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        df.to_parquet(out, index=False)
    return df
