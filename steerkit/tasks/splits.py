"""Train/test protocols and the prompting baseline.

- :func:`paper_split`: the textual-steering paper's CV-Bench protocol -- per task, shuffle the task's rows (in
  dataset order) with ``pandas.DataFrame.sample(frac=1, random_state=42)`` and take the last 150 as test, the rest
  as train (the steering grid is searched on train, reported on test).
- :func:`stratified_split`: our own split, balanced over task x source x answer letter, so that a small test set
  keeps the label distribution of the whole.
- :func:`with_hint`: the prompting baseline -- a textual concept hint prepended to each prompt, the cheapest
  competitor to a steering vector that carries the same concept.

Example:
    >>> items = paper_split(load_cvbench())
    >>> train = [it for it in items if it.split == "train"]
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from steerkit.tasks.schema import Item

# ------------------------------------------------------------------ held out by construction (generated sets)
SPLITS: tuple[str, ...] = ("train", "test")
TEST_FRACTION = 0.25  # share of the content space held out for evaluation


def content_split(key: str | bytes, test_fraction: float = TEST_FRACTION) -> str:
    """``"test"`` or ``"train"`` for an item's content ``key``: sha256 of the key read as a fraction in [0, 1).

    Generators draw until an item of the requested split comes up (rejection sampling), so a test item can never
    be a training item: equal content has equal hash. Stable across processes and Python versions (unlike
    ``hash``).

    Example:
        >>> content_split("47+38")
        'train'
    """
    data = key if isinstance(key, bytes) else key.encode()
    fraction = int.from_bytes(hashlib.sha256(data).digest()[:8], "big") / 2**64
    return "test" if fraction < test_fraction else "train"


def check_split(split: str) -> str:
    """``split`` itself when it is one of :data:`SPLITS`, else a :class:`~steerkit.errors.DataError`."""
    if split not in SPLITS:
        from steerkit.errors import DataError

        raise DataError(f"split must be one of {list(SPLITS)}, not {split!r}: a generated set is either training "
                        "data or held-out data")
    return split


PAPER_SEED = 42
PAPER_TEST_SIZE = 150

# Concept hints for the prompting baseline; keys are concepts (as in the steering corpora) and task names.
CONCEPT_HINTS: dict[str, str] = {
    "spatial relationship": "Pay close attention to where the objects are relative to each other.",
    "counting": "Count the objects carefully, one by one.",
    "depth": "Pay close attention to how far each object is from the camera.",
    "distance": "Pay close attention to the real-world distances between the objects.",
    "attribute": "Pay close attention to the colours and shapes of the objects.",
    "entity": "Pay close attention to which objects are in the image.",
    "comparison": "Compare the objects carefully: which is bigger, closer or further.",
}
TASK_CONCEPT: dict[str, str] = {
    "Count": "counting", "Relation": "spatial relationship", "Depth": "depth", "Distance": "distance",
    "WhatsUp-A": "spatial relationship", "WhatsUp-B": "spatial relationship",
    "BLINK-Counting": "counting", "BLINK-Spatial_Relation": "spatial relationship",
    "BLINK-Relative_Depth": "depth", "BLINK-Object_Localization": "entity",
    "CLEVR-Count": "counting", "SuperCLEVR-Count": "counting",
}


def _with_split(item: Item, split: str) -> Item:
    return dataclasses.replace(item, split=split, extra=dict(item.extra))


def paper_split(items: Sequence[Item], *, test_size: int = PAPER_TEST_SIZE, seed: int = PAPER_SEED,
                by: Callable[[Item], str] = lambda it: it.task) -> list[Item]:
    """Copies of ``items`` with ``split`` set by the paper's rule, per group (task by default), in input order.

    When a group has no more than ``test_size`` items, half of it (rounded down) is test -- the paper code's
    fallback -- and a warning says so.

    Example:
        >>> sp = paper_split(items)
        >>> sum(it.split == "test" for it in sp if it.task == "Count")
        150
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        groups[by(it)].append(i)
    split_of: dict[int, str] = {}
    for name, members in groups.items():
        k = test_size
        if k >= len(members):
            k = len(members) // 2
            warnings.warn(f"group {name!r} has {len(members)} items <= test_size={test_size}; using {k} as test",
                          stacklevel=2)
        order = pd.DataFrame({"i": members}).sample(frac=1, random_state=seed)["i"].tolist()
        for i in order[len(order) - k:] if k else []:
            split_of[i] = "test"
        for i in order[:len(order) - k]:
            split_of[i] = "train"
    return [_with_split(it, split_of[i]) for i, it in enumerate(items)]


def stratified_split(items: Sequence[Item], *, test_frac: float = 0.3, seed: int = 0,
                     strata: Callable[[Item], tuple] = lambda it: (it.task, it.source, it.answer)) -> list[Item]:
    """Copies of ``items`` with ``split`` "train"/"test", ``round(test_frac * n)`` test items per stratum.

    Example:
        >>> sp = stratified_split(generate(n_per_task=40), test_frac=0.25)
    """
    if not 0.0 < test_frac < 1.0:
        raise ValueError(f"test_frac must be in (0, 1), got {test_frac}")
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        groups[strata(it)].append(i)
    rng = np.random.default_rng(seed)
    split_of: dict[int, str] = {}
    for key in sorted(groups, key=repr):  # fixed order, so the RNG stream does not depend on dict order
        members = list(groups[key])
        rng.shuffle(members)
        k = int(round(test_frac * len(members)))
        for j, i in enumerate(members):
            split_of[i] = "test" if j < k else "train"
    return [_with_split(it, split_of[i]) for i, it in enumerate(items)]


def hint_for(item_or_task: Item | str, hints: Mapping[str, str] = CONCEPT_HINTS) -> str:
    """The concept hint for an item's task (or a task / concept name); "" when none is known."""
    task = item_or_task.task if isinstance(item_or_task, Item) else item_or_task
    if task in hints:
        return hints[task]
    return hints.get(TASK_CONCEPT.get(task, ""), "")


def with_hint(items: Sequence[Item], hint: str | Callable[[Item], str] | None = None) -> list[Item]:
    """The prompting baseline: copies of ``items`` whose prompt starts with a concept hint.

    ``hint``: a fixed string, a function of the item, or None for :func:`hint_for` (the task's concept hint).
    The original prompt is kept in ``extra["prompt_without_hint"]``.

    Example:
        >>> with_hint(items, "Count the objects carefully, one by one.")[0].prompt[:40]
    """
    out = []
    for it in items:
        h = hint_for(it) if hint is None else (hint(it) if callable(hint) else hint)
        extra = {**it.extra, "prompt_without_hint": it.prompt, "hint": h}
        out.append(dataclasses.replace(it, prompt=f"{h} {it.prompt}" if h else it.prompt, extra=extra))
    return out
