"""Shared loader machinery: where rows come from, how images decode, how bad rows are reported."""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from PIL import Image, UnidentifiedImageError

from steerkit.errors import DataError
from steerkit.tasks.schema import LETTERS, Item

OnError = Literal["raise", "skip"]


class LoadedItems(list):
    """A ``list[Item]`` that also remembers the rows it skipped: ``skipped`` holds ``(row_id, reason)``.

    Example:
        >>> items = load_cvbench("data/cvbench", on_error="skip")
        >>> len(items), items.skipped[:1]
    """

    def __init__(self, items: Iterable[Item] = (), skipped: list[tuple[str, str]] | None = None, name: str = ""):
        super().__init__(items)
        self.skipped: list[tuple[str, str]] = list(skipped or [])
        self.name = name

    def summary(self) -> str:
        """One line: how many items were kept and which row ids were skipped."""
        s = f"{self.name or 'dataset'}: {len(self)} items"
        if self.skipped:
            ids = ", ".join(i for i, _ in self.skipped[:10])
            s += f", {len(self.skipped)} malformed rows skipped ({ids}{', ...' if len(self.skipped) > 10 else ''})"
        return s


def rows_from(
    source: Any,
    *,
    config: str | None = None,
    split: str | None = None,
    revision: str | None = None,
    data_files: Any = None,
) -> Any:
    """Rows of a dataset from a hub name, a local folder, a data file, or an object that is already rows.

    - ``datasets.Dataset`` / list of dicts / ``pandas.DataFrame``: used as is (a ``DatasetDict`` needs ``split``).
    - a ``.parquet`` / ``.json`` / ``.jsonl`` file: ``load_dataset("parquet"|"json", data_files=...)``.
    - anything else (hub name or local folder): ``load_dataset(source, config, split=split)`` -- the same call
      for a user with hub access and for a local copy of the repository.

    Local files and folders are cached by ``datasets`` under a folder named by a hash of their contents
    (:func:`local_cache_dir`): ``datasets`` keys a local folder's cache by its name, so a changed file, or another
    folder of the same name, would otherwise return the old rows.
    """
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        return source.to_dict("records")
    if isinstance(source, list):
        return source
    if hasattr(source, "column_names") and hasattr(source, "__getitem__") and not isinstance(source, Mapping):
        return undecoded(source)  # datasets.Dataset
    if isinstance(source, Mapping):  # DatasetDict
        if split is None or split not in source:
            raise DataError(f"split {split!r} not in dataset (has {list(source)}); pass split=")
        return undecoded(source[split])
    from datasets import load_dataset

    path = Path(str(source))
    if path.is_file():
        suffix = path.suffix.lower()
        builder = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv"}.get(suffix)
        if builder is None:
            raise DataError(f"{path}: unknown data file type {suffix!r}; pass a .parquet, .json or .jsonl file")
        return undecoded(load_dataset(builder, data_files=str(path), split="train", cache_dir=local_cache_dir([path])))
    kwargs: dict[str, Any] = {}
    if revision is not None:
        kwargs["revision"] = revision
    if data_files is not None:
        kwargs["data_files"] = data_files
    local = ([path] if path.is_dir() else []) + _local_paths(data_files)
    if local:
        kwargs["cache_dir"] = local_cache_dir(local)
    return undecoded(load_dataset(str(source), config, split=split, **kwargs))


# files read whole into the key; anything else (images beside the data, ...) enters by name, size and mtime
_DATA_SUFFIXES = frozenset({".parquet", ".arrow", ".json", ".jsonl", ".csv", ".tsv", ".txt", ".md", ".yaml", ".yml"})


def _local_paths(data_files: Any) -> list[Path]:
    """The local files among ``data_files`` (a path, a list of paths or a {split: paths} mapping)."""
    if data_files is None:
        return []
    if isinstance(data_files, Mapping):
        return [p for v in data_files.values() for p in _local_paths(v)]
    if isinstance(data_files, (str, os.PathLike)):
        return [Path(data_files)] if Path(data_files).exists() else []
    return [p for v in data_files for p in _local_paths(v)]


