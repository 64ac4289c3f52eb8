"""Benchmark: the textual-steering paper's evaluation protocol vs steerkit's sweep engine, same items and cells.

Three ways of scoring every item x cell (layer, strength, scope) with one steering vector:

``paper`` -- the paper's public evaluation loop (arXiv 2505.14071), as steerkit reads it: for every cell and every
    item, batch 1, the processor is called on (image, prompt) inside the loop, the vector is added during the
    prefill only (``steerkit.steer(..., when="prefill")``), ``generate(max_new_tokens=20, do_sample=False)`` runs
    until EOS or 20 new tokens, and the generated text is normalised strictly (:func:`strict_letter`; anything but
    a bare letter label is wrong). Its text/both masks leave out the last prompt token
    (``steer(..., exclude_last_prompt_token=True)``).
``paper_1tok_lower_bound`` -- the same steering with ``generate(max_new_tokens=1)``, inputs built once per item
    (no processor call in the timed loop): the least work any generate-based protocol can do per cell.
``engine`` -- :func:`steerkit.sweep.sweep`: one capture forward per item batch, then per (vector, layer) one forward
    over rows that repeat the items for all strengths x scopes, replaying only layers l.. ; its answer is the
    choice letter with the highest log-probability at the last prompt position.

Reported (one JSON line per run): ms per (item x cell) of all three, the engine's speed-up over each, how often
the engine's letter answers agree with the paper protocol's parsed answers, whether each 20-token generation
stopped at EOS, and the engine's time over the FLOP floor of the work it cannot avoid (layers l..L-1 over the
prompt plus one logit row, counted from the config's shapes, at the matmul throughput measured in the same run).
When generations do not stop at EOS (random weights), the 20-token time is an upper bound of what the paper's
loop costs on a trained model and the 1-token time a lower bound; the line says so in ``paper_time_note``.

    # CPU, the organism
    .venv/bin/python benchmarks/sweep_bench.py --model steerkit/organism --n-items 32 --scopes image both
    # a tiny random family
    .venv/bin/python benchmarks/sweep_bench.py --model tiny/llava --n-items 4 --layers 0 --alphas 0.5 1.0
    # GPU, PaliGemma2-3B shapes with random weights (no download)
    python benchmarks/sweep_bench.py --shape paligemma2-3b --device cuda --dtype bfloat16 --n-items 64 \\
        --layers 5 8 11 14 17 20 --alphas 0.1 0.2 0.4 0.6 0.8 1.0 --scopes image

Results append to ``benchmarks/results/sweep_bench.jsonl`` (``--out``); lines with ``bench_version`` 2 use the
protocol above, earlier lines timed only the 1-token run and called it the paper protocol.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH_VERSION = 2
PAPER_MAX_NEW_TOKENS = 20

# PaliGemma2-3B-pt-224: Gemma2-2B text + SigLIP-So400m/14 at 224 px (256 image tokens).
PALIGEMMA2_3B = dict(
    text=dict(model_type="gemma2", hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
              num_attention_heads=8, num_key_value_heads=4, head_dim=256, vocab_size=257216,
              query_pre_attn_scalar=256, sliding_window=4096, final_logit_softcapping=30.0,
              attn_logit_softcapping=50.0),
    vision=dict(model_type="siglip_vision_model", hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
                num_attention_heads=16, image_size=224, patch_size=14, projection_dim=2304),
)

# A bare letter label, the only answer form the strict normalisation accepts: "B", "(B)", "B.", "B)", "(B).".
_STRICT_LABEL = re.compile(r"\(?[A-Z]\)?\.?")


def strict_letter(text: str, choices: Sequence[str]) -> str | None:
    """The answer letter under the paper's strict normalisation, or None (counted wrong).

    The generated text, stripped of surrounding whitespace, must be a bare upper-case letter label -- "B", "(B)",
    "B." or "B)" -- naming one of the item's choices. Longer answers ("B. left", "Answer: B", "left"), which
    :func:`steerkit.tasks.scoring.parse_letter` accepts, are None here. The letter itself is read by
    ``parse_letter``, so both parsers agree wherever the strict one answers.

    Example:
        >>> strict_letter(" (B)", ["left", "right"]), strict_letter("B. right", ["left", "right"])
        ('B', None)
    """
    from steerkit.tasks.scoring import parse_letter

    t = (text or "").strip()
    return parse_letter(t, choices) if _STRICT_LABEL.fullmatch(t) else None


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
    from steerkit import load_model

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


def activation_scale(model: Any, inputs: Any, layers: Sequence[int]) -> float:
    """Mean L2 norm of the decoder layers' outputs over ``inputs``' positions, averaged over ``layers``."""
    from steerkit import adapter_for

    decoder = adapter_for(model).decoder_layers(model)
    norms: list[float] = []

    def hook(_m: Any, _a: Any, out: Any) -> None:
        h = out[0] if isinstance(out, tuple) else out
        norms.append(float(h.float().norm(dim=-1).mean()))

    handles = [decoder[l].register_forward_hook(hook) for l in layers]
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        for h in handles:
            h.remove()
    return sum(norms) / len(norms)


def paper_steer_kwargs(scope: str) -> dict[str, Any]:
    """Extra :func:`steerkit.steer` arguments that give the paper's masks for ``scope``.

    The paper's text/both masks leave out the last non-special prompt token; steerkit's ``steer`` does so with
    ``exclude_last_prompt_token=True``. The image mask is the same in both.
    """
    if scope == "image":
        return {}
    from steerkit import steer

    if "exclude_last_prompt_token" not in inspect.signature(steer).parameters:
        raise TypeError(
            f"scope {scope!r}: the paper's text/both masks exclude the last prompt token, and this steerkit's "
            "steer() has no exclude_last_prompt_token argument to do that; update steerkit, or benchmark "
            "--scopes image only")
    return {"exclude_last_prompt_token": True}


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """Token ids that end a generation: the generation config's EOS id(s), else the tokenizer's."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        return set()
    return {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])}


