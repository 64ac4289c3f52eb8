"""Command line: ``python -m steerkit.models.organism build [DIR] [--seed N] [--fast] [--threads N]``.

Builds the organism (default DIR: the shipped steerkit/data/organism), re-measures a build's held-out accuracy table with
``evaluate [DIR]`` (rewrites DIR/metrics.parquet and prints it) and rewrites the organism concept corpora with
``concepts [DIR]`` (default steerkit/data/concepts/organism).
"""

from __future__ import annotations

import argparse
import os

import torch

from steerkit.models.organism import SHIPPED_DIR, build, remeasure, write_concept_corpora


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run it."""
    parser = argparse.ArgumentParser(prog="python -m steerkit.models.organism")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="train the organism (text LM + MLLM) into DIR")
    b.add_argument("dir", nargs="?", default=str(SHIPPED_DIR))
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--fast", action="store_true", help="a few steps only (smoke test)")
    b.add_argument("--threads", type=int, default=2, help="torch CPU threads (the budget is stated for 2)")
    e = sub.add_parser("evaluate", help="re-measure DIR/metrics.parquet (held-out accuracy with CIs)")
    e.add_argument("dir", nargs="?", default=str(SHIPPED_DIR))
    e.add_argument("--n", type=int, default=None, help="items per task (default: the build's eval_n)")
    e.add_argument("--threads", type=int, default=2)
    c = sub.add_parser("concepts", help="write steerkit/data/concepts/organism/<concept>.jsonl")
    c.add_argument("dir", nargs="?", default=str(SHIPPED_DIR.parent / "concepts" / "organism"))
    c.add_argument("--n", type=int, default=240)
    c.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "build":
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        torch.set_num_threads(args.threads)
        build(args.dir, seed=args.seed, fast=args.fast)
    elif args.command == "evaluate":
        torch.set_num_threads(args.threads)
        print(remeasure(args.dir, n=args.n).to_string())
    else:
        for path in write_concept_corpora(args.dir, n=args.n, seed=args.seed):
            print(path)


if __name__ == "__main__":
    main()
