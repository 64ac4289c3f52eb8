"""Resumable, lossless sweep results: parquet part files under a run folder named by a hash of the configuration.

Layout::

    <root>/<name>-<hash12>/
        config.json                      the full configuration that was hashed (checked on every open)
        parts/part-r<rank>-<time>-<uuid>.parquet   rows of finished units, written atomically (tmp + rename)

A *unit* is one item under one condition: ``(item_id, method, concept, layer)``; its rows are every scope x
strength of that condition (one row for the baselines). Units are buffered and flushed as whole units, so a part
file never holds half a unit; a run killed at any point loses at most the unflushed buffer, which the next run
recomputes. Reading drops duplicate rows (two ranks, or a crash between a part write and a compaction, can only
ever duplicate identical rows), so resuming never duplicates rows. A changed configuration hashes to a new folder;
a folder whose ``config.json`` disagrees with the configuration raises :class:`~steerkit.errors.StoreError`.

Example:
    >>> store = RunStore.open("outputs/sweeps", config, name="organism")
    >>> done = store.done_units()
    >>> store.add(rows); store.flush()
    >>> df = store.load()
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from steerkit.errors import StoreError
from steerkit.sweep.fingerprint import canonical_json, config_hash

UNIT_COLUMNS = ("item_id", "method", "concept", "layer")
ROW_KEY = (*UNIT_COLUMNS, "scope", "alpha")
SORT_COLUMNS = ("item_index", "method", "concept", "layer", "scope", "alpha")
STORE_VERSION = 1


def _slug(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)
    return keep.strip("-") or "run"


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def run_folder(root: str | os.PathLike[str], config: Mapping[str, Any], *, name: str = "run") -> Path:
    """The folder ``<root>/<name>-<hash12>`` of ``config`` (hash: :func:`~steerkit.sweep.fingerprint.config_hash`),
    created with a ``config.json`` recording the configuration; the one run-folder scheme in steerkit (sweeps and
    gap runs).

    Raises :class:`StoreError` when the folder exists with a different ``config.json`` (a truncated-hash
    collision or a hand-edited file): the message says which keys differ.

    Example:
        >>> run_folder("outputs/gap", {"model": "tiny/llava", "n": 20}, name="gap").name
        'gap-9db446340db7'
    """
    digest = config_hash(config)
    path = Path(root) / f"{_slug(name)}-{digest[:12]}"
    path.mkdir(parents=True, exist_ok=True)
    record = {"hash": digest, "store_version": STORE_VERSION, "config": json.loads(canonical_json(config))}
    cfg_file = path / "config.json"
    if cfg_file.exists():
        old = json.loads(cfg_file.read_text())
        if old.get("hash") != digest or old.get("config") != record["config"]:
            differ = sorted(k for k in set(old.get("config", {})) | set(record["config"])
                            if old.get("config", {}).get(k) != record["config"].get(k))
            raise StoreError(
                f"{path} holds results of a different configuration (keys differing: {differ}). Results of "
                "different configurations are never mixed: use another root or name, or delete that folder."
            )
    else:
        _atomic_write_text(cfg_file, json.dumps(record, indent=1, sort_keys=True))
    return path


class RunStore:
    """The on-disk results of one sweep configuration (see the module docstring for the layout).

    Use :meth:`open` to create or reopen the folder for a configuration; :meth:`from_dir` to read an existing one.
    """

    def __init__(self, path: Path, config: Mapping[str, Any], rank: int = 0):
        self.path = Path(path)
        self.config = dict(config)
        self.rank = int(rank)
        self._buffer: list[dict[str, Any]] = []

    # ------------------------------------------------------------------------------------------- opening
    @classmethod
    def open(cls, root: str | os.PathLike[str], config: Mapping[str, Any], *, name: str = "run",
             rank: int = 0) -> RunStore:
        """Create (or reopen) ``<root>/<name>-<hash12>`` for ``config`` (see :func:`run_folder`, whose
        :class:`StoreError` it raises for a folder holding another configuration)."""
        path = run_folder(root, config, name=name)
        (path / "parts").mkdir(parents=True, exist_ok=True)
        return cls(path, config, rank)

    @classmethod
    def from_dir(cls, path: str | os.PathLike[str]) -> RunStore:
        """Open an existing run folder for reading (its configuration comes from ``config.json``)."""
        path = Path(path)
        cfg_file = path / "config.json"
        if not cfg_file.exists():
            raise StoreError(f"{path} is not a sweep run folder (no config.json); pass the folder sweep() printed")
        return cls(path, json.loads(cfg_file.read_text())["config"])

    @property
    def hash(self) -> str:
        """The configuration hash (full hex digest)."""
        return config_hash(self.config)

    # ------------------------------------------------------------------------------------------- writing
    def add(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Buffer the rows of whole finished units (call :meth:`flush` to persist them)."""
        self._buffer.extend(dict(r) for r in rows)

    @property
    def pending(self) -> int:
        """Rows buffered but not yet on disk."""
        return len(self._buffer)

    def flush(self) -> Path | None:
        """Write buffered rows as one part file (atomic rename); returns its path, or None if nothing was buffered."""
        if not self._buffer:
            return None
        df = pd.DataFrame(self._buffer)
        parts = self.path / "parts"
        name = f"part-r{self.rank:03d}-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = parts / f".{name}.tmp"
        df.to_parquet(tmp, index=False)
        os.replace(tmp, parts / name)
        self._buffer.clear()
        return parts / name

    # ------------------------------------------------------------------------------------------- reading
    def part_files(self) -> list[Path]:
        """Finished part files, oldest first (temporary files of a killed write are ignored)."""
        return sorted(p for p in (self.path / "parts").glob("part-*.parquet"))

    def load(self) -> pd.DataFrame:
        """Every stored row (all ranks), duplicates dropped, in a stable order."""
        files = self.part_files()
        if not files:
            return pd.DataFrame()
        try:
            df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
        except Exception as exc:  # noqa: BLE001 - name the bad file
            raise StoreError(f"cannot read the parts of {self.path}: {exc}. Move the unreadable file away and "
                             "rerun: its units will be recomputed") from exc
        df = df.drop_duplicates(subset=[c for c in ROW_KEY if c in df.columns], keep="first")
        order = [c for c in SORT_COLUMNS if c in df.columns]
        return df.sort_values(order, kind="stable").reset_index(drop=True)

    def done_units(self) -> set[tuple[Any, ...]]:
        """The ``(item_id, method, concept, layer)`` units already on disk (plus those buffered)."""
        done: set[tuple[Any, ...]] = set()
        for f in self.part_files():
            df = pd.read_parquet(f, columns=list(UNIT_COLUMNS))
            done |= set(df.itertuples(index=False, name=None))
        done |= {tuple(r[c] for c in UNIT_COLUMNS) for r in self._buffer}
        return done

    def compact(self) -> Path | None:
        """Merge all part files (e.g. of several ranks) into one; safe to interrupt (duplicates are dropped on read)."""
        old = self.part_files()
        if len(old) <= 1:
            return old[0] if old else None
        df = self.load()
        self._buffer = df.to_dict("records")
        merged = self.flush()
        for f in old:
            f.unlink(missing_ok=True)
        return merged


