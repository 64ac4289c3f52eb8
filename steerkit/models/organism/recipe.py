"""Build the organism: tokenizer, text LM (LlamaForCausalLM) and MLLM (LlavaForConditionalGeneration), on CPU.

Recipe (see docs/organism.md):
1. Tokenizer: byte-level BPE trained on a sample of world text.
2. Text LM: pretrained on scene QA in text mode (Count, Relation, Attribute, Depth), two-digit additions with a
   chain of thought, and plain world sentences (descriptions, relation facts, concept sentences). Loss: mean over
   each example's response tokens (per-example averaging, so long chains of thought do not dominate) plus a small
   weight on its prompt tokens.
3. MLLM: a CLIP tower (64 px, patch 16 -> 16 image tokens) + projector, LM initialised from the text LM. Trained on
   image-mode scene QA and rendered arithmetic, with text-only replay, plus a grounding auxiliary loss: the
   projector output at each occupied grid cell is pulled (normalised MSE) towards the mean input embedding of the
   words/character that describe that cell, a "visual tokenizer" prior without which image-mode reading does not
   learn at this scale.

The parts: :mod:`~steerkit.models.organism.config` (sizes and steps), :mod:`~steerkit.models.organism.data`
(streams, examples, batches), :mod:`~steerkit.models.organism.construct` (models and processor),
:mod:`~steerkit.models.organism.loop` (training) and :mod:`~steerkit.models.organism.evaluation` (held-out table).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from steerkit.models.organism import tokenizer as tk
from steerkit.models.organism.config import OrganismConfig
from steerkit.models.organism.construct import make_mllm, make_processor, make_text_lm
from steerkit.models.organism.data import tokenizer_corpus
from steerkit.models.organism.evaluation import evaluate
from steerkit.models.organism.loop import train_mllm, train_text_lm


def build(cache_dir: str | Path, seed: int = 0, fast: bool = False, config: OrganismConfig | None = None,
          evaluate_n: int | None = None, log: Callable[[str], None] = print) -> Path:
    """Train the organism from scratch into ``cache_dir`` and return it.

    Writes ``<cache_dir>/text`` (LlamaForCausalLM + tokenizer), ``<cache_dir>/mllm`` (LlavaForConditionalGeneration
    + LlavaProcessor), ``<cache_dir>/metrics.parquet`` (accuracy table) and ``<cache_dir>/build.json`` (config,
    seconds per phase, versions). Deterministic for a given seed and thread count. ``fast=True`` runs a few steps
    of every phase (a smoke test, not a useful model).

    Example:
        >>> build("/tmp/organism", seed=0, fast=True)
        PosixPath('/tmp/organism')
    """
    import transformers

    cfg = config or (OrganismConfig.fast(seed) if fast else OrganismConfig(seed=seed))
    out = Path(cache_dir)
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    tok = tk.train_tokenizer(tokenizer_corpus(cfg.seed, 400 if fast else 3000), cfg.vocab_size)
    text_lm = make_text_lm(tok, cfg)
    times["tokenizer"] = time.perf_counter() - t0
    log(f"organism: vocab {len(tok)}, text LM {sum(p.numel() for p in text_lm.parameters()) / 1e6:.2f} M params")

    t = time.perf_counter()
    text_losses = train_text_lm(text_lm, tok, cfg, log)
    times["text_lm"] = time.perf_counter() - t
    text_lm.save_pretrained(out / "text")
    tok.save_pretrained(out / "text")

    t = time.perf_counter()
    torch.manual_seed(cfg.seed + 1)
    processor = make_processor(tok)
    mllm = make_mllm(text_lm, tok, cfg)
    log(f"organism: MLLM {sum(p.numel() for p in mllm.parameters()) / 1e6:.2f} M params")
    mllm_losses = train_mllm(mllm, processor, cfg, log)
    times["mllm"] = time.perf_counter() - t
    mllm.save_pretrained(out / "mllm")
    processor.save_pretrained(out / "mllm")

    t = time.perf_counter()
    metrics = evaluate(mllm, processor, text_lm, n=evaluate_n or cfg.eval_n)
    metrics["seed"] = cfg.seed
    metrics.to_parquet(out / "metrics.parquet")
    times["evaluate"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - t0
    info = dict(config=asdict(cfg), seconds=times, threads=torch.get_num_threads(),
                versions=dict(torch=torch.__version__, transformers=transformers.__version__),
                final_loss=dict(text=float(np.mean(text_losses[-50:])), mllm=float(np.mean(mllm_losses[-50:]))))
    (out / "build.json").write_text(json.dumps(info, indent=2))
    log(f"organism built in {times['total']:.0f} s -> {out}")
    log(metrics.to_string())
    return out


__all__ = ["build"]
