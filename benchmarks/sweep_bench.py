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

``--generate`` adds batched steered generation (:func:`steerkit.sweep.generate.steered_generate`) against per-item
``generate()`` under ``steerkit.steer`` on the same rows -- items x strengths x scopes at one layer (``--gen-layer``),
greedy, the same ``--gen-max-new-tokens`` and ``--gen-stop`` -- on an open-answer prompt (:func:`generation_prompts`).
The line gets ``gen_speedup``, ``gen_outputs_equal`` (every row's text identical), ms per (item x cell) of each,
and the number of generated tokens (``gen_*`` fields, :func:`generation_fields`)::

    .venv/bin/python benchmarks/sweep_bench.py --model steerkit/organism --generate --n-items 8 --out /tmp/b.jsonl

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
# The same architecture at toy sizes (CPU tests of the code paths that the 3B shape runs on a GPU). vocab_size None:
# the tokenizer's size.
PALIGEMMA2_TINY = dict(
    text=dict(model_type="gemma2", hidden_size=64, intermediate_size=128, num_hidden_layers=4,
              num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=None,
              query_pre_attn_scalar=16, sliding_window=4096, final_logit_softcapping=30.0,
              attn_logit_softcapping=50.0),
    vision=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, image_size=56, patch_size=14, projection_dim=64),
)
SHAPES: dict[str, dict[str, dict[str, Any]]] = {"paligemma2-3b": PALIGEMMA2_3B, "paligemma2-tiny": PALIGEMMA2_TINY}

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


def build_paligemma_shape(shape: str, device: torch.device, dtype: torch.dtype, text_layers: int | None = None,
                          vision_layers: int | None = None) -> tuple[Any, Any]:
    """A random-weight PaliGemma2 model of ``shape`` (a key of :data:`SHAPES`) built on ``device``, and its processor.

    The tokenizer is steerkit's tiny in-process one (no download); its ids fit the 257k vocabulary of the 3B shape,
    and a shape with ``vocab_size`` None gets exactly the tokenizer's vocabulary. ``text_layers``/``vision_layers``
    shrink the depth for a CPU smoke test of this code path.
    """
    from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor
    from transformers import SiglipImageProcessorPil

    from steerkit.models.adapters import attach_processor
    from steerkit.models.tiny import tiny_model

    tok = tiny_model("paligemma")[1].tokenizer
    text, vision = dict(SHAPES[shape]["text"]), dict(SHAPES[shape]["vision"])
    if text["vocab_size"] is None:
        text["vocab_size"] = len(tok)
    if text_layers:
        text["num_hidden_layers"] = text_layers
    if vision_layers:
        vision["num_hidden_layers"] = vision_layers
    side = vision["image_size"]
    ip = SiglipImageProcessorPil(size={"height": side, "width": side})
    ip.image_seq_length = (side // vision["patch_size"]) ** 2
    processor = PaliGemmaProcessor(image_processor=ip, tokenizer=tok)
    cfg = PaliGemmaConfig(text_config=dict(text, pad_token_id=tok.pad_token_id), vision_config=vision,
                          image_token_index=tok.convert_tokens_to_ids("<image>"),
                          projection_dim=vision["projection_dim"], hidden_size=text["hidden_size"],
                          pad_token_id=tok.pad_token_id)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = PaliGemmaForConditionalGeneration(cfg)
    finally:
        torch.set_default_dtype(old)
    attach_processor(model, processor)
    return model.eval(), processor


def build_paligemma2_3b(device: torch.device, dtype: torch.dtype, text_layers: int | None = None,
                        vision_layers: int | None = None) -> tuple[Any, Any]:
    """:func:`build_paligemma_shape` of PaliGemma2-3B-pt-224 (random weights, no download)."""
    return build_paligemma_shape("paligemma2-3b", device, dtype, text_layers, vision_layers)


def load(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> tuple[Any, Any, str]:
    """The benchmarked model and processor, and a name for it."""
    if args.shape:
        model, processor = build_paligemma_shape(args.shape, device, dtype, args.text_layers, args.vision_layers)
        name = f"{args.shape}-shape (random)" + (f" {args.text_layers}L" if args.text_layers else "")
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
                          desc: str = "", prompt_prefix: str | None = None) -> ProtocolRun:
    """Time the paper's loop: for every cell, for every item, batch 1, steer the prefill and ``generate``.

    With ``processor_per_item`` the processor is called on the item's (image, prompt) inside the timed loop, as the
    paper's code does; without it the inputs are built once per item beforehand. Answers: :func:`strict_letter`
    of the generated text ("" when it names no letter). One untimed warm-up call runs first; with ``repeats`` > 1
    the whole grid runs that many times and the fastest pass counts (other jobs on a shared machine only slow
    a pass down). ``prompt_prefix``: the text before each item's prompt (default: the paper's instruction).
    """
    from tqdm.auto import tqdm

    from steerkit import adapter_for, steer
    from steerkit.tasks.scoring import PAPER_PREFIX, build_prompt, item_image

    adapter = adapter_for(model)
    tok = adapter.tokenizer(processor)
    stop = eos_ids(model, tok)
    prefix = PAPER_PREFIX if prompt_prefix is None else prompt_prefix

    def inputs_of(it: Any) -> Any:
        return adapter.build_inputs(processor, [build_prompt(it, prefix)], [item_image(it)], device=device)

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
               device: torch.device, repeats: int = 1, prompt_prefix: str | None = None) -> EngineRun:
    """Time the same cells through :func:`steerkit.sweep.sweep` (after a small untimed warm-up sweep).

    With ``repeats`` > 1 the sweep runs that many times and the fastest pass counts. ``prompt_prefix``: the text
    before each item's prompt (default: the sweep's, the paper's instruction).

    Where ``sweep`` accepts ``exclude_last_prompt_token`` and text/both scopes are swept, it is passed, so the
    engine's masks match the paper protocol's; ``EngineRun.excludes_last_prompt_token`` records whether it was.
    """
    from steerkit.sweep import sweep

    kw: dict[str, Any] = dict(batch_size=batch_size, max_rows=max_rows, prompt_baseline=False, progress=False)
    if prompt_prefix is not None:
        kw["prompt_prefix"] = prompt_prefix
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


