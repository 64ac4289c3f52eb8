"""steerkit: close the modality gap of multimodal LLMs.

Nothing heavy is imported here; public names resolve lazily so ``import steerkit`` is instant.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "load_model": "steerkit.models.loading",
    "adapter_for": "steerkit.models.adapters",
    "register_adapter": "steerkit.models.adapters",
    "Adapter": "steerkit.models.adapters",
    "steer": "steerkit.steer",
    "assert_no_hooks": "steerkit.steer",
    "steering_hook_count": "steerkit.steer",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'steerkit' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