def list_runs(root: str | os.PathLike[str]) -> list[Path]:
    """Run folders under ``root`` (those with a ``config.json``), newest first."""
    root = Path(root)
    if not root.exists():
        return []
    runs = [p for p in root.iterdir() if (p / "config.json").exists()]
    return sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)


class RowSink:
    """Where a sweep's finished units go: a :class:`RunStore` (persisted, resumable) or memory.

    It knows which units are done (on disk, buffered or in memory), so the engine computes only the rest, and it
    flushes part files every ``flush_every`` steered unit groups; :meth:`result` gives the rows as one DataFrame.

    Example:
        >>> sink = RowSink.open("outputs/sweeps", config, name="organism", flush_every=64)
        >>> sink.emit(rows); sink.unit_finished(); sink.flush_if_due()
        >>> df = sink.result()
    """

    def __init__(self, store: RunStore | None = None, flush_every: int = 64):
        self.store = store
        self.flush_every = int(flush_every)
        self.done: set[tuple[Any, ...]] = store.done_units() if store is not None else set()
        self._memory: list[dict[str, Any]] = []
        self._since_flush = 0

    @classmethod
    def open(cls, root: str | os.PathLike[str] | None, config: Mapping[str, Any], *, name: str = "run",
             rank: int = 0, flush_every: int = 64) -> RowSink:
        """A sink into ``RunStore.open(root, config, ...)``, or into memory when ``root`` is None."""
        store = RunStore.open(root, config, name=name, rank=rank) if root is not None else None
        return cls(store, flush_every)

    def emit(self, rows: list[dict[str, Any]]) -> None:
        """Take the rows of whole finished units."""
        for r in rows:
            self.done.add(tuple(r[c] for c in UNIT_COLUMNS))
        if self.store is not None:
            self.store.add(rows)
        else:
            self._memory.extend(rows)

    @property
    def rows(self) -> int:
        """Rows held and not yet on disk (all rows when in memory)."""
        return self.store.pending if self.store is not None else len(self._memory)

    def unit_finished(self) -> None:
        """Count one emitted steered unit group towards the next flush."""
        self._since_flush += 1

    def flush_if_due(self) -> None:
        """Flush when ``flush_every`` unit groups were emitted since the last flush."""
        if self.store is not None and self._since_flush >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Persist buffered rows (no-op in memory)."""
        if self.store is not None:
            self.store.flush()
            self._since_flush = 0

    def result(self) -> pd.DataFrame:
        """Every row of the run: the whole store (all ranks, ``attrs["run_dir"]`` set), or the in-memory rows."""
        if self.store is not None:
            df = self.store.load()
            df.attrs["run_dir"] = str(self.store.path)
            return df
        df = pd.DataFrame(self._memory)
        df = df.sort_values(list(SORT_COLUMNS), kind="stable")
        return df.reset_index(drop=True)
