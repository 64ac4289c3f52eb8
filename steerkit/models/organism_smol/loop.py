"""The LoRA stages. Each step draws its stage's mix of training samples (:mod:`~steerkit.models.organism_smol.samples`),
groups them into an image batch and a text batch, and trains the LoRA on the target tokens (mean per sample, every
sample weighing the same), with the tower frozen; bf16 autocast where the device has fast bf16 kernels. A checkpoint
after every learning-curve point lets a killed build resume where it stopped; a finished stage's checkpoint holds its
final LoRA, so a resumed build skips it.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from steerkit.models.organism_smol.config import Stage
from steerkit.models.organism_smol.samples import SampleSource, encode, sample_losses

MODES = ("image", "text")


def lora_parameters(peft_model: Any) -> list[torch.nn.Parameter]:
    """The LoRA's trainable parameters, in a fixed order (what checkpoints hold)."""
    return [p for n, p in peft_model.named_parameters() if "lora_" in n]


def train_stage(peft_model: Any, processor: Any, source: SampleSource, stage: Stage, seed: int, ckpt: Path,
                evaluate: Callable[[], dict[str, float]], log: Callable[[str], None] = print,
                device: str | torch.device = "cpu", first_point: bool = False, bf16: bool = False,
                ) -> list[dict[str, Any]]:
    """Train ``stage`` (see the module docstring); returns its held-out learning curve.

    ``evaluate()`` gives a curve point's accuracies; ``first_point`` measures one before the first step too;
    ``bf16``: bf16 autocast (:func:`steerkit.precision.use_bf16`).
    ``ckpt`` holds LoRA weights, optimiser, schedule, step and curve.
    """
    base = peft_model.base_model.model
    params = lora_parameters(peft_model)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=stage.lr, weight_decay=0.0)
    floor = stage.min_lr_frac
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / stage.warmup) * (
        floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(s, stage.steps) / stage.steps))))
    step, curve, seconds = 0, [], 0.0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        for p, v in zip(params, state["lora"]):
            p.data.copy_(v)
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        step, curve, seconds = state["step"], state["curve"], state["seconds"]
        log(f"stage {stage.name}: resumed at step {step}/{stage.steps}")
    elif first_point:
        base.eval()
        curve.append(dict(stage=stage.name, step=0, seconds=0.0, **evaluate()))
        log(f"stage {stage.name} step 0: held-out {curve[-1]}")
    started = time.time() - seconds
    bar = tqdm(total=stage.steps, initial=step, desc=f"LoRA {stage.name}", mininterval=10)
    while step < stage.steps:
        base.train()
        opt.zero_grad(set_to_none=True)
        samples = source.batch(stage.mix, seed, stage.name, step)
        for group in ([s for s in samples if s.image is not None], [s for s in samples if s.image is None]):
            if group:
                losses = sample_losses(peft_model, encode(base, processor, group), device, bf16)
                (losses.sum() / len(samples)).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        step += 1
        bar.update(1)
        if step % stage.eval_every == 0 or step == stage.steps:
            base.eval()
            seconds = time.time() - started
            point = dict(stage=stage.name, step=step, seconds=round(seconds, 1), **evaluate())
            curve.append(point)
            log(f"stage {stage.name} step {step}: held-out {point}")
            tmp = ckpt.with_suffix(".tmp")
            torch.save(dict(lora=[p.detach().clone() for p in params], opt=opt.state_dict(),
                            sched=sched.state_dict(), step=step, curve=curve, seconds=seconds), tmp)
            os.replace(tmp, ckpt)  # atomic: a kill never leaves a half-written checkpoint
    bar.close()
    base.eval()
    for p in params:
        p.requires_grad_(False)
    return curve
