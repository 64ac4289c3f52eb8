"""CLEVR and Super-CLEVR counting: open integer answers, kept as an open form and turned into multiple-choice items.

Sources:
- CLEVR counting, ``BUAADreamer/clevr_count_70k`` (the textual-steering paper's choice): columns ``images``
  (a list with one image), ``problem`` (question text, may contain ``<image>``), ``answer`` (the count as text).
- Super-CLEVR counting in R1-V's release: a JSONL of ``{"image_path", "question", "ground_truth"}`` next to its
  ``images/`` folder (``superclevr_test200_counting_problems.jsonl``).

Distractors (documented, deterministic): the choices are the ``n_choices`` consecutive integers from
``max(min_count, answer - offset)`` where ``offset`` is drawn from a seeded RNG keyed by the item id, so the correct
count sits at every position equally often in expectation and never leaks through being the middle option. Choices
are listed in increasing order, like CV-Bench's Count questions.

Open form (``item.open``, :class:`~steerkit.tasks.open_answer.OpenAnswer`): the question followed by
:data:`COUNT_INSTRUCTION`, the count as gold answer, parser ``"integer"`` (:func:`parse_count`). A sweep with
``answer="auto"`` therefore generates these items and reads the count from the response; ``open_auto="both"`` also
scores their multiple-choice form by the letter scorer.

Example:
    >>> items = load_clevr_count(limit=200)
    >>> items = load_superclevr_count("/data/superclevr/superclevr_test200_counting_problems.jsonl")
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from steerkit.errors import DataError
from steerkit.tasks.loaders._common import LoadedItems, OnError, build_items, mc_prompt, rows_from, to_pil
from steerkit.tasks.open_answer import OpenAnswer
from steerkit.tasks.schema import LETTERS, Item

CLEVR_HUB_NAME = "BUAADreamer/clevr_count_70k"
COUNT_INSTRUCTION = "Answer with a single number."


def count_choices(answer: int, item_id: str, *, n_choices: int = 4, min_count: int = 0, seed: int = 0) -> list[int]:
    """Consecutive-integer choices containing ``answer`` at a position drawn from (item id, seed).

    Example:
        >>> count_choices(3, "x", n_choices=4)
        [1, 2, 3, 4]
    """
    if answer < min_count:
        raise DataError(f"count {answer} is below min_count={min_count}")
    h = int(hashlib.sha256(f"{seed}:{item_id}".encode()).hexdigest()[:12], 16)
    offset = random.Random(h).randrange(n_choices)
    start = max(min_count, answer - offset)
    return list(range(start, start + n_choices))


def parse_count(value: Any) -> int:
    """An integer count from an int or a text answer ("3", " 3.", "<answer>3</answer>", "There are 3 cubes.").

    Raises :class:`DataError` unless the text holds exactly one integer; the parser ``"integer"`` of open answers
    (:class:`~steerkit.tasks.open_answer.OpenAnswer`) reads generated responses with it.
    """
    if isinstance(value, bool):
        raise DataError(f"count answer {value!r} is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value is None:
        raise DataError("answer is missing")
    nums = re.findall(r"-?\d+", str(value))
    if len(nums) != 1:
        raise DataError(f"count answer {value!r} does not hold exactly one integer")
    return int(nums[0])


def count_item(item_id: str, image: Any, question: str, count: Any, *, task: str, source: str,
               n_choices: int = 4, seed: int = 0, base_dir: str | Path | None = None,
               open_auto: str = "generate") -> Item:
    """A counting question with an integer answer as a multiple-choice :class:`Item` (CV-Bench prompt layout) with
    its open form (question + :data:`COUNT_INSTRUCTION`, parser "integer"; ``open_auto``: "generate" or "both")."""
    n = parse_count(count)
    question = question.replace("<image>", "").strip()
    if not question:
        raise DataError("question is missing")
    values = count_choices(n, item_id, n_choices=n_choices, seed=seed)
    choices = [str(v) for v in values]
    return Item(id=item_id, image=to_pil(image, base_dir=base_dir), prompt=mc_prompt(question, choices),
                choices=choices, answer=LETTERS[values.index(n)], task=task, source=source, question=question,
                extra={"count": n},
                open=OpenAnswer(f"{question} {COUNT_INSTRUCTION}", str(n), parser="integer", auto=open_auto))


def load_clevr_count(
    source: Any = CLEVR_HUB_NAME,
    *,
    split: str = "test",
    n_choices: int = 4,
    seed: int = 0,
    on_error: OnError = "raise",
    limit: int | None = None,
    open_auto: str = "generate",
) -> LoadedItems:
    """CLEVR counting (``clevr_count_70k`` schema) as multiple-choice items with an open form, task
    ``"CLEVR-Count"`` (``open_auto``: what ``answer="auto"`` sweeps do with them, "generate" or "both")."""
    rows = rows_from(source, split=split if isinstance(source, str) and not Path(source).is_file() else None)

    def make(i: int, r: Mapping[str, Any]) -> Item:
        return count_item(f"clevr/{i}", r.get("images"), str(r.get("problem") or ""), r.get("answer"),
                          task="CLEVR-Count", source="CLEVR", n_choices=n_choices, seed=seed, open_auto=open_auto)

    return build_items(rows, make, row_id=lambda i, r: f"clevr/{i}", on_error=on_error, name="CLEVR-Count",
                       limit=limit)


def load_superclevr_count(
    source: str | Path,
    *,
    n_choices: int = 4,
    seed: int = 0,
    on_error: OnError = "raise",
    limit: int | None = None,
    open_auto: str = "generate",
) -> LoadedItems:
    """Super-CLEVR counting (R1-V JSONL schema, or parquet with the same columns) as multiple-choice items with an
    open form, task ``"SuperCLEVR-Count"`` (``open_auto`` as in :func:`load_clevr_count`).

    ``source``: the JSONL file (image paths are resolved against its folder) or a folder holding exactly one
    ``*.jsonl``.
    """
    path = Path(source)
    if path.is_dir():
        found = sorted(path.glob("*.jsonl"))
        if len(found) != 1:
            raise DataError(f"{path}: expected exactly one .jsonl of counting problems, found {len(found)}")
        path = found[0]
    if path.suffix == ".jsonl":
        rows = []
        for k, line in enumerate(path.read_text().splitlines()):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    rows.append({"_broken": f"line {k + 1}: {e}"})
    else:
        rows = rows_from(path)

    def make(i: int, r: Mapping[str, Any]) -> Item:
        if "_broken" in r:
            raise DataError(f"unparsable JSON ({r['_broken']})")
        rid = Path(str(r.get("image_path") or f"row{i}")).stem
        return count_item(f"superclevr/{rid}", r.get("image", r.get("image_path")), str(r.get("question") or ""),
                          r.get("ground_truth", r.get("answer")), task="SuperCLEVR-Count", source="Super-CLEVR",
                          n_choices=n_choices, seed=seed, base_dir=path.parent, open_auto=open_auto)

    return build_items(rows, make, row_id=lambda i, r: f"superclevr/{Path(str(r.get('image_path') or i)).stem}",
                       on_error=on_error, name="SuperCLEVR-Count", limit=limit)
