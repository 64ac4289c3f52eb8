"""Shared fixtures: tiny models are built once per session per family (building trains a tokenizer)."""

from __future__ import annotations

import functools
import os

import pytest

from steerkit.threads import set_threads

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
set_threads(2)  # 2 (capped at the CPU count), or STEERKIT_THREADS: the suite beside another job runs on 1


@functools.cache
def _tiny(family: str):
    from steerkit.models.tiny import tiny_model

    return tiny_model(family)


@pytest.fixture
def tiny():
    """Callable: family -> (model, processor), cached across the session."""
    return _tiny
