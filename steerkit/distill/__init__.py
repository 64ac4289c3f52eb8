"""steerkit.distill: self-distillation from text-mode traces to image-mode inputs (peft LoRA on the Trainer).

Example:
    >>> from steerkit.distill import sample_traces, keep_correct, make_pairs, distill, DistillConfig
    >>> traces = sample_traces(model, processor, train, k=4, temperature=0.7)
    >>> pairs = make_pairs(keep_correct(traces), train)
    >>> result = distill(model, processor, pairs, "runs/distill", DistillConfig())
"""

from steerkit.distill.data import Collator, SFTDataset, SFTPair, collate, encode_pair, encode_pairs, make_pairs
from steerkit.distill.traces import keep_correct, sample_traces, trace_summary
from steerkit.distill.train import (
    SCOPES,
    DistillConfig,
    DistillResult,
    apply_lora,
    distill,
    forgetting_check,
    load_lora,
    lora_targets,
)

__all__ = ["SCOPES", "Collator", "DistillConfig", "DistillResult", "SFTDataset", "SFTPair", "apply_lora", "collate",
           "distill", "encode_pair", "encode_pairs", "forgetting_check", "keep_correct", "load_lora",
           "lora_targets", "make_pairs", "sample_traces", "trace_summary"]
