"""The organism's training loops: the text LM's pretraining and the MLLM phase (tower + projector, the LM at a
lower rate, text replay and the grounding loss), with their losses, warm-up/cosine schedule and optimiser step.

The MLLM's parts (vision tower, projector, text model, head) come from the adapter table
(:func:`steerkit.models.adapters.adapter_for`), not from hard-coded module paths.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from steerkit.models.adapters import adapter_for
from steerkit.models.organism.config import OrganismConfig
from steerkit.models.organism.construct import image_seq_length
from steerkit.models.organism.data import collate, image_examples, length_batches, stream_plan, text_examples


def weighted_lm_loss(logits: torch.Tensor, input_ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy weighted per target token, summed per example, averaged over the batch."""
    ce = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), input_ids[:, 1:].flatten(), reduction="none")
    return (ce.view_as(weights) * weights).sum() / input_ids.shape[0]


def _schedule(opt: torch.optim.Optimizer, steps: int, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _optimizer_step(model: Any, opt: torch.optim.Optimizer, sched: Any, loss: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()


def train_text_lm(model: Any, tok: Any, cfg: OrganismConfig, log: Callable[[str], None] = print) -> list[float]:
    """Pretrain ``model`` on world text; returns the loss curve."""
    spec = stream_plan(cfg)["text_lm"]
    data = text_examples(tok, spec["n"], spec["seed"], cfg, mix=spec["mix"])
    batches = length_batches(data, cfg.text_batch, cfg.text_steps, cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.text_lr, weight_decay=0.01, betas=(0.9, 0.98))
    sched = _schedule(opt, cfg.text_steps, cfg.warmup)
    model.train()
    losses = []
    for step in tqdm(range(cfg.text_steps), desc="organism text LM", mininterval=5):
        batch = collate(batches[step], tok.pad_token_id)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = weighted_lm_loss(logits, batch["input_ids"], batch["weights"])
        _optimizer_step(model, opt, sched, loss)
        losses.append(float(loss.detach()))
        if step % 50 == 0 or step == cfg.text_steps - 1:
            log(f"text step {step}: loss {np.mean(losses[-50:]):.3f}")
    model.eval()
    return losses


def pixel_values(processor: Any, images: Sequence[Image.Image]) -> torch.Tensor:
    """The processor's pixel tensor for ``images``."""
    return processor.image_processor(images=list(images), return_tensors="pt")["pixel_values"]


def image_features(model: Any, pixels: torch.Tensor) -> torch.Tensor:
    """Projected image tokens [n_images, n_tokens, hidden]: what replaces the ``<image>`` tokens."""
    out = model.get_image_features(pixel_values=pixels.to(next(model.parameters()).device))
    feats = out.pooler_output if hasattr(out, "pooler_output") else out
    return torch.stack(list(feats)) if isinstance(feats, (list, tuple)) else feats


def grounding_loss(features: torch.Tensor, cells: Sequence[dict[int, list[int]] | None],
                   embed: torch.nn.Embedding) -> torch.Tensor:
    """Normalised MSE between projector outputs at described cells and the mean (detached) embedding of the
    cell's words: ``|f - e|^2 / |e|^2`` averaged over cells. ``features``: [n_images, n_cells, hidden]."""
    preds, targets = [], []
    weight = embed.weight.detach()
    for f, c in zip(features, cells):
        for cell, ids in (c or {}).items():
            preds.append(f[cell])
            targets.append(weight[ids].mean(0))
    if not preds:
        return features.sum() * 0.0
    p, t = torch.stack(preds), torch.stack(targets)
    return (((p - t) ** 2).sum(-1) / (t**2).sum(-1).clamp_min(1e-6)).mean()


def mllm_forward(model: Any, batch: dict[str, torch.Tensor], pixel_values: torch.Tensor | None,
                 image_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits of a mixed batch (image rows get their image features in place of ``<image>`` tokens) and the
    projector outputs ([n_images, n_cells, hidden]) used by the grounding loss."""
    ids = batch["input_ids"]
    embeds = model.get_input_embeddings()(ids)
    features = None
    if pixel_values is not None:
        features = image_features(model, pixel_values)
        mask = ids == model.config.image_token_id
        rows = mask[image_rows]
        sub = embeds[image_rows]
        sub = sub.masked_scatter(rows.unsqueeze(-1), features.to(sub.dtype))
        embeds = embeds.clone()
        embeds[image_rows] = sub
    logits = model(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).logits
    return logits, features


def train_mllm(model: Any, processor: Any, cfg: OrganismConfig, log: Callable[[str], None] = print) -> list[float]:
    """Train tower + projector (and the LM at a lower rate) on image-mode data with text replay."""
    tok = processor.tokenizer
    n_img_tok = image_seq_length(processor)
    plan = stream_plan(cfg)
    images = image_examples(tok, plan["mllm_image"]["n"], plan["mllm_image"]["seed"], cfg, n_img_tok)
    texts = text_examples(tok, plan["mllm_replay"]["n"], plan["mllm_replay"]["seed"], cfg,
                          mix=plan["mllm_replay"]["mix"], length_power=cfg.mllm_length_power)
    data = images + texts
    random.Random(cfg.seed + 3).shuffle(data)
    batches = length_batches(data, cfg.mllm_batch, cfg.mllm_steps, cfg.seed + 4)
    adapter = adapter_for(model)
    vision = [p for m in adapter.vision_modules(model) for p in m.parameters()]  # tower, then projector
    lm = [p for m in (adapter.text_model_module(model), adapter.lm_head_module(model)) for p in m.parameters()]
    opt = torch.optim.AdamW([{"params": vision, "lr": cfg.tower_lr}, {"params": lm, "lr": cfg.lm_lr}],
                            weight_decay=0.01, betas=(0.9, 0.98))
    sched = _schedule(opt, cfg.mllm_steps, cfg.warmup)
    embed = model.get_input_embeddings()
    model.train()
    losses = []
    for step in tqdm(range(cfg.mllm_steps), desc="organism MLLM", mininterval=5):
        chunk = batches[step]
        batch = collate(chunk, tok.pad_token_id)
        image_rows = torch.tensor([e.image is not None for e in chunk])
        pixels = pixel_values(processor, [e.image for e in chunk if e.image is not None]) if image_rows.any() else None
        logits, features = mllm_forward(model, batch, pixels, image_rows)
        loss = weighted_lm_loss(logits, batch["input_ids"], batch["weights"])
        ground = torch.zeros(())
        if features is not None and cfg.ground_weight:
            ground = grounding_loss(features, [e.cells for e in chunk if e.image is not None], embed)
        _optimizer_step(model, opt, sched, loss + cfg.ground_weight * ground)
        losses.append(float(loss.detach()))
        if step % 200 == 0 or step == cfg.mllm_steps - 1:
            log(f"mllm step {step}: lm loss {np.mean(losses[-50:]):.3f} grounding {float(ground.detach()):.3f}")
    model.eval()
    return losses


__all__ = ["grounding_loss", "mllm_forward", "train_mllm", "train_text_lm", "weighted_lm_loss"]
