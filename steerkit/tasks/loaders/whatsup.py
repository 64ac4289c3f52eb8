"""What'sUp Controlled Images A and B (Kamath et al., 2023): pick the caption that names the right preposition.

Two schemas load:
- the hub mirrors the textual-steering paper used, ``ServiceNow/whatsup_controlled_images_{a,b}_inference_test``
  (split ``Controlled_Images_A`` / ``Controlled_Images_B``; columns ``image_options`` (image), ``caption_options``
  (4 captions), ``TARGET`` (index of the true caption));
- the original release (``controlled_images_dataset.json`` / ``controlled_clevr_dataset.json``: a list of
  ``{"image_path", "caption_options"}`` whose first caption is the true one), from a local folder.

The prompt follows the paper's code: "Please select the correct caption for the image:" then the captions as
"(A) ...". Captions are rotated by ``row_index % n_choices`` (the paper's rule), so the correct letter cycles
through A-D instead of always being the original position.

Example:
    >>> items = load_whatsup("A")
    >>> items = load_whatsup("B", source="/data/whatsup")   # folder with controlled_clevr_dataset.json + images
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from steerkit.errors import DataError
from steerkit.tasks.loaders._common import LoadedItems, OnError, build_items, letter_of, rows_from, to_pil
from steerkit.tasks.schema import LETTERS, Item

HUB_NAMES = {"A": "ServiceNow/whatsup_controlled_images_a_inference_test",
             "B": "ServiceNow/whatsup_controlled_images_b_inference_test"}
HUB_SPLITS = {"A": "Controlled_Images_A", "B": "Controlled_Images_B"}
ORIGINAL_FILES = {"A": "controlled_images_dataset.json", "B": "controlled_clevr_dataset.json"}
QUESTION = "Please select the correct caption for the image:"
PREPOSITIONS = ("left", "right", "on", "under", "front", "behind")


def whatsup_prompt(captions: list[str]) -> str:
    """The paper's caption-choice prompt for a list of (already rotated) captions."""
    return QUESTION + "\n" + "\n".join(f"({LETTERS[j]}) {c}" for j, c in enumerate(captions))


def _preposition(caption: str) -> str:
    words = set(caption.replace("-", " ").lower().split())
    found = [p for p in PREPOSITIONS if p in words]
    return found[0] if len(found) == 1 else ""


def whatsup_item(i: int, row: Mapping[str, Any], subset: str, *, base_dir: str | Path | None = None,
                 rotate: bool = True) -> Item:
    """Row ``i`` of subset ``subset`` as an :class:`Item` (either schema, see the module docstring)."""
    captions = row.get("caption_options")
    if captions is None or len(captions) < 2:
        raise DataError(f"needs >= 2 caption_options, got {captions!r}")
    captions = [str(c) for c in captions]
    target = row.get("TARGET", 0 if "image_path" in row else None)
    if target is None:
        raise DataError("TARGET (index of the true caption) is missing")
    true_idx = LETTERS.index(letter_of(int(target), len(captions)))
    shift = i % len(captions) if rotate else 0
    shown = captions[shift:] + captions[:shift]
    answer = LETTERS[(true_idx - shift) % len(captions)]
    image = to_pil(row["image_options"] if "image_options" in row else row.get("image_path"), base_dir=base_dir)
    return Item(id=f"whatsup_{subset}/{i}", image=image, prompt=whatsup_prompt(shown), choices=shown,
                answer=answer, task=f"WhatsUp-{subset}", source="WhatsUp", question=QUESTION,
                extra={"row": i, "true_caption": captions[true_idx], "preposition": _preposition(captions[true_idx]),
                       "image_path": row.get("image_path", "")})


def load_whatsup(
    subset: str = "A",
    source: Any = None,
    *,
    on_error: OnError = "raise",
    limit: int | None = None,
    rotate: bool = True,
) -> LoadedItems:
    """Load What'sUp Controlled Images ``subset`` ("A" or "B") as :class:`Item` s.

    ``source``: None (the hub mirror), a hub name, a ``datasets.Dataset``, a parquet file, or a local folder with
    either the original JSON (+ its images, paths relative to the folder or its parent) or parquet files.
    """
    subset = subset.upper()
    if subset not in HUB_NAMES:
        raise ValueError(f"What'sUp subset must be 'A' or 'B', got {subset!r}")
    base_dir: Path | None = None
    path = Path(str(source)) if isinstance(source, (str, Path)) else None
    if source is None:
        rows = rows_from(HUB_NAMES[subset], split=HUB_SPLITS[subset])
    elif path is not None and path.is_dir() and (path / ORIGINAL_FILES[subset]).exists():
        rows = json.loads((path / ORIGINAL_FILES[subset]).read_text())
        base_dir = path
    elif path is not None and path.is_file() and path.suffix == ".json":
        rows = json.loads(path.read_text())
        base_dir = path.parent
    elif path is not None and path.is_dir():
        rows = rows_from(str(path), split=HUB_SPLITS[subset])
    else:
        rows = rows_from(source, split=HUB_SPLITS[subset] if isinstance(source, str) else None)

    def make(i: int, row: Mapping[str, Any]) -> Item:
        # The original JSON stores paths like "data/controlled_images/x.jpeg": resolve them against the folder.
        if base_dir is not None and "image_path" in row:
            row = {**row, "image_path": str(_resolve(base_dir, str(row["image_path"])))}
        return whatsup_item(i, row, subset, rotate=rotate)

    return build_items(rows, make, row_id=lambda i, r: f"whatsup_{subset}/{i}", on_error=on_error,
                       name=f"WhatsUp-{subset}", limit=limit)


def _resolve(base: Path, rel: str) -> Path:
    """``rel`` under ``base``, trying shorter tails of the path ("data/controlled_images/x.jpg" -> "x.jpg")."""
    parts = Path(rel).parts
    for k in range(len(parts)):
        cand = base.joinpath(*parts[k:])
        if cand.exists():
            return cand
    return base / rel