# ------------------------------------------------------------------------------------------- generation (--generate)
@dataclass
class GenRun:
    """Batched steered generation against per-item ``generate()`` under ``steer`` over the same rows."""

    engine_seconds: float
    per_item_seconds: float
    engine_texts: list[str]
    per_item_texts: list[str]
    new_tokens: list[int]  # per row, from the per-item run (EOS included when reached)
    stopped_at_eos: list[bool]


def generation_prompts(model_name: str, items: list[Any], n: int, seed: int,
                       kind: str = "open") -> tuple[list[str], list[Any], str]:
    """Prompts, images and a description of the open-answer generations that ``--generate`` times.

    ``kind="open"``: on the organism, its image arithmetic questions (the answer is a chain of thought ending in
    ``<answer>..</answer>``, 28-37 tokens with EOS); elsewhere, the first ``n`` items' questions without the letter-only
    instruction. ``kind="item"``: the multiple-choice prompts exactly as the letter bench sends them.
    """
    from steerkit.tasks.scoring import build_prompt, item_image

    if kind == "item":
        chosen = items[:n]
        return [build_prompt(it) for it in chosen], [item_image(it) for it in chosen], "item prompt (letter answer)"
    if model_name.startswith("steerkit/organism"):
        from steerkit.models.organism import arithmetic_problems, render_arithmetic

        probs = arithmetic_problems(n, seed=seed)
        return ([p["image_prompt"] for p in probs], [render_arithmetic(p["question"]).convert("RGB") for p in probs],
                "open: the organism's image arithmetic question (chain of thought, <answer>..</answer>)")
    chosen = items[:n]
    return [it.prompt for it in chosen], [item_image(it) for it in chosen], "open: item question, no letter instruction"


def prompt_tokens(adapter: Any, processor: Any, prompt: str, image: Any) -> int:
    """Length in tokens of one prompt as the model sees it (image placeholders included)."""
    return int(adapter.build_inputs(processor, [prompt], None if image is None else [image])["input_ids"].shape[1])


