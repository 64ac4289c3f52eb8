"""Identities of what a run depends on, and the one hash that names run folders.

A run folder's name is ``<name>-<hash12>`` where the hash is :func:`config_hash` of a configuration dictionary
(:func:`steerkit.sweep.store.run_folder` creates it). Sweeps put :func:`model_fingerprint`,
:func:`items_fingerprint` and :func:`vector_fingerprint` into that dictionary; the gap harness hashes its own
configuration the same way (:func:`steerkit.gap.modes.run_dir`).

Example:
    >>> config = {"model": model_fingerprint(model), "items": items_fingerprint(items)}
    >>> len(config_hash(config))
    64
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from steerkit.tasks.schema import Item


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces; other objects as ``str``) used for hashing configurations."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(config: Mapping[str, Any]) -> str:
    """sha256 hex digest of the canonical JSON of ``config``."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()


# Config keys that save_pretrained fills in on the live model; the weights hash already covers every dtype, so a
# model keeps its identity after being saved or reloaded and its sweeps resume in the same run folder.
_CONFIG_BOOKKEEPING = ("architectures", "dtype", "torch_dtype")


def _without_bookkeeping(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _without_bookkeeping(v) for k, v in d.items() if k not in _CONFIG_BOOKKEEPING}
    return d


def model_fingerprint(model: torch.nn.Module, name: str | None = None) -> dict[str, Any]:
    """A cheap identity of a model's weights: name, config, parameter count and per-tensor sums.

    Example:
        >>> sorted(model_fingerprint(model, "tiny/llava"))
        ['config', 'n_params', 'name', 'weights']
    """
    h = hashlib.sha256()
    n = 0
    with torch.no_grad():
        for pname, p in model.named_parameters():
            n += p.numel()
            s = p.detach().float()
            h.update(f"{pname}:{tuple(p.shape)}:{p.dtype}:{s.sum().item():.6e}:{s.abs().sum().item():.6e}".encode())
    cfg = (json.dumps(_without_bookkeeping(model.config.to_dict()), sort_keys=True, default=str)
           if hasattr(model.config, "to_dict") else repr(model.config))
    return {"name": name or getattr(model, "name_or_path", "") or type(model).__name__, "n_params": n,
            "weights": h.hexdigest()[:16], "config": hashlib.sha256(cfg.encode()).hexdigest()[:16]}


def items_fingerprint(items: Sequence[Item]) -> str:
    """sha256 over every item's id, prompt, choices, answer, task, split and image bytes."""
    h = hashlib.sha256()
    for it in items:
        h.update(repr((it.id, it.prompt, list(it.choices), it.answer, it.task, it.source, it.split)).encode())
        if it.image is not None:
            h.update(f"{it.image.mode}{it.image.size}".encode())
            h.update(it.image.tobytes())
    return h.hexdigest()


def vector_fingerprint(vector: Mapping[int, torch.Tensor], layers: Iterable[int]) -> str:
    """sha256 of the vector's tensors at ``layers`` (float32 bytes)."""
    h = hashlib.sha256()
    for layer in sorted(layers):
        v = vector[layer].detach().to(torch.float32).cpu().contiguous()
        h.update(f"{layer}:{tuple(v.shape)}".encode())
        h.update(v.numpy().tobytes())
    return h.hexdigest()


__all__ = ["canonical_json", "config_hash", "model_fingerprint", "items_fingerprint", "vector_fingerprint"]
