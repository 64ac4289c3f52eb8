"""Self-distillation, step 3: LoRA fine-tuning on image-mode inputs with the model's own text-mode traces.

peft LoRA on the transformers ``Trainer`` (accelerate underneath). Defaults follow "Reading, Not Thinking": rank 64,
learning rate 2e-4, 2 epochs, effective batch 16, LoRA on the language model only with the vision tower frozen.
``lora_alpha`` is not given by the reference; we use 2 x rank.

Scopes (where LoRA goes; everything else stays frozen and bit-identical):
- ``"lm"`` (default): the language model's linear layers, ``adapter.lora_target_modules(model)``;
- ``"lm+projector"``: those plus the vision->text projector's linear layers;
- ``"vision"``: the vision tower's linear layers only.

Training is resumable (``resume_from_checkpoint=True`` picks the last checkpoint in ``out_dir``); the LoRA weights
are saved with ``save_pretrained`` in ``out_dir/lora``.

Example:
    >>> result = distill(model, processor, pairs, "runs/distill", DistillConfig(epochs=2))
    >>> model = result.model          # a PeftModel; generate_text works on it
    >>> reloaded = load_lora(base_model, result.lora_dir)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from steerkit.distill.data import Collator, SFTDataset, SFTPair, encode_pairs, response_fills
from steerkit.errors import DistillError

SCOPES: tuple[str, ...] = ("lm", "lm+projector", "vision")


@dataclass(frozen=True)
class DistillConfig:
    """LoRA + Trainer settings (reference recipe by default).

    ``per_device_batch`` x gradient accumulation = ``effective_batch``; ``max_steps`` > 0 overrides ``epochs``.
    """

    rank: int = 64
    alpha: int | None = None
    dropout: float = 0.05
    scope: str = "lm"
    lr: float = 2e-4
    epochs: float = 2.0
    effective_batch: int = 16
    per_device_batch: int = 4
    max_steps: int = -1
    warmup: float = 0.03  # a fraction of the steps when < 1, else a step count (transformers 5.x warmup_steps)
    weight_decay: float = 0.0
    scheduler: str = "cosine"
    save_steps: int = 50
    save_total_limit: int = 2
    logging_steps: int = 5
    seed: int = 0
    max_length: int | None = None
    bf16: bool = False
    extra_args: dict[str, Any] = field(default_factory=dict)

    @property
    def grad_accum(self) -> int:
        """Gradient accumulation steps that reach ``effective_batch``."""
        return max(1, math.ceil(self.effective_batch / self.per_device_batch))


def _linear_names(model: nn.Module, modules: Sequence[nn.Module]) -> list[str]:
    ids = {id(m) for m in modules}
    prefixes = [name for name, m in model.named_modules() if id(m) in ids]
    return [name for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and any(name == p or name.startswith(p + ".") for p in prefixes)]


def lora_targets(model: nn.Module, scope: str = "lm") -> list[str]:
    """Full module names LoRA wraps for ``scope`` (see module docstring), from the adapter table.

    Example:
        >>> lora_targets(model, "lm")[:2]
        ['model.language_model.layers.0.self_attn.q_proj', 'model.language_model.layers.0.self_attn.k_proj']
    """
    from steerkit.models.adapters import adapter_for

    if scope not in SCOPES:
        raise DistillError(f"unknown LoRA scope {scope!r}; choose from {list(SCOPES)}")
    adapter = adapter_for(model)
    if scope == "vision":
        tower = _linear_names(model, adapter.vision_tower_modules(model))
        proj = set(_linear_names(model, adapter.projector_modules(model)))
        names = [n for n in tower if n not in proj]
    else:
        names = list(adapter.lora_target_modules(model))
        if scope == "lm+projector":
            names += [n for n in _linear_names(model, adapter.projector_modules(model)) if n not in names]
    if not names:
        raise DistillError(f"scope {scope!r} finds no linear layers in {type(model).__name__}; check the adapter's "
                           "vision/projector paths (steerkit/models/adapters.py)")
    return names


def apply_lora(model: nn.Module, config: DistillConfig = DistillConfig()) -> Any:
    """Wrap ``model`` in a peft ``PeftModel`` with LoRA on the scope's layers (all other weights frozen).

    Note that peft injects the LoRA layers into ``model`` in place: evaluate the "before" model first.
    """
    from peft import LoraConfig, get_peft_model

    targets = lora_targets(model, config.scope)
    lcfg = LoraConfig(r=config.rank, lora_alpha=config.alpha or 2 * config.rank, lora_dropout=config.dropout,
                      target_modules=targets, bias="none")
    return get_peft_model(model, lcfg)


@dataclass
class DistillResult:
    """What :func:`distill` produced: the trained PeftModel, where its LoRA weights are, and the training log."""

    model: Any
    lora_dir: Path
    log: pd.DataFrame
    n_examples: int
    steps: int
    targets: list[str]


def distill(
    model: nn.Module,
    processor: Any,
    pairs: Sequence[SFTPair],
    out_dir: str | Path,
    config: DistillConfig = DistillConfig(),
    *,
    resume_from_checkpoint: bool | str | None = None,
) -> DistillResult:
    """Fine-tune ``model`` with LoRA on ``pairs`` (loss on response tokens only) and save the LoRA weights.

    ``resume_from_checkpoint``: True resumes from the last ``checkpoint-*`` in ``out_dir``, a path from that one.
    Writes ``out_dir/lora`` (``save_pretrained``), ``out_dir/train_log.parquet`` and ``out_dir/config.json``.

    Example:
        >>> res = distill(model, processor, pairs, "runs/d1", DistillConfig(max_steps=20))
    """
    import json

    from transformers import Trainer, TrainingArguments

    from steerkit.models.adapters import adapter_for

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not pairs:
        raise DistillError("no training pairs; keep_correct() returned nothing to distil")
    tok = adapter_for(model).tokenizer(processor)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    dataset = SFTDataset(encode_pairs(model, processor, pairs, max_length=config.max_length))
    peft_model = model if hasattr(model, "peft_config") else apply_lora(model, config)
    peft_model.train()
    args = TrainingArguments(
        output_dir=str(out_dir),
        per_device_train_batch_size=config.per_device_batch,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.lr,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        warmup_steps=config.warmup,
        weight_decay=config.weight_decay,
        lr_scheduler_type=config.scheduler,
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        seed=config.seed,
        data_seed=config.seed,
        bf16=config.bf16,
        report_to="none",
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        disable_tqdm=False,
        **config.extra_args,
    )
    trainer = Trainer(model=peft_model, args=args, train_dataset=dataset,
                      data_collator=Collator(pad_id, response_fills(processor)))
    resume = resume_from_checkpoint
    if resume is True and not any(out_dir.glob("checkpoint-*")):
        resume = None  # nothing to resume from yet: start fresh rather than fail
    trainer.train(resume_from_checkpoint=resume)
    lora_dir = out_dir / "lora"
    peft_model.save_pretrained(str(lora_dir))
    log = pd.DataFrame(trainer.state.log_history)
    log.to_parquet(out_dir / "train_log.parquet", index=False)
    cfg = asdict(config) | {"n_examples": len(dataset), "steps": trainer.state.global_step}
    (out_dir / "config.json").write_text(json.dumps(cfg, indent=1, default=str))
    peft_model.eval()
    targets = sorted(next(iter(peft_model.peft_config.values())).target_modules)
    return DistillResult(peft_model, lora_dir, log, len(dataset), trainer.state.global_step, targets)


def load_lora(model: nn.Module, lora_dir: str | Path) -> Any:
    """Load saved distillation LoRA weights onto a fresh base ``model`` (``PeftModel.from_pretrained``), eval mode."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(lora_dir)).eval()


def forgetting_check(comparison: pd.DataFrame, mode: str = "text") -> dict[str, Any]:
    """From :func:`steerkit.gap.report.compare_runs`: did ``mode`` accuracy drop beyond its uncertainty?

    ``ok`` is True when the paired after-minus-before CI reaches 0 or above (no significant drop) and the after
    accuracy lies inside (or above) the before accuracy's bootstrap CI.
    """
    row = comparison.set_index("mode").loc[mode]
    paired_ok = bool(row["diff_hi"] >= 0)
    within = bool(row["after"] >= row["before_lo"])
    return {"mode": mode, "before": float(row["before"]), "after": float(row["after"]), "diff": float(row["diff"]),
            "diff_lo": float(row["diff_lo"]), "diff_hi": float(row["diff_hi"]), "paired_ok": paired_ok,
            "within_before_ci": within, "ok": paired_ok and within}
