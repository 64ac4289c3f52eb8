"""``python -m steerkit.models.organism_smol build DIR [--seed S] [--device cuda] [--fast]`` trains the SmolLM2
organism into DIR (resuming a killed build there); ``evaluate DIR [--n N]`` re-measures its ability table."""

from __future__ import annotations

import torch


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (see the module docstring)."""
    from steerkit.models.organism_smol import SHIPPED, build
    from steerkit.models.organism_smol.profile import PROFILE

    parser, b, _, _ = SHIPPED.parser("the SmolLM2 organism (resumes a killed build in DIR)")
    b.add_argument("--device", default="cpu", help="cpu, or cuda to run the same recipe on a GPU")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.command == "build":
        build(args.dir, seed=args.seed, fast=args.fast, device=args.device)
    else:
        print(PROFILE.evaluate(args.dir, args.n).to_string(index=False))


if __name__ == "__main__":
    main()
