"""Benchmark: the paper's sweep protocol vs steerkit's engine, on the same items and cells.

Paper protocol (arXiv 2505.14071's public code): for every cell (layer, strength, scope) and every item, batch 1,
add the vector with a prefill hook and ``generate`` one token greedily, then parse the letter.
steerkit: :func:`steerkit.sweep.sweep` -- one capture forward per item batch, then per (vector, layer) one forward
over rows that repeat the items for all strengths x scopes, replaying only layers l.. .

Reported: ms per (item x cell) for both, their ratio, agreement of the greedy answers per item and cell, and the
engine's time over the FLOP floor of the work it cannot avoid (layers l..L-1 over the prompt plus one logit row,
counted from the config's shapes, at the matmul throughput measured on the same device and dtype).

    # CPU, the organism (or tiny/llava until it exists)
    .venv/bin/python benchmarks/sweep_bench.py --model steerkit/organism --n-items 16
    # GPU, PaliGemma2-3B shapes with random weights (no download)
    python benchmarks/sweep_bench.py --shape paligemma2-3b --device cuda --dtype bfloat16 --n-items 64 \\
        --layers 5 8 11 14 17 20 --alphas 0.1 0.2 0.4 0.6 0.8 1.0 --scopes image

Results append to ``benchmarks/results/sweep_bench.jsonl`` (one JSON object per run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]

# PaliGemma2-3B-pt-224: Gemma2-2B text + SigLIP-So400m/14 at 224 px (256 image tokens).
PALIGEMMA2_3B = dict(
    text=dict(model_type="gemma2", hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
              num_attention_heads=8, num_key_value_heads=4, head_dim=256, vocab_size=257216,
              query_pre_attn_scalar=256, sliding_window=4096, final_logit_softcapping=30.0,
              attn_logit_softcapping=50.0),
    vision=dict(model_type="siglip_vision_model", hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
                num_attention_heads=16, image_size=224, patch_size=14, projection_dim=2304),
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_throughput(device: torch.device, dtype: torch.dtype, n: int | None = None, reps: int = 5) -> float:
    """Measured FLOP/s of a square matmul on ``device`` in ``dtype`` (the floor's denominator)."""
    n = n or (8192 if device.type == "cuda" else 1024)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    _sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def layer_flops(cfg: Any, seq: int) -> float:
    """Forward FLOPs of one decoder layer over ``seq`` tokens (gated MLP, GQA, causal attention)."""
    d, ff = cfg.hidden_size, cfg.intermediate_size
    h, kv = cfg.num_attention_heads, getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    hd = getattr(cfg, "head_dim", None) or d // h
    linear = d * h * hd + 2 * d * kv * hd + h * hd * d + 3 * d * ff
    attention = 2 * h * hd * seq * (seq + 1) / 2 * 2  # QK^T and AV over the causal half
    return 2 * seq * linear + attention


def floor_flops(cfg: Any, seq: int, layer: int) -> float:
    """FLOPs a steered cell cannot avoid: layers ``layer``..L-1 over the prompt and one row of logits."""
    return (cfg.num_hidden_layers - layer) * layer_flops(cfg, seq) + 2 * cfg.hidden_size * cfg.vocab_size


def build_paligemma2_3b(device: torch.device, dtype: torch.dtype, text_layers: int | None = None,
                        vision_layers: int | None = None) -> tuple[Any, Any]:
    """A random-weight PaliGemma2-3B-shaped model built directly on ``device``, and a processor for it.

    The tokenizer is steerkit's tiny in-process one (no download); its ids fit the 257k vocabulary.
    ``text_layers``/``vision_layers`` shrink the depth for a CPU smoke test of this code path.
    """
    from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor
    from transformers import SiglipImageProcessorPil

    from steerkit.models.adapters import attach_processor
    from steerkit.models.tiny import tiny_model

    tok = tiny_model("paligemma")[1].tokenizer
    text, vision = dict(PALIGEMMA2_3B["text"]), dict(PALIGEMMA2_3B["vision"])
    if text_layers:
        text["num_hidden_layers"] = text_layers
    if vision_layers:
        vision["num_hidden_layers"] = vision_layers
    ip = SiglipImageProcessorPil(size={"height": 224, "width": 224})
    ip.image_seq_length = 256
    processor = PaliGemmaProcessor(image_processor=ip, tokenizer=tok)
    cfg = PaliGemmaConfig(text_config=dict(text, pad_token_id=tok.pad_token_id), vision_config=vision,
                          image_token_index=tok.convert_tokens_to_ids("<image>"), projection_dim=2304,
                          hidden_size=2304, pad_token_id=tok.pad_token_id)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = PaliGemmaForConditionalGeneration(cfg)
    finally:
        torch.set_default_dtype(old)
    attach_processor(model, processor)
    return model.eval(), processor


def load(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> tuple[Any, Any, str]:
    """The benchmarked model and processor, and a name for it."""
    if args.shape == "paligemma2-3b":
        model, processor = build_paligemma2_3b(device, dtype, args.text_layers, args.vision_layers)
        name = "paligemma2-3b-shape (random)" + (f" {args.text_layers}L" if args.text_layers else "")
        return model, processor, name
    from steerkit.models.loading import load_model

    model, processor = load_model(args.model, dtype=dtype, device=device)
    return model, processor, args.model


def make_items(model_name: str, n: int, seed: int) -> list[Any]:
    """Organism world items for the organism, synthetic CV-Bench items otherwise."""
    if model_name.startswith("steerkit/organism"):
        from steerkit.models.organism import world_items

        per = max(1, n // 2)
        return (world_items("Count", per, seed=seed) + world_items("Relation", n - per, seed=seed))[:n]
    from steerkit.tasks.synth import generate

    return generate(["Count", "Relation"], n_per_task=(n + 1) // 2, seed=seed, size=224)[:n]


def paper_protocol(model: Any, processor: Any, items: list[Any], vector: dict[int, torch.Tensor], cells: list[tuple],
                   device: torch.device) -> tuple[float, dict[tuple, str]]:
    """Seconds for every item x cell with generate(max_new_tokens=1) at batch 1, and the parsed answers."""
    from steerkit.models.adapters import adapter_for
    from steerkit.steer import steer
    from steerkit.tasks.scoring import build_prompt, item_image, parse_answer

    adapter = adapter_for(model)
    tok = adapter.tokenizer(processor)
    inputs = [adapter.build_inputs(processor, [build_prompt(it)], [item_image(it)], device=device) for it in items]
    answers: dict[tuple, str] = {}

    def one(inp: Any, layer: int, alpha: float, scope: str) -> str:
        with steer(model, {layer: vector[layer]}, alpha=alpha, tokens=scope, when="prefill"):
            out = model.generate(**inp, max_new_tokens=1, do_sample=False, pad_token_id=tok.pad_token_id)
        return tok.decode(out[0, inp["input_ids"].shape[1]:], skip_special_tokens=True)

    with torch.no_grad():
        one(inputs[0], *cells[0])  # warm-up
        _sync(device)
        t = time.perf_counter()
        for cell in cells:
            for it, inp in zip(items, inputs):
                answers[(it.id, *cell)] = parse_answer(one(inp, *cell), it.choices) or ""
        _sync(device)
    return time.perf_counter() - t, answers


def engine(model: Any, processor: Any, items: list[Any], vector: dict[int, torch.Tensor], layers: list[int],
           alphas: list[float], scopes: list[str], batch_size: int, max_rows: int,
           device: torch.device) -> tuple[float, dict[tuple, str], str]:
    """Seconds for the same cells through :func:`steerkit.sweep.sweep`, its greedy answers, and its mode."""
    from steerkit.sweep.engine import sweep

    kw = dict(batch_size=batch_size, max_rows=max_rows, prompt_baseline=False, progress=False)
    sweep(model, processor, items[:2], {("bench", "random"): vector}, layers[:1], alphas[:1], scopes[:1], **kw)
    _sync(device)
    t = time.perf_counter()
    df = sweep(model, processor, items, {("bench", "random"): vector}, layers, alphas, scopes, **kw)
    _sync(device)
    seconds = time.perf_counter() - t
    steered = df[df.method == "bench"]
    answers = {(r.item_id, int(r.layer), float(r.alpha), r.scope): r.greedy_pred for r in steered.itertuples()}
    return seconds, answers, str(df.attrs.get("mode"))


def main() -> None:
    """Command line; see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="steerkit/organism", help="load_model() name (ignored with --shape)")
    ap.add_argument("--shape", choices=["paligemma2-3b"], default=None, help="random weights of a real shape")
    ap.add_argument("--text-layers", type=int, default=None, help="shrink --shape depth (CPU smoke test only)")
    ap.add_argument("--vision-layers", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--n-items", type=int, default=16)
    ap.add_argument("--layers", type=int, nargs="+", default=None, help="default: every layer but the last")
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.1, 0.2, 0.4, 0.6, 0.8, 1.0])
    ap.add_argument("--scopes", nargs="+", default=["image"])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-rows", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-paper", action="store_true", help="time the engine only (the protocol is slow)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sweep_bench.jsonl")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    if not torch.cuda.is_available() and device.type == "cuda":
        raise SystemExit("--device cuda but CUDA is not available here")
    from steerkit.models.adapters import adapter_for
    from steerkit.models.tiny import FAMILIES  # noqa: F401 - import check for the tiny fallback
    from steerkit.sweep.replay import capture

    model, processor, name = load(args, device, dtype)
    adapter = adapter_for(model)
    n_layers, d = adapter.num_layers(model), adapter.hidden_size(model)
    layers = args.layers or list(range(n_layers - 1))
    items = make_items(name, args.n_items, args.seed)
    g = torch.Generator().manual_seed(args.seed)
    # a vector of the size of typical activations, so that answers do change across cells
    from steerkit.models.adapters import text_config
    from steerkit.tasks.scoring import build_prompt, item_image

    probe_inputs = adapter.build_inputs(processor, [build_prompt(items[0])], [item_image(items[0])], device=device)
    with torch.no_grad():
        cap = capture(model, probe_inputs, layers)
    seq = int(probe_inputs["input_ids"].shape[1])
    scale = float(torch.stack([cap.hidden[l].float().norm(dim=-1).mean() for l in layers]).mean())
    vector = {l: (torch.randn(d, generator=g) / d ** 0.5 * scale).to(dtype) for l in range(n_layers)}
    cells = [(l, a, s) for l in layers for a in args.alphas for s in args.scopes]
    n_units = len(items) * len(cells)

    t_engine, ans_engine, mode = engine(model, processor, items, vector, layers, args.alphas, args.scopes,
                                        args.batch_size, args.max_rows, device)
    result: dict[str, Any] = {
        "model": name, "device": args.device, "dtype": args.dtype, "threads": args.threads,
        "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "n_items": len(items), "n_cells": len(cells), "layers": layers, "alphas": args.alphas, "scopes": args.scopes,
        "prompt_tokens": seq, "batch_size": args.batch_size, "max_rows": args.max_rows, "engine_mode": mode,
        "engine_ms_per_item_cell": 1000 * t_engine / n_units, "engine_seconds": t_engine,
    }
    tcfg = text_config(model.config)
    flops = sum(floor_flops(tcfg, seq, l) for l in layers) / len(layers)
    peak = matmul_throughput(device, dtype)
    result.update({"floor_gflop_per_item_cell": flops / 1e9, "matmul_tflops": peak / 1e12,
                   "floor_ms_per_item_cell": 1000 * flops / peak})
    result["engine_over_floor"] = result["engine_ms_per_item_cell"] / result["floor_ms_per_item_cell"]
    if not args.skip_paper:
        t_paper, ans_paper = paper_protocol(model, processor, items, vector, cells, device)
        same = sum(ans_paper[k] == ans_engine.get(k) for k in ans_paper)
        result.update({"paper_ms_per_item_cell": 1000 * t_paper / n_units, "paper_seconds": t_paper,
                       "speedup": t_paper / t_engine, "answers_agree": same / len(ans_paper),
                       "distinct_answers": len(set(ans_paper.values()))})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as f:
        f.write(json.dumps(result) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
