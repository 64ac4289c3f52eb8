"""The GPU check: one command that measures, on one H100/H200, whether the full CV-Bench sweep fits in 15 minutes.

On PaliGemma2-3B shapes with random bf16 weights (``sweep_bench.SHAPES["paligemma2-3b"]``, built on the device, no
download) and synthetic CV-Bench items (all four tasks, 224 px images), in one run:

1. **letter sweep** -- :func:`steerkit.sweep.sweep` over every item x 16 layers (5-20) x 6 strengths x 3 scopes
   with one random vector of activation size: ``engine_ms_per_item_cell``.
2. **FLOP floor** -- the work a steered cell cannot avoid (layers l..L-1 over the prompt and one logit row), at the
   matmul throughput measured on the same device and dtype in this run: ``floor_ms_per_item_cell``.
3. **paper protocol** -- ``sweep_bench.run_generate_protocol`` (batch 1, the processor per item, steered prefill,
   ``generate(max_new_tokens=20)``, strict parsing) on a subsample of items x cells, and its 1-token lower bound.
   Random weights never emit EOS, so the 20-token time is an upper bound of the paper loop on a trained model.
4. **generation** -- :func:`steerkit.sweep.generate.steered_generate` against per-item ``generate()`` under
   ``steerkit.steer`` on a subsample of items x all strengths x all scopes at one layer (open-answer prompts: the
   item's question without the letter instruction), greedy, texts compared exactly.
5. **extrapolation** -- the full CV-Bench grid (2,638 items x 16 layers x 6 strengths x 3 scopes = 759,744 item x
   cell units) at the measured ``engine_ms_per_item_cell``, and whether it is <= 15 minutes; also scaled by the FLOP
   floor from the check's prompt length to ``--reference-prompt-tokens`` (the offline tokenizer makes the check's
   prompts longer than CV-Bench's under PaliGemma's tokenizer).

The JSON file (``--out``) is rewritten after every phase (``complete: false`` until the end), so a run cut short
still leaves what it measured. ``--tiny`` runs the same code on CPU with toy shapes in seconds (the test)::

    python benchmarks/gpu_check.py                                   # one H100/H200, a few minutes
    .venv/bin/python benchmarks/gpu_check.py --tiny --out /tmp/gpu_check_tiny.json   # CPU, seconds
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sweep_bench as sb  # noqa: E402  (benchmarks/ is not a package)

ROOT = Path(__file__).resolve().parents[1]
CHECK_VERSION = 1
# The full CV-Bench grid the target is about: 2,638 items (Count 788, Relation 650, Depth 600,
# Distance 600) x layers 5-20 x 6 strengths x 3 scopes.
FULL_GRID = dict(items=2638, layers=16, strengths=6, scopes=3)
TARGET_MINUTES = 15.0
# steerkit's offline tokenizer spends 2.3-3.1 tokens per word of a CV-Bench prompt (measured), a production
# tokenizer far fewer, so the check's prompts are longer than the real ones; the extrapolation is also given scaled
# by the FLOP floor to this assumed real length (256 image tokens + ~60 text tokens; assumed, not measured).
REFERENCE_PROMPT_TOKENS = 320
T = TypeVar("T")

# defaults: (full check on a GPU, --tiny on CPU)
DEFAULTS: dict[str, tuple[Any, Any]] = {
    "shape": ("paligemma2-3b", "paligemma2-tiny"),
    "device": ("cuda", "cpu"),
    "dtype": ("bfloat16", "float32"),
    "n_items": (64, 4),
    "layers": (list(range(5, 21)), [1, 2]),
    "alphas": ([0.1, 0.2, 0.4, 0.6, 0.8, 1.0], [0.5, 1.0]),
    "batch_size": (16, 2),
    "max_rows": (288, 64),
    "paper_items": (8, 2),
    "paper_cells": (3, 2),
    "gen_items": (4, 2),
    "gen_max_new_tokens": (16, 6),
    "gen_batch_size": (144, 64),
    "matmul_n": (8192, 256),
}


def spread(seq: Sequence[T], k: int) -> list[T]:
    """``k`` elements of ``seq`` evenly spaced from its first to its last (all of it when ``k`` >= its length).

    Example:
        >>> spread(list(range(10)), 3)
        [0, 4, 9]
    """
    if k >= len(seq):
        return list(seq)
    if k == 1:
        return [seq[0]]
    return [seq[round(j * (len(seq) - 1) / (k - 1))] for j in range(k)]


def paper_cells(layers: Sequence[int], alphas: Sequence[float], scopes: Sequence[str],
                k: int) -> list[tuple[int, float, str]]:
    """``k`` cells for the paper-protocol subsample: layers and strengths spread over the grid, scopes in turn."""
    ls, als = spread(layers, k), spread(alphas, k)
    return [(ls[j % len(ls)], float(als[j % len(als)]), scopes[j % len(scopes)]) for j in range(k)]


def extrapolate(ms_per_item_cell: float, grid: dict[str, int] = FULL_GRID) -> float:
    """Seconds for the whole ``grid`` (items x layers x strengths x scopes) at ``ms_per_item_cell``."""
    return ms_per_item_cell * math.prod(grid.values()) / 1000


def floor_per_cell(text_cfg: Any, seq: int, layers: Sequence[int]) -> float:
    """FLOPs a steered (item x cell) cannot avoid at a ``seq``-token prompt, averaged over ``layers``."""
    return sum(sb.floor_flops(text_cfg, seq, l) for l in layers) / len(layers)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; see the module docstring. Unset options take the full or the ``--tiny`` default."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="toy shapes on CPU, a handful of items (seconds)")
    ap.add_argument("--shape", choices=list(sb.SHAPES), default=None)
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None)
    ap.add_argument("--n-items", type=int, default=None, help="items of the letter sweep (full: 64)")
    ap.add_argument("--layers", type=int, nargs="+", default=None, help="full: 5..20 (16 layers)")
    ap.add_argument("--alphas", type=float, nargs="+", default=None)
    ap.add_argument("--scopes", nargs="+", default=["image", "text", "both"], choices=["image", "text", "both"])
    ap.add_argument("--batch-size", type=int, default=None, help="sweep: items per capture forward")
    ap.add_argument("--max-rows", type=int, default=None, help="sweep: rows per replay forward")
    ap.add_argument("--paper-items", type=int, default=None, help="paper protocol subsample: items")
    ap.add_argument("--paper-cells", type=int, default=None, help="paper protocol subsample: cells")
    ap.add_argument("--gen-items", type=int, default=None, help="generation subsample: items (x all cells of a layer)")
    ap.add_argument("--gen-layer", type=int, default=None, help="generation: the layer (default: middle of --layers)")
    ap.add_argument("--gen-max-new-tokens", type=int, default=None)
    ap.add_argument("--gen-batch-size", type=int, default=None, help="generation: rows per generate call")
    ap.add_argument("--matmul-n", type=int, default=None, help="side of the square matmul timed for the floor")
    ap.add_argument("--reference-prompt-tokens", type=int, default=REFERENCE_PROMPT_TOKENS,
                    help="prompt length the extrapolation is also scaled to (by the FLOP floor)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_check.json")
    args = ap.parse_args(argv)
    for key, (full, tiny) in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, tiny if args.tiny else full)
    return args


def make_items(n: int, seed: int) -> list[Any]:
    """``n`` synthetic CV-Bench items over its four tasks (224 px images, CV-Bench prompts)."""
    from steerkit.tasks.synth import TASKS, generate

    per = -(-n // len(TASKS))
    by_task = generate(TASKS, n_per_task=per, seed=seed, size=224)
    # interleave the tasks so that any prefix (and any spread subsample) mixes prompt lengths
    blocks = [by_task[t * per:(t + 1) * per] for t in range(len(TASKS))]
    return [b[i] for i in range(per) for b in blocks if i < len(b)][:n]


class Check:
    """The result dict, written to ``path`` after every phase with the seconds each phase took."""

    def __init__(self, path: Path, result: dict[str, Any]) -> None:
        self.path, self.result, self.start = path, result, time.perf_counter()
        self.result.update(phase_seconds={}, complete=False)

    def phase(self, name: str, t0: float, fields: dict[str, Any]) -> None:
        """Record phase ``name`` (started at ``t0``) and its fields, and rewrite the file."""
        self.result["phase_seconds"][name] = time.perf_counter() - t0
        self.result.update(fields)
        self.write()

    def write(self) -> None:
        """Rewrite the JSON file with everything measured so far."""
        self.result["wall_seconds"] = time.perf_counter() - self.start
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.result, indent=1) + "\n")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the check, write ``--out`` and print the extrapolation; returns the result dict."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but CUDA is not available here; on a CPU run the code path with --tiny")
    from steerkit import adapter_for
    from steerkit.models.adapters import text_config
    from steerkit.tasks.scoring import build_prompt, item_image

    progress = not args.no_progress
    check = Check(args.out, {
        "check_version": CHECK_VERSION, "tiny": args.tiny, "shape": args.shape, "weights": "random",
        "device": str(device), "dtype": args.dtype, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu": platform.processor() or platform.machine(),
    })

    t0 = time.perf_counter()
    model, processor = sb.build_paligemma_shape(args.shape, device, dtype)
    adapter = adapter_for(model)
    n_layers, d = adapter.num_layers(model), adapter.hidden_size(model)
    items = make_items(args.n_items, args.seed)
    lengths = [sb.prompt_tokens(adapter, processor, build_prompt(it), item_image(it)) for it in items]
    probe = adapter.build_inputs(processor, [build_prompt(items[0])], [item_image(items[0])], device=device)
    scale = sb.activation_scale(model, probe, args.layers)
    g = torch.Generator().manual_seed(args.seed)
    vector = {l: (torch.randn(d, generator=g) / d ** 0.5 * scale).to(dtype) for l in range(n_layers)}
    cells = [(l, float(a), s) for l in args.layers for a in args.alphas for s in args.scopes]
    n_units = len(items) * len(cells)
    check.phase("build", t0, {
        "text_layers": n_layers, "hidden_size": d, "n_items": len(items), "tasks": sorted({it.task for it in items}),
        "prompt_tokens_mean": sum(lengths) / len(lengths), "prompt_tokens_min": min(lengths),
        "prompt_tokens_max": max(lengths), "layers": args.layers, "alphas": args.alphas, "scopes": args.scopes,
        "n_cells": len(cells), "vector_norm": scale,
    })

    t0 = time.perf_counter()
    eng = sb.run_engine(model, processor, items, vector, args.layers, args.alphas, args.scopes, args.batch_size,
                        args.max_rows, device)
    engine_ms = 1000 * eng.seconds / n_units
    check.phase("letter_sweep", t0, {
        "batch_size": args.batch_size, "max_rows": args.max_rows, "engine_mode": eng.mode,
        "engine_seconds": eng.seconds, "engine_ms_per_item_cell": engine_ms,
        "engine_excludes_last_prompt_token": eng.excludes_last_prompt_token,
    })

    t0 = time.perf_counter()
    tcfg = text_config(model.config)
    seq = sum(lengths) / len(lengths)
    flops = floor_per_cell(tcfg, round(seq), args.layers)
    peak = sb.matmul_throughput(device, dtype, n=args.matmul_n)
    floor_ms = 1000 * flops / peak
    check.phase("floor", t0, {
        "matmul_n": args.matmul_n, "matmul_tflops": peak / 1e12, "floor_gflop_per_item_cell": flops / 1e9,
        "floor_ms_per_item_cell": floor_ms, "engine_over_floor": engine_ms / floor_ms,
    })

    t0 = time.perf_counter()
    p_items = spread(items, args.paper_items)
    p_cells = paper_cells(args.layers, args.alphas, args.scopes, args.paper_cells)
    p_units = len(p_items) * len(p_cells)
    paper = sb.run_generate_protocol(model, processor, p_items, vector, p_cells, device,
                                     max_new_tokens=sb.PAPER_MAX_NEW_TOKENS, processor_per_item=True,
                                     progress=progress, desc="paper protocol")
    low = sb.run_generate_protocol(model, processor, p_items, vector, p_cells, device, max_new_tokens=1,
                                   processor_per_item=False, progress=progress, desc="paper 1-token lower bound")
    paper_ms, low_ms = 1000 * paper.seconds / p_units, 1000 * low.seconds / p_units
    stopped = sum(paper.stopped_at_eos.values()) / p_units
    mean_new = sum(paper.new_tokens.values()) / p_units
    check.phase("paper_protocol", t0, {
        "paper_items": [it.id for it in p_items], "paper_cells": p_cells,
        "paper_max_new_tokens": sb.PAPER_MAX_NEW_TOKENS, "paper_processor_per_item": True,
        "paper_ms_per_item_cell": paper_ms, "paper_1tok_lower_bound_ms_per_item_cell": low_ms,
        "paper_stopped_at_eos": stopped, "paper_mean_new_tokens": mean_new,
        "paper_time_is_upper_bound": stopped < 1.0, "paper_time_note": sb.eos_note(stopped, mean_new),
        "engine_speedup_vs_paper": paper_ms / engine_ms,
        "engine_speedup_vs_paper_1tok_lower_bound": low_ms / engine_ms,
        "answers_agree": sb.agreement(paper.answers, eng.letters),
        "paper_unparsed": sum(not v for v in paper.answers.values()) / p_units,
    })

    t0 = time.perf_counter()
    gen_layer = args.gen_layer if args.gen_layer is not None else args.layers[len(args.layers) // 2]
    g_items = spread(items, args.gen_items)
    prompts, images, kind = sb.generation_prompts(f"{args.shape}-shape", g_items, len(g_items), args.seed)
    rows = [(i, float(a), s) for i in range(len(prompts)) for a in args.alphas for s in args.scopes]
    gen = sb.run_generation(model, processor, prompts, images, vector, gen_layer, rows, device,
                            max_new_tokens=args.gen_max_new_tokens, batch_size=args.gen_batch_size,
                            progress=progress)
    gen_fields = sb.generation_fields(gen, rows)
    check.phase("generation", t0, {
        "gen_prompt": kind, "gen_items": len(prompts), "gen_layer": gen_layer,
        "gen_max_new_tokens": args.gen_max_new_tokens, "gen_batch_size": args.gen_batch_size, "gen_when": "prefill",
        "gen_mode": "replay", "gen_excludes_last_prompt_token": True, **gen_fields,
    })

    units = math.prod(FULL_GRID.values())
    full_s = extrapolate(engine_ms)
    # cost scales with the prompt about as the floor does: the same run's cost at the assumed real prompt length
    to_ref = floor_per_cell(tcfg, args.reference_prompt_tokens, args.layers) / flops
    ref_s = full_s * to_ref
    check.result.update({
        "full_grid": dict(FULL_GRID, cells=units // FULL_GRID["items"], item_cells=units),
        "extrapolated_full_grid_s": full_s, "extrapolated_full_grid_min": full_s / 60,
        "target_min": TARGET_MINUTES, "meets_target": full_s <= TARGET_MINUTES * 60,
        "reference_prompt_tokens": args.reference_prompt_tokens, "floor_scale_to_reference": to_ref,
        "extrapolated_full_grid_s_at_reference_length": ref_s,
        "meets_target_at_reference_length": ref_s <= TARGET_MINUTES * 60,
        "extrapolated_floor_s": extrapolate(floor_ms),
        "extrapolated_paper_s": extrapolate(paper_ms),
        "extrapolated_paper_1tok_lower_bound_s": extrapolate(low_ms),
        "extrapolated_gen_engine_s": extrapolate(gen_fields["gen_engine_ms_per_item_cell"]),
        "extrapolated_gen_per_item_s": extrapolate(gen_fields["gen_per_item_ms_per_item_cell"]),
        "loadavg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "complete": True,
    })
    check.write()
    r = check.result
    print(f"letter sweep: {engine_ms:.3f} ms per item x cell ({len(items)} items x {len(cells)} cells, "
          f"{r['engine_over_floor']:.1f}x the floor of {floor_ms:.3f} ms; paper protocol {paper_ms:.1f} ms, "
          f"{r['engine_speedup_vs_paper']:.1f}x)")
    print(f"generation: {gen_fields['gen_speedup']:.1f}x over per-item generate, outputs equal: "
          f"{gen_fields['gen_outputs_equal']} ({gen_fields['gen_rows_equal_fraction']:.0%} of {len(rows)} rows)")
    print(f"full CV-Bench grid ({units:,} item x cell units): {full_s / 60:.1f} min extrapolated -> "
          f"{'meets' if r['meets_target'] else 'misses'} the {TARGET_MINUTES:.0f}-minute target "
          f"at {seq:.0f}-token prompts; {ref_s / 60:.1f} min scaled to {args.reference_prompt_tokens}-token "
          f"prompts -> {'meets' if r['meets_target_at_reference_length'] else 'misses'} "
          f"(this run: {r['wall_seconds']:.0f} s; written to {args.out})")
    return r


if __name__ == "__main__":
    main()
