"""Shared fixtures: tiny models are built once per session per family (building trains a tokenizer)."""

from __future__ import annotations

import functools
import os

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@functools.cache
def _tiny(family: str):
    from steerkit.models.tiny import tiny_model

    return tiny_model(family)


@pytest.fixture
def tiny():
    """Callable: family -> (model, processor), cached across the session."""
    return _tiny