def local_cache_dir(paths: Iterable[str | os.PathLike]) -> str:
    """A ``datasets`` cache folder named by the contents of local data ``paths`` (files, or folders walked whole).

    Data files (parquet, json, csv, card...) enter the key by their bytes, other files by name, size and
    modification time; hidden entries (``.git``, ``.cache``) are skipped. Equal contents share a cache; a changed
    row gets a new one.

    Example:
        >>> local_cache_dir(["/data/CV-Bench"])   # doctest: +SKIP
        '/root/.cache/huggingface/datasets/steerkit-local/3f2a...'
    """
    from datasets import config as hf_config

    h = hashlib.blake2b(digest_size=12)
    for root in sorted(Path(p).resolve() for p in paths):
        files = [root] if root.is_file() else sorted(
            f for f in root.rglob("*") if f.is_file() and not any(part.startswith(".") for part in
                                                                     f.relative_to(root).parts))
        for f in files:
            st = f.stat()
            h.update(f"{f.relative_to(root) if f != root else f.name}\0{st.st_size}\0".encode())
            if f.suffix.lower() in _DATA_SUFFIXES:
                with f.open("rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        h.update(block)
            else:
                h.update(str(st.st_mtime_ns).encode())
    return str(Path(hf_config.HF_DATASETS_CACHE) / "steerkit-local" / h.hexdigest())


def undecoded(ds: Any) -> Any:
    """``ds`` with its image columns left as ``{bytes, path}`` structs.

    ``datasets`` decodes images while iterating, so one corrupt image would abort the whole loop before the loader
    could name the row; decoding ourselves (:func:`to_pil`) turns it into a per-row error.
    """
    from datasets import Image as HFImage

    features = getattr(ds, "features", None)
    if not features:
        return ds
    for name, feat in features.items():
        inner = getattr(feat, "feature", None)
        if isinstance(feat, HFImage) and feat.decode:
            ds = ds.cast_column(name, HFImage(decode=False))
        elif isinstance(inner, HFImage) and inner.decode:
            ds = ds.cast_column(name, type(feat)(HFImage(decode=False)))
    return ds


def to_pil(value: Any, *, base_dir: str | os.PathLike | None = None) -> Image.Image:
    """Decode an image cell: a PIL image, an HF Image struct ``{"bytes", "path"}``, raw bytes, or a file path.

    The image is checked (``verify``) and returned lazily opened (decoded on first use), so loading a benchmark does
    not hold every decoded bitmap in memory. Raises :class:`DataError` when it cannot be read.
    """
    if isinstance(value, (list, tuple)):
        if not value:
            raise DataError("empty image list")
        value = value[0]
    if isinstance(value, Image.Image):
        return value
    data: bytes | None = None
    path: str | None = None
    if isinstance(value, Mapping):
        data = value.get("bytes")
        path = value.get("path")
    elif isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    elif isinstance(value, (str, os.PathLike)):
        path = str(value)
    elif value is None:
        raise DataError("image is missing (None)")
    else:
        raise DataError(f"cannot read an image from a {type(value).__name__}")
    if data is None:
        if not path:
            raise DataError("image has neither bytes nor a path")
        p = Path(path)
        if not p.is_absolute() and base_dir is not None:
            p = Path(base_dir) / p
        try:
            data = p.read_bytes()
        except OSError as e:
            raise DataError(f"image file {p} cannot be read ({e})") from e
    try:
        Image.open(io.BytesIO(data)).verify()
        return Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"image bytes cannot be decoded ({type(e).__name__}: {e})") from e


def letter_of(answer: Any, n_choices: int) -> str:
    """The answer letter from "(C)", "C", "c" (or a 0-based int index); :class:`DataError` if out of range."""
    if answer is None or (isinstance(answer, str) and not answer.strip()):
        raise DataError("answer is missing")
    if isinstance(answer, int) and not isinstance(answer, bool):
        if not 0 <= answer < n_choices:
            raise DataError(f"answer index {answer} out of range for {n_choices} choices")
        return LETTERS[answer]
    letter = str(answer).strip().strip("()").strip().upper()
    if len(letter) != 1 or letter not in LETTERS[:n_choices]:
        raise DataError(f"answer {answer!r} is not one of the choice letters {list(LETTERS[:n_choices])}")
    return letter


def mc_prompt(question: str, choices: list[str], *, lead: str = " Select from the following choices.") -> str:
    """CV-Bench's prompt layout: ``question + lead + "\\n(A) x\\n(B) y"``."""
    lines = "\n".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(choices))
    return f"{question}{lead}\n{lines}"


def build_items(
    rows: Iterable[Mapping[str, Any]],
    make: Callable[[int, Mapping[str, Any]], Item],
    *,
    row_id: Callable[[int, Mapping[str, Any]], str],
    on_error: OnError = "raise",
    name: str = "",
    limit: int | None = None,
) -> LoadedItems:
    """Turn rows into items; a malformed row raises (``on_error="raise"``) or is recorded and skipped.

    Skipped rows are listed on ``result.skipped`` and announced with a warning that names their ids, so they are
    never silently dropped from (or counted in) an accuracy.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    out = LoadedItems(name=name)
    for i, row in enumerate(rows):
        if limit is not None and len(out) >= limit:
            break
        try:
            rid = row_id(i, row)
        except Exception:  # an id column that is itself broken still gets a usable name
            rid = f"row{i}"
        try:
            out.append(make(i, row))
        except (DataError, KeyError, TypeError, ValueError) as e:
            reason = f"{type(e).__name__}: {e}"
            if on_error == "raise":
                raise DataError(f"{name or 'dataset'} row {rid!r} is malformed ({reason}); fix the row or pass "
                                f"on_error='skip' to drop it (skipped rows are listed on .skipped)") from e
            out.skipped.append((rid, reason))
    if out.skipped:
        warnings.warn(out.summary(), stacklevel=3)
    return out
