"""BLINK (``BLINK-Benchmark/BLINK``): the single-image perception subtasks used as out-of-distribution tests.

Schema (one config per subtask, splits ``val`` (with answers) and ``test`` (answers hidden)): ``idx`` like
``"val_Counting_1"``, ``question``, ``sub_task``, ``image_1`` .. ``image_4`` (HF Image, unused ones null),
``choices`` (list of strings), ``answer`` like ``"(A)"``, ``prompt`` (question + choices as the benchmark shows
them), ``explanation``. Files: ``<Subtask>/val-00000-of-00001.parquet``.

Example:
    >>> items = load_blink(["Counting", "Relative_Depth"])
    >>> items = load_blink(source="/data/BLINK")     # a local copy of the repository
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from steerkit.errors import DataError
from steerkit.tasks.loaders._common import LoadedItems, OnError, build_items, letter_of, rows_from, to_pil
from steerkit.tasks.schema import Item

HUB_NAME = "BLINK-Benchmark/BLINK"
SUBTASKS = ("Counting", "Relative_Depth", "Spatial_Relation", "Object_Localization")


def blink_item(row: Mapping[str, Any], subtask: str = "") -> Item:
    """One BLINK row as an :class:`Item` (task ``"BLINK-<subtask>"``; ``subtask`` "" = from the row's sub_task).

    Rows with more than one image are rejected (the item holds one image).
    """
    extra_images = [k for k in ("image_2", "image_3", "image_4") if row.get(k) is not None]
    if extra_images:
        raise DataError(f"has {1 + len(extra_images)} images; only single-image subtasks {SUBTASKS} are supported")
    choices = row.get("choices")
    if choices is None or len(choices) < 2:
        raise DataError(f"needs >= 2 choices, got {choices!r}")
    choices = [str(c) for c in choices]
    answer = row.get("answer")
    if answer == "hidden":
        raise DataError("answer is hidden (test split); use split='val'")
    letter = letter_of(answer, len(choices))
    prompt = row.get("prompt")
    if not prompt:
        raise DataError("prompt is missing")
    # Task names use the config spelling ("Relative_Depth"), whatever the row's sub_task column says.
    name = subtask or str(row.get("sub_task") or "").replace(" ", "_")
    return Item(id=str(row["idx"]), image=to_pil(row.get("image_1")), prompt=str(prompt), choices=choices,
                answer=letter, task=f"BLINK-{name}", source="BLINK", question=str(row.get("question") or ""),
                extra={"sub_task": row.get("sub_task") or subtask})


def load_blink(
    subtasks: Iterable[str] = SUBTASKS,
    *,
    source: Any = HUB_NAME,
    split: str = "val",
    on_error: OnError = "raise",
    limit: int | None = None,
) -> LoadedItems:
    """Load BLINK subtasks (configs) as :class:`Item` s, task = ``"BLINK-<Subtask>"``.

    ``source``: the hub name, or a local folder with one sub-folder per subtask holding ``<split>-*.parquet``
    (a copy of the repository). ``limit`` applies per subtask.
    """
    if isinstance(subtasks, str):
        subtasks = [subtasks]
    out = LoadedItems(name="BLINK")
    if not isinstance(source, (str, Path)):  # rows already in hand (a Dataset / list): one pass, subtask per row
        part = build_items(rows_from(source, split=split), lambda i, r: blink_item(r, ""),
                           row_id=lambda i, r: str(r.get("idx", i)), on_error=on_error, name="BLINK", limit=limit)
        return LoadedItems(part, part.skipped, name="BLINK")
    for sub in subtasks:
        path = Path(source)
        if path.is_dir():
            files = sorted(str(f) for f in (path / sub).glob(f"{split}-*.parquet"))
            if not files:
                raise DataError(f"{path / sub} has no {split}-*.parquet files; is {path} a copy of {HUB_NAME}?")
            rows = rows_from("parquet", split="train", data_files=files)
        else:
            rows = rows_from(str(source), config=sub, split=split)
        part = build_items(rows, lambda i, r, s=sub: blink_item(r, s), row_id=lambda i, r: str(r.get("idx", i)),
                           on_error=on_error, name=f"BLINK-{sub}", limit=limit)
        out.extend(part)
        out.skipped.extend(part.skipped)
    return out