@dataclass
class ProtocolRun:
    """One generate-based protocol over every item x cell: time, parsed answers and how generations ended."""

    seconds: float
    answers: dict[tuple, str] = field(default_factory=dict)  # (item id, layer, alpha, scope) -> letter or ""
    stopped_at_eos: dict[tuple, bool] = field(default_factory=dict)
    new_tokens: dict[tuple, int] = field(default_factory=dict)


def run_generate_protocol(model: Any, processor: Any, items: list[Any], vector: dict[int, torch.Tensor],
                          cells: list[tuple], device: torch.device, *, max_new_tokens: int,
                          processor_per_item: bool, repeats: int = 1, progress: bool = True,
                          desc: str = "") -> ProtocolRun:
    """Time the paper's loop: for every cell, for every item, batch 1, steer the prefill and ``generate``.

    With ``processor_per_item`` the processor is called on the item's (image, prompt) inside the timed loop, as the
    paper's code does; without it the inputs are built once per item beforehand. Answers: :func:`strict_letter`
    of the generated text ("" when it names no letter). One untimed warm-up call runs first; with ``repeats`` > 1
    the whole grid runs that many times and the fastest pass counts (other jobs on a shared machine only slow
    a pass down).
    """
    from tqdm.auto import tqdm

    from steerkit import adapter_for, steer
    from steerkit.tasks.scoring import build_prompt, item_image

    adapter = adapter_for(model)
    tok = adapter.tokenizer(processor)
    stop = eos_ids(model, tok)

    def inputs_of(it: Any) -> Any:
        return adapter.build_inputs(processor, [build_prompt(it)], [item_image(it)], device=device)

    prebuilt = None if processor_per_item else [inputs_of(it) for it in items]

    def one(k: int, layer: int, alpha: float, scope: str) -> torch.Tensor:
        inp = inputs_of(items[k]) if prebuilt is None else prebuilt[k]
        with steer(model, {layer: vector[layer]}, alpha=alpha, tokens=scope, when="prefill",
                   **paper_steer_kwargs(scope)):
            out = model.generate(**inp, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        return out[0, inp["input_ids"].shape[1]:]

    run = ProtocolRun(seconds=float("inf"))
    generated: dict[tuple, torch.Tensor] = {}
    with torch.no_grad():
        one(0, *cells[0])  # warm-up
        _sync(device)
        bar = tqdm(total=repeats * len(cells) * len(items), desc=desc, disable=not progress, leave=False)
        for _ in range(repeats):
            t = time.perf_counter()
            for cell in cells:
                for k, it in enumerate(items):
                    new = one(k, *cell)
                    # decoding and parsing belong to the protocol's per-item work, so they are timed too
                    run.answers[(it.id, *cell)] = strict_letter(tok.decode(new, skip_special_tokens=True),
                                                                it.choices) or ""
                    generated[(it.id, *cell)] = new
                    bar.update(1)
            _sync(device)
            run.seconds = min(run.seconds, time.perf_counter() - t)
        bar.close()
    for key, new in generated.items():
        ids = new.tolist()
        run.stopped_at_eos[key] = any(i in stop for i in ids)
        run.new_tokens[key] = len(ids)
    return run


@dataclass
class EngineRun:
    """The engine over every item x cell: time, letter answers (log-likelihood) and greedy first-token answers."""

    seconds: float
    mode: str
    letters: dict[tuple, str]
    greedy: dict[tuple, str]
    excludes_last_prompt_token: bool


def run_engine(model: Any, processor: Any, items: list[Any], vector: dict[int, torch.Tensor], layers: list[int],
               alphas: list[float], scopes: list[str], batch_size: int, max_rows: int,
               device: torch.device, repeats: int = 1) -> EngineRun:
    """Time the same cells through :func:`steerkit.sweep.sweep` (after a small untimed warm-up sweep).

    With ``repeats`` > 1 the sweep runs that many times and the fastest pass counts.

    Where ``sweep`` accepts ``exclude_last_prompt_token`` and text/both scopes are swept, it is passed, so the
    engine's masks match the paper protocol's; ``EngineRun.excludes_last_prompt_token`` records whether it was.
    """
    from steerkit.sweep import sweep

    kw: dict[str, Any] = dict(batch_size=batch_size, max_rows=max_rows, prompt_baseline=False, progress=False)
    excl = any(s != "image" for s in scopes) and "exclude_last_prompt_token" in inspect.signature(sweep).parameters
    if excl:
        kw["exclude_last_prompt_token"] = True
    table = {("bench", "random"): vector}
    sweep(model, processor, items[:2], table, layers[:1], alphas[:1], scopes[:1], **kw)
    _sync(device)
    seconds = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        df = sweep(model, processor, items, table, layers, alphas, scopes, **kw)
        _sync(device)
        seconds = min(seconds, time.perf_counter() - t)
    steered = df[df.method == "bench"]
    keys = [(r.item_id, int(r.layer), float(r.alpha), r.scope) for r in steered.itertuples()]
    return EngineRun(seconds=seconds, mode=str(df.attrs.get("mode")),
                     letters=dict(zip(keys, steered.pred)), greedy=dict(zip(keys, steered.greedy_pred)),
                     excludes_last_prompt_token=excl)


def _loadavg() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def agreement(a: dict[tuple, str], b: dict[tuple, str]) -> float:
    """Fraction of ``a``'s (item, cell) keys where ``b`` gives the same answer ("" = no answer never agrees)."""
    return sum(bool(v) and b.get(k) == v for k, v in a.items()) / len(a)


def agreement_by_scope(a: dict[tuple, str], b: dict[tuple, str]) -> dict[str, float]:
    """:func:`agreement` within each scope (the last element of the (item, layer, alpha, scope) keys)."""
    return {scope: agreement({k: v for k, v in a.items() if k[-1] == scope}, b)
            for scope in dict.fromkeys(k[-1] for k in a)}


def eos_note(stopped: float, mean_new: float) -> str:
    """What the 20-token time means, given the fraction of generations that stopped at EOS."""
    if stopped == 1.0:
        return (f"every {PAPER_MAX_NEW_TOKENS}-token generation stopped at EOS (mean {mean_new:.1f} new tokens "
                "including EOS): paper_ms_per_item_cell is the paper loop's cost on this model")
    share = "no" if stopped == 0.0 else f"only {100 * stopped:.0f}% of the"
    return (f"{share} {PAPER_MAX_NEW_TOKENS}-token generations stopped at EOS (random or untrained weights); "
            f"a trained model stops after the letter and EOS, so paper_ms_per_item_cell is an upper bound of the "
            f"paper loop's cost and paper_1tok_lower_bound_ms_per_item_cell a lower bound")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="steerkit/organism",
                    help="steerkit.load_model() name: steerkit/organism, tiny/<family>, ... (ignored with --shape)")
    ap.add_argument("--shape", choices=["paligemma2-3b"], default=None, help="random weights of a real shape")
    ap.add_argument("--text-layers", type=int, default=None, help="shrink --shape depth (CPU smoke test only)")
    ap.add_argument("--vision-layers", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--n-items", type=int, default=16)
    ap.add_argument("--layers", type=int, nargs="+", default=None, help="default: every layer but the last")
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.1, 0.2, 0.4, 0.6, 0.8, 1.0])
    ap.add_argument("--scopes", nargs="+", default=["image"], choices=["image", "text", "both"])
    ap.add_argument("--batch-size", type=int, default=8, help="engine: items per capture forward")
    ap.add_argument("--max-rows", type=int, default=256, help="engine: rows per replay forward")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=1, help="time each protocol this many times; keep the fastest")
    ap.add_argument("--skip-paper", action="store_true",
                    help="time the engine only (skips the paper protocol and its 1-token lower bound)")
    ap.add_argument("--skip-lower-bound", action="store_true", help="skip the 1-token lower-bound run")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sweep_bench.jsonl")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, append its JSON line to ``--out`` and return it as a dict."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    if not torch.cuda.is_available() and device.type == "cuda":
        raise SystemExit("--device cuda but CUDA is not available here")
    if not args.skip_paper:
        for scope in set(args.scopes):
            paper_steer_kwargs(scope)  # fail before the long runs, not after them
    from steerkit import adapter_for
    from steerkit.models.adapters import text_config
    from steerkit.tasks.scoring import build_prompt, item_image

    model, processor, name = load(args, device, dtype)
    adapter = adapter_for(model)
    n_layers, d = adapter.num_layers(model), adapter.hidden_size(model)
    layers = args.layers or list(range(n_layers - 1))
    items = make_items(name, args.n_items, args.seed)
    probe_inputs = adapter.build_inputs(processor, [build_prompt(items[0])], [item_image(items[0])], device=device)
    seq = int(probe_inputs["input_ids"].shape[1])
    # a random vector of the size of typical activations, so that answers do change across cells
    scale = activation_scale(model, probe_inputs, layers)
    g = torch.Generator().manual_seed(args.seed)
    vector = {l: (torch.randn(d, generator=g) / d ** 0.5 * scale).to(dtype) for l in range(n_layers)}
    cells = [(l, float(a), s) for l in layers for a in args.alphas for s in args.scopes]
    n_units = len(items) * len(cells)

    load_before = _loadavg()
    eng = run_engine(model, processor, items, vector, layers, args.alphas, args.scopes, args.batch_size,
                     args.max_rows, device, repeats=args.repeats)
    result: dict[str, Any] = {
        "bench_version": BENCH_VERSION,
        "model": name, "device": args.device, "dtype": args.dtype, "threads": args.threads,
        "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "n_items": len(items), "n_cells": len(cells), "layers": layers, "alphas": args.alphas, "scopes": args.scopes,
        "repeats": args.repeats, "prompt_tokens": seq, "batch_size": args.batch_size, "max_rows": args.max_rows,
        "engine_mode": eng.mode,
        "engine_ms_per_item_cell": 1000 * eng.seconds / n_units, "engine_seconds": eng.seconds,
        "engine_excludes_last_prompt_token": eng.excludes_last_prompt_token,
    }
    tcfg = text_config(model.config)
    flops = sum(floor_flops(tcfg, seq, l) for l in layers) / len(layers)
    peak = matmul_throughput(device, dtype)
    result.update({"floor_gflop_per_item_cell": flops / 1e9, "matmul_tflops": peak / 1e12,
                   "floor_ms_per_item_cell": 1000 * flops / peak})
    result["engine_over_floor"] = result["engine_ms_per_item_cell"] / result["floor_ms_per_item_cell"]
    if not args.skip_paper:
        quiet = args.no_progress
        paper = run_generate_protocol(model, processor, items, vector, cells, device,
                                      max_new_tokens=PAPER_MAX_NEW_TOKENS, processor_per_item=True,
                                      repeats=args.repeats, progress=not quiet, desc="paper protocol")
        stopped = sum(paper.stopped_at_eos.values()) / n_units
        mean_new = sum(paper.new_tokens.values()) / n_units
        per_item = {it.id: sum(paper.stopped_at_eos[(it.id, *c)] for c in cells) / len(cells) for it in items}
        result.update({
            "paper_max_new_tokens": PAPER_MAX_NEW_TOKENS, "paper_processor_per_item": True, "paper_batch_size": 1,
            "paper_steer_when": "prefill", "paper_parser": "strict_letter",
            "paper_text_masks_exclude_last_prompt_token": True if set(args.scopes) - {"image"} else None,
            "paper_ms_per_item_cell": 1000 * paper.seconds / n_units, "paper_seconds": paper.seconds,
            "engine_speedup_vs_paper": paper.seconds / eng.seconds,
            "paper_stopped_at_eos": stopped, "paper_stopped_at_eos_per_item": per_item,
            "paper_mean_new_tokens": mean_new, "paper_time_is_upper_bound": stopped < 1.0,
            "paper_time_note": eos_note(stopped, mean_new),
            "answers_agree": agreement(paper.answers, eng.letters),
            "answers_agree_engine_greedy": agreement(paper.answers, eng.greedy),
            "answers_agree_by_scope": agreement_by_scope(paper.answers, eng.letters),
            "answers_agree_engine_greedy_by_scope": agreement_by_scope(paper.answers, eng.greedy),
            "paper_unparsed": sum(not v for v in paper.answers.values()) / n_units,
            "paper_distinct_answers": len({v for v in paper.answers.values() if v}),
        })
        if not args.skip_lower_bound:
            low = run_generate_protocol(model, processor, items, vector, cells, device, max_new_tokens=1,
                                        processor_per_item=False, repeats=args.repeats, progress=not quiet,
                                        desc="paper_1tok_lower_bound")
            result.update({
                "paper_1tok_lower_bound_ms_per_item_cell": 1000 * low.seconds / n_units,
                "paper_1tok_lower_bound_seconds": low.seconds,
                "paper_1tok_lower_bound_processor_per_item": False,
                "engine_speedup_vs_paper_1tok_lower_bound": low.seconds / eng.seconds,
                "paper_1tok_lower_bound_agrees_with_paper": agreement(paper.answers, low.answers),
            })
    # the 1-minute load average before and after: on a shared machine it shows whether other jobs competed
    result["loadavg_1min"] = [load_before, _loadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as f:
        f.write(json.dumps(result) + "\n")
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
