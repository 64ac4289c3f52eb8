"""One rule for torch's CPU threads (steerkit.threads): STEERKIT_THREADS wins, a default is capped at the CPU
count, a bad setting names the fix (tests/test_notebooks.py checks that the notebooks use it)."""

from __future__ import annotations

import pytest
import torch

from steerkit.errors import DataError
from steerkit.threads import set_threads


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_env_overrides_the_default(monkeypatch):
    monkeypatch.setenv("STEERKIT_THREADS", "1")
    assert set_threads(2) == 1 and torch.get_num_threads() == 1


def test_default_is_capped_at_the_cpu_count(monkeypatch):
    monkeypatch.delenv("STEERKIT_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert set_threads(8) == 1 and torch.get_num_threads() == 1


def test_no_default_leaves_torch_alone(monkeypatch):
    monkeypatch.delenv("STEERKIT_THREADS", raising=False)
    torch.set_num_threads(1)
    assert set_threads() == 1


@pytest.mark.parametrize("bad", ["0", "two", "-1"])
def test_bad_setting_names_the_fix(monkeypatch, bad):
    monkeypatch.setenv("STEERKIT_THREADS", bad)
    with pytest.raises(DataError, match="STEERKIT_THREADS=1"):
        set_threads(2)

