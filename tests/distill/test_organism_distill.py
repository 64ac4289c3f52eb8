"""On the organism: image-mode accuracy after self-distillation vs before, with a paired bootstrap CI.

The test checks that the measurement is made and well-formed, not that it comes out positive: the size and sign
of the change are reported in docs/distill.md from runs, never asserted here.
"""

from __future__ import annotations

import pytest


def _organism_or_skip():
    from steerkit.models import organism

    d = organism.default_dir()
    if not ((d / "mllm" / "config.json").exists() and (d / "text" / "config.json").exists()):
        pytest.skip(f"no trained organism in {d} (building it takes minutes; run steerkit.models.organism.build)")
    from steerkit.models.loading import load_model

    return load_model("steerkit/organism")


@pytest.mark.slow
def test_organism_self_distillation_paired(tmp_path):
    import torch

    from steerkit.distill import DistillConfig
    from steerkit.distill.experiment import ExperimentConfig, self_distill_experiment
    from steerkit.gap.problems import organism_arithmetic

    torch.manual_seed(0)
    model, processor = _organism_or_skip()
    train = organism_arithmetic(24, seed=0, split="train")
    test = organism_arithmetic(24, seed=0, split="test")
    cfg = ExperimentConfig(k=2, temperature=0.7, max_new_tokens=48, batch_size=48, n_boot=500,
                           distill=DistillConfig(max_steps=4, per_device_batch=8, effective_batch=8,
                                                 save_steps=1000, logging_steps=1))
    res = self_distill_experiment(model, processor, train, test, tmp_path, cfg)
    cmp = res["comparison"].set_index("mode")
    assert list(cmp.index) == ["text", "instruction_image"]
    for mode in cmp.index:
        r = cmp.loc[mode]
        assert r["n"] == 24
        assert r["diff"] == pytest.approx(r["after"] - r["before"])
        assert r["diff_lo"] <= r["diff"] <= r["diff_hi"]
        assert 0 <= r["mcnemar_p"] <= 1
    # The organism reads its text-mode problems well: there must be correct traces to distil.
    assert res["trace_summary"]["sample_accuracy"] > 0.5
    assert res["trace_summary"]["train_steps"] == 4
    assert set(res["forgetting"]) >= {"ok", "diff_lo", "diff_hi"}