def run_generation(model: Any, processor: Any, prompts: list[str], images: list[Any] | None,
                   vector: dict[int, torch.Tensor], layer: int, rows: list[tuple[int, float, str]],
                   device: torch.device, *, max_new_tokens: int, stop_strings: Sequence[str] | None = None,
                   when: str = "prefill", mode: str = "replay", batch_size: int = 64, exclude_last: bool = True,
                   repeats: int = 1, progress: bool = True) -> GenRun:
    """Time :func:`steerkit.sweep.generate.steered_generate` and per-item ``generate()`` on the same ``rows``.

    Rows are (prompt index, alpha, scope). The per-item reference runs each row alone (batch 1) inside
    ``steer(model, {layer: v}, alpha, tokens=scope, when=when)``, greedy, with the same ``max_new_tokens`` and
    ``stop_strings``; its inputs are built once per prompt before the timed loop (so the reference is timed without
    processor calls, while ``steered_generate`` is timed with its own). With ``exclude_last`` the text/both masks
    leave out the last prompt token (the paper's masks) in both. One untimed warm-up call each runs first;
    with ``repeats`` > 1 the fastest pass counts.
    """
    from tqdm.auto import tqdm

    from steerkit import adapter_for, steer
    from steerkit.sweep.generate import steered_generate

    adapter = adapter_for(model)
    tok = adapter.tokenizer(processor)
    stop = eos_ids(model, tok)
    kw: dict[str, Any] = dict(max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    if stop_strings:
        kw.update(stop_strings=list(stop_strings), tokenizer=tok)
    inputs = [adapter.build_inputs(processor, [p], None if images is None else [images[i]], device=device)
              for i, p in enumerate(prompts)]

    def one(i: int, alpha: float, scope: str) -> torch.Tensor:
        extra = paper_steer_kwargs(scope) if exclude_last else {}
        with steer(model, {layer: vector[layer]}, alpha=alpha, tokens=scope, when=when, **extra):
            out = model.generate(**inputs[i], **kw)
        return out[0, inputs[i]["input_ids"].shape[1]:]

    def engine(rs: list[tuple[int, float, str]]) -> list[str]:
        return steered_generate(model, processor, prompts, images, vector, layer, rs, max_new_tokens=max_new_tokens,
                                when=when, stop_strings=stop_strings, batch_size=batch_size, mode=mode,
                                exclude_last_prompt_token=exclude_last)

    with torch.no_grad():
        one(*rows[0])  # warm-ups
        engine(rows[:2])
        _sync(device)
        per_item_s = engine_s = float("inf")
        ref: list[str] = []
        new: list[torch.Tensor] = []
        bar = tqdm(total=repeats * len(rows), desc="per-item generate", disable=not progress, leave=False)
        for _ in range(repeats):
            t = time.perf_counter()
            new = []
            for row in rows:
                new.append(one(*row))
                bar.update(1)
            ref = [tok.decode(n, skip_special_tokens=True) for n in new]  # decoding is per-item work too
            _sync(device)
            per_item_s = min(per_item_s, time.perf_counter() - t)
        bar.close()
        got: list[str] = []
        for _ in range(repeats):
            t = time.perf_counter()
            got = engine(rows)
            _sync(device)
            engine_s = min(engine_s, time.perf_counter() - t)
    return GenRun(engine_seconds=engine_s, per_item_seconds=per_item_s, engine_texts=got, per_item_texts=ref,
                  new_tokens=[len(n) for n in new], stopped_at_eos=[any(int(i) in stop for i in n) for n in new])


def generation_fields(gen: GenRun, rows: list[tuple[int, float, str]]) -> dict[str, Any]:
    """The ``gen_*`` fields of a result line: times per (item x cell), speed-up, exact equality, token counts."""
    n = len(rows)
    equal = [a == b for a, b in zip(gen.engine_texts, gen.per_item_texts)]
    return {
        "gen_rows": n,
        "gen_engine_ms_per_item_cell": 1000 * gen.engine_seconds / n, "gen_engine_seconds": gen.engine_seconds,
        "gen_per_item_ms_per_item_cell": 1000 * gen.per_item_seconds / n, "gen_per_item_seconds": gen.per_item_seconds,
        "gen_speedup": gen.per_item_seconds / gen.engine_seconds,
        "gen_outputs_equal": all(equal) and len(gen.engine_texts) == n,
        "gen_rows_equal_fraction": sum(equal) / n,
        "gen_new_tokens": sum(gen.new_tokens), "gen_mean_new_tokens": sum(gen.new_tokens) / n,
        "gen_stopped_at_eos": sum(gen.stopped_at_eos) / n,
        # steering must change some outputs, or equal texts would say nothing about per-row steering
        "gen_distinct_outputs": len(set(gen.per_item_texts)),
    }


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
    ap.add_argument("--shape", choices=list(SHAPES), default=None,
                    help="random weights of a real shape (paligemma2-tiny: the same architecture at toy sizes)")
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
    ap.add_argument("--prefix-repeat", type=int, default=1,
                    help="the letter-only instruction before each prompt this many times (0: none; longer prompts "
                         "for the cost model)")
    ap.add_argument("--generate", action="store_true",
                    help="also time batched steered generation against per-item generate() on the same rows "
                         "(items x strengths x scopes at one layer) and compare the texts exactly")
    ap.add_argument("--gen-items", type=int, default=None, help="--generate: prompts (default: --n-items)")
    ap.add_argument("--gen-layer", type=int, default=None, help="--generate: the layer (default: middle of --layers)")
    ap.add_argument("--gen-max-new-tokens", type=int, default=40,
                    help="--generate: new tokens per row at most (the organism's unsteered arithmetic answers take "
                         "28-37 with EOS)")
    ap.add_argument("--gen-stop", nargs="+", default=None, help="--generate: stop strings")
    ap.add_argument("--gen-when", choices=["prefill", "all"], default="prefill")
    ap.add_argument("--gen-mode", choices=["replay", "replay_vision", "full"], default="replay")
    ap.add_argument("--gen-batch-size", type=int, default=64, help="--generate: rows per generate call")
    ap.add_argument("--gen-prompt", choices=["open", "item"], default="open",
                    help="open: an open-answer prompt (see generation_prompts); item: the letter bench's prompt")
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
    if not args.skip_paper or args.generate:
        for scope in set(args.scopes):
            paper_steer_kwargs(scope)  # fail before the long runs, not after them
    from steerkit import adapter_for
    from steerkit.models.adapters import text_config
    from steerkit.tasks.scoring import PAPER_PREFIX, build_prompt, item_image

    model, processor, name = load(args, device, dtype)
    adapter = adapter_for(model)
    n_layers, d = adapter.num_layers(model), adapter.hidden_size(model)
    layers = args.layers or list(range(n_layers - 1))
    items = make_items(name, args.n_items, args.seed)
    prefix = PAPER_PREFIX * args.prefix_repeat
    probe_inputs = adapter.build_inputs(processor, [build_prompt(items[0], prefix)], [item_image(items[0])],
                                        device=device)
    seq = int(probe_inputs["input_ids"].shape[1])
    # a random vector of the size of typical activations, so that answers do change across cells
    scale = activation_scale(model, probe_inputs, layers)
    g = torch.Generator().manual_seed(args.seed)
    vector = {l: (torch.randn(d, generator=g) / d ** 0.5 * scale).to(dtype) for l in range(n_layers)}
    cells = [(l, float(a), s) for l in layers for a in args.alphas for s in args.scopes]
    n_units = len(items) * len(cells)

    load_before = _loadavg()
    eng = run_engine(model, processor, items, vector, layers, args.alphas, args.scopes, args.batch_size,
                     args.max_rows, device, repeats=args.repeats, prompt_prefix=prefix)
    result: dict[str, Any] = {
        "bench_version": BENCH_VERSION,
        "model": name, "device": args.device, "dtype": args.dtype, "threads": args.threads,
        "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "n_items": len(items), "n_cells": len(cells), "layers": layers, "alphas": args.alphas, "scopes": args.scopes,
        "repeats": args.repeats, "prompt_tokens": seq, "prefix_repeat": args.prefix_repeat,
        "batch_size": args.batch_size, "max_rows": args.max_rows,
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
                                      repeats=args.repeats, progress=not quiet, desc="paper protocol",
                                      prompt_prefix=prefix)
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
                                        desc="paper_1tok_lower_bound", prompt_prefix=prefix)
            result.update({
                "paper_1tok_lower_bound_ms_per_item_cell": 1000 * low.seconds / n_units,
                "paper_1tok_lower_bound_seconds": low.seconds,
                "paper_1tok_lower_bound_processor_per_item": False,
                "engine_speedup_vs_paper_1tok_lower_bound": low.seconds / eng.seconds,
                "paper_1tok_lower_bound_agrees_with_paper": agreement(paper.answers, low.answers),
            })
    if args.generate:
        gen_layer = args.gen_layer if args.gen_layer is not None else layers[len(layers) // 2]
        prompts, images, kind = generation_prompts(name, items, args.gen_items or len(items), args.seed,
                                                   args.gen_prompt)
        rows = [(i, float(a), s) for i in range(len(prompts)) for a in args.alphas for s in args.scopes]
        gen = run_generation(model, processor, prompts, images, vector, gen_layer, rows, device,
                             max_new_tokens=args.gen_max_new_tokens, stop_strings=args.gen_stop,
                             when=args.gen_when, mode=args.gen_mode, batch_size=args.gen_batch_size,
                             repeats=args.repeats, progress=not args.no_progress)
        result.update({
            "gen_prompt": kind, "gen_items": len(prompts), "gen_layer": gen_layer,
            "gen_max_new_tokens": args.gen_max_new_tokens, "gen_stop_strings": args.gen_stop,
            "gen_when": args.gen_when, "gen_mode": args.gen_mode, "gen_batch_size": args.gen_batch_size,
            "gen_excludes_last_prompt_token": True if set(args.scopes) - {"image"} else None,
            "gen_prompt_tokens": prompt_tokens(adapter, processor, prompts[0], images[0]),
            **generation_fields(gen, rows),
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
