"""One rule for bf16 autocast (steerkit.precision): auto follows the device's kernels, bad settings name the fix,
and the sweep config resolves ``autocast: auto`` through the same rule."""

from __future__ import annotations

import pytest
import torch

from steerkit import precision
from steerkit.errors import DataError
from steerkit.sweep.config import SweepConfig


@pytest.mark.parametrize("capability, fast", [("AVX2", False), ("DEFAULT", False), ("AVX512", True)])
def test_auto_follows_the_cpu_kernels(monkeypatch, capability, fast):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    assert precision.fast_bf16("cpu") is fast
    assert precision.use_bf16("auto", "cpu") is fast
    assert precision.use_bf16("bf16", "cpu") and not precision.use_bf16("fp32", "cpu")  # explicit settings win


def test_bad_precision_names_the_fix():
    with pytest.raises(ValueError, match="'auto'"):
        precision.use_bf16("half", "cpu")


def test_autocast_switches_the_matmul_dtype():
    a = torch.randn(4, 4)
    with precision.autocast("cpu", True):
        assert (a @ a).dtype == torch.bfloat16
    with precision.autocast("cpu", False):
        assert (a @ a).dtype == torch.float32


def test_sweep_config_accepts_auto_and_rejects_other_strings():
    base = dict(model="tiny/llava", items={"source": "synth"}, vectors={}, grid={"layers": [1], "alphas": [1.0]})
    assert SweepConfig.from_dict({**base, "autocast": "auto"}).autocast == "auto"
    with pytest.raises(DataError, match="null, true, false or auto"):
        SweepConfig.from_dict({**base, "autocast": "bf16"})
