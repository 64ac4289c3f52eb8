"""Shared by the benchmark-script tests: the scripts set torch's thread count, so each test restores it."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _keep_threads():
    """main() sets torch's thread count; later tests in this process must not inherit it."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)
