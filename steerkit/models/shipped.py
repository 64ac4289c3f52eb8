"""Where an embedded model's trained files live, and its build command line: one description per model.

An embedded model (an organism) ships what steerkit trained as package data (``steerkit/data/<folder>``); an
environment variable points at a build elsewhere; ``python -m <module> build DIR`` rebuilds it and
``python -m <module> evaluate DIR`` re-measures its held-out table.

Example:
    >>> SMALL = ShippedModel(module="steerkit.models.organism", folder="organism", env_var="STEERKIT_ORGANISM_DIR")
    >>> SMALL.build_command("/tmp/o")
    'python -m steerkit.models.organism build /tmp/o'
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from steerkit.resources import packaged


@dataclass(frozen=True)
class ShippedModel:
    """An embedded model's shipped folder, its override variable and its build module."""

    module: str
    folder: str
    env_var: str

    @property
    def shipped_dir(self) -> Path:
        """The shipped build: package data, found wherever steerkit is installed."""
        return packaged("data", self.folder)

    def default_dir(self) -> Path:
        """``$<env_var>`` if set, else :attr:`shipped_dir`."""
        env = os.environ.get(self.env_var)
        return Path(env) if env else self.shipped_dir

    @staticmethod
    def metrics_file(folder: str | Path, n: int | None, build_n: int) -> Path:
        """Where a re-measurement with ``n`` items per set is written: the build's own ``metrics.parquet`` when ``n``
        is the build's (``None`` or ``build_n``), else ``metrics_n<n>.parquet`` beside it, so a re-measurement at
        another size never replaces the record the build wrote (and the docs quote).

        Example:
            >>> ShippedModel.metrics_file("/tmp/o", 1000, 200).name
            'metrics_n1000.parquet'
        """
        return Path(folder) / ("metrics.parquet" if n in (None, build_n) else f"metrics_n{n}.parquet")

    def build_command(self, path: str | Path) -> str:
        """The shell command that builds the model into ``path``."""
        return f"python -m {self.module} build {path}"

    def parser(self, what: str) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser, argparse.ArgumentParser,
                                         argparse._SubParsersAction]:
        """The common command line: ``build [DIR] [--seed] [--fast] [--threads]`` and ``evaluate [DIR] [--n]
        [--threads]``; returns (parser, build, evaluate, subparsers) so a model can add its own options."""
        parser = argparse.ArgumentParser(prog=f"python -m {self.module}")
        sub = parser.add_subparsers(dest="command", required=True)
        build = sub.add_parser("build", help=f"train {what} into DIR")
        build.add_argument("dir", nargs="?", default=str(self.shipped_dir))
        build.add_argument("--seed", type=int, default=0)
        build.add_argument("--fast", action="store_true", help="a few steps of every stage (a smoke test)")
        build.add_argument("--threads", type=int, default=2, help="torch CPU threads (build times are stated for 2)")
        evaluate = sub.add_parser("evaluate", help="re-measure DIR/metrics.parquet (held-out accuracy with CIs); "
                                  "with another --n than the build's, writes DIR/metrics_n<N>.parquet instead")
        evaluate.add_argument("dir", nargs="?", default=str(self.shipped_dir))
        evaluate.add_argument("--n", type=int, default=None, help="items per task (default: the build's own)")
        evaluate.add_argument("--threads", type=int, default=2)
        return parser, build, evaluate, sub
