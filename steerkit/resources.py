"""Files shipped inside the steerkit package (package data), found with :mod:`importlib.resources`.

The organism's trained weights (``steerkit/data/organism``) and the concept corpora (``steerkit/data/concepts``)
are package data: they sit next to the code in a checkout, an editable install and an installed wheel alike, so
nothing depends on where the repository is. pyproject.toml's ``[tool.setuptools.package-data]`` lists them.

Example:
    >>> packaged("data", "concepts", "counting.jsonl").name
    'counting.jsonl'
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from steerkit.errors import DataError


def packaged(*parts: str, must_exist: bool = False) -> Path:
    """The file-system path of ``steerkit/<parts...>`` in the installed package.

    With ``must_exist=True`` a missing path raises :class:`~steerkit.errors.DataError` naming the fix; by default the
    path is returned as is, because some are also written to (``python -m steerkit.models.organism build`` fills
    ``steerkit/data/organism``) and their readers raise errors that name the build command.
    Raises :class:`~steerkit.errors.DataError` as well when steerkit is imported from an archive (a zipped egg):
    model loaders need real folders.
    """
    root = importlib.resources.files("steerkit")
    if not isinstance(root, Path):  # a zip or other non-file-system loader: from_pretrained needs real paths
        raise DataError(f"steerkit is imported from {root!r}, not from a folder; install it unzipped "
                        "(`pip install steerkit` or `pip install -e .`) so its package data are files")
    path = root.joinpath(*parts)
    if must_exist and not path.exists():
        raise DataError(f"steerkit's package data {'/'.join(parts)} is missing from {root}; reinstall steerkit from "
                        "a wheel built with its package data (pyproject.toml [tool.setuptools.package-data]) or "
                        "from a full checkout")
    return path
