"""Where bfloat16 autocast pays: one rule for every training and evaluation loop.

bf16 halves memory traffic and is ~2x faster on GPUs and on CPUs whose torch kernels use AVX-512 (oneDNN has
bf16 kernels there). On an AVX2-only CPU there are none: a bf16 matmul was measured ~80x *slower* than float32
(1.2 vs 97 GFLOP/s on a 2-core AMD EPYC, torch 2.13), so autocast there turns a 5 s training step into 200 s.
"""

from __future__ import annotations

import contextlib
from typing import Any, ContextManager

import torch

PRECISIONS = ("auto", "bf16", "fp32")


def fast_bf16(device: str | torch.device) -> bool:
    """Whether bf16 matmuls are fast on ``device`` (CUDA with bf16 support, or a CPU with AVX-512 kernels)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return torch.backends.cpu.get_cpu_capability().startswith("AVX512")
    return False


def use_bf16(precision: str, device: str | torch.device) -> bool:
    """Resolve a precision setting: ``"bf16"`` / ``"fp32"`` as stated, ``"auto"`` by :func:`fast_bf16`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}; pass 'auto' to let the device decide")
    return fast_bf16(device) if precision == "auto" else precision == "bf16"


def autocast(device: str | torch.device, bf16: bool) -> ContextManager[Any]:
    """bf16 autocast on ``device`` when ``bf16``, else a no-op context."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


__all__ = ["PRECISIONS", "autocast", "fast_bf16", "use_bf16"]
