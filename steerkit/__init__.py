"""steerkit: close the modality gap of multimodal LLMs.

Only torch and the hook engine are imported eagerly; everything else (transformers models, sae-lens, peft,
plotly) resolves lazily on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Bound eagerly: the submodule steerkit.steer would otherwise shadow the function of the same name.
from steerkit.steer import assert_no_hooks, steer, steering_hook_count  # noqa: E402

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "load_model": "steerkit.models.loading",
    "adapter_for": "steerkit.models.adapters",
    "register_adapter": "steerkit.models.adapters",
    "Adapter": "steerkit.models.adapters",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'steerkit' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = ["__version__", "steer", "assert_no_hooks", "steering_hook_count", *_EXPORTS]
