"""CV-Bench (``nyu-visionx/CV-Bench``): 2,638 multiple-choice items, Count/Relation (2D) and Depth/Distance (3D).

Both hub layouts load: the 2024 single ``test.parquet`` (one ``default`` config) and the 2025 ``test_2d.parquet``
(1,438 rows) + ``test_3d.parquet`` (1,200 rows) with configs ``default``, ``2D``, ``3D``; every config has one split,
``test``. ``idx`` is global (3D rows start at 1438), ``answer`` is like ``"(C)"``, ``image`` is an HF Image feature
(a struct of bytes + path in the parquet), ``bbox`` exists only on Omni3D rows.

Example:
    >>> items = load_cvbench()                                  # hub (needs network the first time)
    >>> items = load_cvbench("/data/CV-Bench", config="3D")     # a local copy of the repository
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from steerkit.errors import DataError
from steerkit.tasks.loaders._common import LoadedItems, OnError, build_items, letter_of, rows_from, to_pil
from steerkit.tasks.schema import Item

HUB_NAME = "nyu-visionx/CV-Bench"
TASKS = ("Count", "Relation", "Depth", "Distance")
# Per-config files of the 2025 layout; the 2024 layout has only test.parquet (config "default").
LAYOUT_2025 = {"default": ["test_2d.parquet", "test_3d.parquet"], "2D": ["test_2d.parquet"], "3D": ["test_3d.parquet"]}
_EXTRA_FIELDS = ("type", "filename", "source_dataset", "source_filename", "target_class", "target_size", "bbox")


def local_data_files(folder: str | Path, config: str = "default") -> list[str]:
    """The parquet files of ``config`` in a local CV-Bench folder, for either hub layout.

    Example:
        >>> local_data_files("/data/CV-Bench", "3D")
        ['/data/CV-Bench/test_3d.parquet']
    """
    folder = Path(folder)
    if (folder / "test_2d.parquet").exists() or (folder / "test_3d.parquet").exists():
        if config not in LAYOUT_2025:
            raise DataError(f"CV-Bench config {config!r} unknown; choose one of {list(LAYOUT_2025)}")
        files = [folder / f for f in LAYOUT_2025[config]]
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise DataError(f"CV-Bench folder {folder} lacks {missing} for config {config!r}")
        return [str(f) for f in files]
    if (folder / "test.parquet").exists():
        if config != "default":
            raise DataError(f"{folder} has the 2024 layout (one test.parquet): only config 'default' exists; "
                            f"filter with tasks=... or sources=... instead of config={config!r}")
        return [str(folder / "test.parquet")]
    raise DataError(f"{folder} holds no CV-Bench parquet files (expected test.parquet, or test_2d.parquet + "
                    f"test_3d.parquet); download the dataset repository there or pass the hub name")


def cvbench_item(row: Mapping[str, Any]) -> Item:
    """One CV-Bench row (a dict in the dataset's schema) as an :class:`Item`; :class:`DataError` if malformed."""
    choices = row.get("choices")
    if choices is None or len(choices) < 2:
        raise DataError(f"needs >= 2 choices, got {choices!r}")
    choices = [str(c) for c in choices]
    answer = letter_of(row.get("answer"), len(choices))
    prompt = row.get("prompt")
    if not prompt:
        raise DataError("prompt is missing")
    task = row.get("task")
    if not task:
        raise DataError("task is missing")
    image = to_pil(row.get("image"))
    extra = {k: row[k] for k in _EXTRA_FIELDS if k in row and row[k] is not None}
    extra["idx"] = int(row["idx"])
    return Item(id=str(row["idx"]), image=image, prompt=str(prompt), choices=choices, answer=answer,
                task=str(task), source=str(row.get("source") or ""), question=str(row.get("question") or ""),
                extra=extra)


def load_cvbench(
    source: Any = HUB_NAME,
    *,
    config: str = "default",
    split: str = "test",
    tasks: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
    on_error: OnError = "raise",
    limit: int | None = None,
    revision: str | None = None,
) -> LoadedItems:
    """Load CV-Bench as :class:`Item` s (``id`` = global ``idx``; ``source`` = ADE20K / COCO / Omni3D).

    ``source``: the hub name, a local folder holding the repository (either layout), a parquet file, or a
    ``datasets.Dataset``. ``config``: ``default`` (all), ``2D`` or ``3D`` (2025 layout). ``tasks`` / ``sources``
    keep only those tasks / image sources. Malformed rows raise, or with ``on_error="skip"`` are listed on
    ``result.skipped``.

    Example:
        >>> items = load_cvbench("/data/CV-Bench", tasks=["Count"], on_error="skip")
        >>> items[0].prompt.startswith("How many")
        True
    """
    path = Path(str(source)) if isinstance(source, (str, Path)) else None
    # "default" is also the implicit config of a card without configs (the 2024 layout): pass None for it.
    name = None if config == "default" else config
    if path is not None and path.is_dir() and _has_configs(path):
        rows = rows_from(str(path), config=name, split=split)  # a snapshot of the hub repository, card and all
    elif path is not None and path.is_dir():  # bare files (or the 2024 snapshot, whose test.jsonl would confuse
        rows = rows_from("parquet", split="train", data_files=local_data_files(path, config))  # format inference)
    else:
        rows = rows_from(source, config=name if isinstance(source, str) else None, split=split, revision=revision)
    if tasks is not None:
        unknown = set(tasks) - set(TASKS)
        if unknown:
            raise ValueError(f"unknown CV-Bench tasks {sorted(unknown)}; choose from {TASKS}")
    keep_t = set(tasks) if tasks is not None else None
    keep_s = set(sources) if sources is not None else None
    if keep_t is not None or keep_s is not None:
        rows = (r for r in rows if (keep_t is None or r.get("task") in keep_t)
                and (keep_s is None or r.get("source") in keep_s))
    return build_items(rows, lambda i, r: cvbench_item(r), row_id=lambda i, r: str(r.get("idx", f"row{i}")),
                       on_error=on_error, name=f"CV-Bench[{config}]", limit=limit)


def _has_configs(folder: Path) -> bool:
    card = folder / "README.md"
    return card.exists() and "configs:" in card.read_text(errors="replace")
