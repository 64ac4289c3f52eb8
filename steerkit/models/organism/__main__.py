"""Command line: ``python -m steerkit.models.organism build [DIR] [--seed N] [--fast] [--threads N]``.

Builds the organism (default DIR: the shipped steerkit/data/organism), re-measures a build's held-out accuracy table with
``evaluate [DIR]`` (rewrites DIR/metrics.parquet and prints it) and rewrites the organism concept corpora with
``concepts [DIR]`` (default steerkit/data/concepts/organism).
"""

from __future__ import annotations

import os

import torch

from steerkit.models.organism import SHIPPED, SHIPPED_DIR, build, remeasure, write_concept_corpora


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run it."""
    parser, _, _, sub = SHIPPED.parser("the organism (text LM + MLLM)")
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
