"""On the organism: image-mode accuracy after self-distillation vs before, with a paired bootstrap CI.

The first test checks that the measurement is made and well-formed; the second is a headline guard: a small
self-distillation run (held-out test problems, disjoint from the training problems by construction) must raise
image-mode arithmetic with a paired CI above 0 (docs/distill.md).
"""

from __future__ import annotations

import pytest


def _shipped_organism():
    from steerkit.models.loading import load_model

    # The shipped organism is part of the repository: a missing one fails (ModelNotBuiltError), never skips.
    return load_model("steerkit/organism")


@pytest.mark.slow
def test_organism_self_distillation_paired(tmp_path):
    import torch

    from steerkit.distill import DistillConfig
    from steerkit.distill.experiment import ExperimentConfig, self_distill_experiment
    from steerkit.gap.problems import problem_set

    torch.manual_seed(0)
    model, processor = _shipped_organism()
    train = problem_set("organism", 24, seed=0, split="train")
    test = problem_set("organism", 24, seed=0, split="test")
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


# The guard run's size: small enough for CI (about a minute on 2 cores), large enough for a CI above 0.
GUARD = dict(n_train=200, n_test=100, lr=2e-3, epochs=4.0)


@pytest.mark.slow
def test_organism_self_distillation_raises_image_mode(tmp_path):
    """Greedy text-mode traces on 200 training additions, LoRA on the LM (lr 2e-3), 100 held-out additions: the
    image-mode gain's paired bootstrap CI lies above 0."""
    import torch

    from steerkit.distill import DistillConfig
    from steerkit.distill.experiment import ExperimentConfig, self_distill_experiment
    from steerkit.gap.problems import problem_set

    torch.manual_seed(0)
    model, processor = _shipped_organism()
    train = problem_set("organism", GUARD["n_train"], seed=0, split="train")
    test = problem_set("organism", GUARD["n_test"], seed=1, split="test")
    # Held out: no test addition, nor its commuted form, is a training addition.
    trained = {frozenset((p.extra["a"], p.extra["b"])) for p in train}
    assert not [p.question for p in test if frozenset((p.extra["a"], p.extra["b"])) in trained]
    cfg = ExperimentConfig(k=1, temperature=0.0, max_new_tokens=48, batch_size=100, n_boot=1000,
                           distill=DistillConfig(lr=GUARD["lr"], epochs=GUARD["epochs"], per_device_batch=16,
                                                 effective_batch=16, save_steps=10_000, logging_steps=5))
    res = self_distill_experiment(model, processor, train, test, tmp_path, cfg)
    image = res["comparison"].set_index("mode").loc["instruction_image"]
    assert image["n"] == GUARD["n_test"]
    assert image["diff_lo"] > 0, image.to_dict()
