"""``python -m steerkit.models.organism_smol build DIR [--seed S] [--device cuda] [--fast]`` trains the SmolLM2
organism into DIR (resuming a killed build there); ``evaluate DIR [--n N]`` re-measures its ability table."""

from __future__ import annotations

import argparse

import torch


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (see the module docstring)."""
    from steerkit.models.organism_smol import SHIPPED_DIR, build
    from steerkit.models.organism_smol.profile import PROFILE

    parser = argparse.ArgumentParser(prog="python -m steerkit.models.organism_smol")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="train the SmolLM2 organism (resumes a killed build in DIR)")
    b.add_argument("dir", nargs="?", default=str(SHIPPED_DIR))
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--device", default="cpu")
    b.add_argument("--fast", action="store_true", help="a few steps of every stage (a smoke test)")
    b.add_argument("--threads", type=int, default=None)
    e = sub.add_parser("evaluate", help="re-measure DIR's held-out ability table (metrics.parquet)")
    e.add_argument("dir", nargs="?", default=str(SHIPPED_DIR))
    e.add_argument("--n", type=int, default=200)
    args = parser.parse_args(argv)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    if args.command == "build":
        build(args.dir, seed=args.seed, fast=args.fast, device=args.device)
    else:
        print(PROFILE.evaluate(args.dir, args.n).to_string(index=False))


if __name__ == "__main__":
    main()
