"""Stage 2: joint LoRA. Each step takes a batch of image-mode and a batch of text-mode questions (the same world,
training split only) and trains the LoRA on the answer letter (cross-entropy at the answer position), with the
tower frozen. bf16 autocast on CPU and GPU; sequence lengths padded to a multiple of 16 (faster kernels). A
checkpoint after every learning-curve point lets a killed build resume where it stopped.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from steerkit.models.adapters import adapter_for
from steerkit.models.organism import world as w
from steerkit.models.organism_smol.config import SmolOrganismConfig
from steerkit.tasks.schema import Item
from steerkit.tasks.scoring import PAPER_PREFIX, letter_token_ids

MODES = ("image", "text")


def pad_to_multiple(inputs: dict[str, torch.Tensor], pad_id: int, multiple: int = 16) -> dict[str, torch.Tensor]:
    """Left-pad ``input_ids``/``attention_mask`` to a multiple of ``multiple`` tokens."""
    extra = (-inputs["input_ids"].shape[1]) % multiple
    if extra:
        b = inputs["input_ids"].shape[0]
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        inputs["input_ids"] = torch.cat([torch.full((b, extra), pad_id, dtype=ids.dtype, device=ids.device), ids], 1)
        inputs["attention_mask"] = torch.cat([torch.zeros(b, extra, dtype=mask.dtype, device=mask.device), mask], 1)
    return inputs


def train_lora(peft_model: Any, processor: Any, cfg: SmolOrganismConfig, ckpt: Path,
               evaluate: Callable[[], dict[str, float]], log: Callable[[str], None] = print,
               device: str | torch.device = "cpu") -> list[dict[str, Any]]:
    """Train the LoRA of ``peft_model`` (see the module docstring); returns the held-out learning curve.

    ``evaluate()`` gives the curve's accuracies; ``ckpt`` holds LoRA weights, optimiser, schedule, step and curve.
    """
    base = peft_model.base_model.model
    adapter = adapter_for(base)
    tok = processor.tokenizer
    params = [p for p in peft_model.parameters() if p.requires_grad]
    questions = [q for t in w.TASKS for q in w.scene_questions(t, cfg.n_train, seed=cfg.seed, split="train")]
    order = random.Random(cfg.seed + 1)
    perms = {m: order.sample(range(len(questions)), len(questions)) for m in MODES}
    batch_sizes = {"image": cfg.image_batch, "text": cfg.text_batch}
    total = sum(batch_sizes.values())
    # The target is each letter's first spelling under the scorer's rule (the bare letter for SmolLM2).
    letters = {L: ids[0] for L, ids in letter_token_ids(tok).items()}
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / cfg.warmup) * 0.5 * (
        1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps)))
    step, curve = 0, []
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        for p, v in zip(params, state["lora"]):
            p.data.copy_(v)
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        step, curve = state["step"], state["curve"]
        log(f"resumed the LoRA stage at step {step}")
    else:
        curve.append(dict(step=0, seconds=0.0, **evaluate()))

    def batch(mode: str, s: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        b = batch_sizes[mode]
        items: list[Item] = [questions[perms[mode][(s * b + j) % len(questions)]].item(mode) for j in range(b)]
        inputs = adapter.build_inputs(processor, [PAPER_PREFIX + it.prompt for it in items],
                                      [it.image for it in items] if mode == "image" else None)
        inputs = pad_to_multiple(dict(inputs), tok.pad_token_id)
        return {k: v.to(device) for k, v in inputs.items()}, torch.tensor([letters[it.answer] for it in items],
                                                                           device=device)

    started = time.time() - (curve[-1]["seconds"] if curve else 0.0)
    bar = tqdm(total=cfg.steps, initial=step, desc="LoRA", mininterval=10)
    while step < cfg.steps:
        base.train()
        opt.zero_grad(set_to_none=True)
        for mode in MODES:
            if not batch_sizes[mode]:
                continue
            inputs, target = batch(mode, step)
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
                logits = peft_model(**inputs, use_cache=False, logits_to_keep=1).logits[:, -1].float()
            (F.cross_entropy(logits, target) * batch_sizes[mode] / total).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        step += 1
        bar.update(1)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            base.eval()
            point = dict(step=step, seconds=time.time() - started, **evaluate())
            curve.append(point)
            log(f"LoRA step {step}: held-out {point}")
            tmp = ckpt.with_suffix(".tmp")
            torch.save(dict(lora=[p.detach().clone() for p in params], opt=opt.state_dict(),
                            sched=sched.state_dict(), step=step, curve=curve), tmp)
            os.replace(tmp, ckpt)  # atomic: a kill never leaves a half-written checkpoint
    bar.close()
    base.eval()
    return curve
