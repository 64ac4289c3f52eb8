"""The experiment wiring: before -> traces -> LoRA -> after, on a tiny LLaVA with a scripted generator."""

from __future__ import annotations

import pandas as pd

from steerkit.distill import DistillConfig
from steerkit.distill.experiment import ExperimentConfig, self_distill_experiment
from steerkit.gap.problems import word_problems
from steerkit.render import RenderConfig


def test_experiment_end_to_end(monkeypatch, tmp_path):
    import steerkit.models.generation as gen
    from steerkit.models.tiny import tiny_model

    train, test = word_problems(4, seed=0, split="train"), word_problems(3, seed=0, split="test")
    other = word_problems(2, seed=9, split="test")
    by_q = {p.question: p for p in train + test + other}

    def fake(model, processor, prompts, images=None, num_return_sequences=1, **kw):
        out = []
        for prompt in prompts:
            p = next((p for q, p in by_q.items() if q in prompt), None)
            for _ in range(num_return_sequences):
                if images is None:  # text mode: right
                    out.append(f"step <answer>{p.answer}</answer>")
                else:  # image mode: wrong
                    out.append("<answer>-1</answer>")
        return out

    monkeypatch.setattr(gen, "generate_text", fake)
    model, processor = tiny_model("llava")
    cfg = ExperimentConfig(k=2, max_new_tokens=4, transfer_fonts=("caveat",), n_boot=200,
                           distill=DistillConfig(max_steps=1, per_device_batch=2, effective_batch=2, rank=4,
                                                 save_steps=1000, warmup=0))
    res = self_distill_experiment(model, processor, train, test, tmp_path, cfg,
                                  render=RenderConfig(canvas=(320, 200), size=10, margins=4, min_size=4),
                                  transfer_problems=other)
    cmp = res["comparison"].set_index("mode")
    assert list(cmp.index) == ["text", "instruction_image", "text@synthetic", "instruction_image@synthetic",
                               "instruction_image@caveat"]
    assert cmp.loc["text@synthetic", "n"] == 2 and cmp.loc["instruction_image@caveat", "n"] == 3
    assert cmp.loc["text", "before"] == 1.0 and cmp.loc["text", "after"] == 1.0
    assert cmp.loc["instruction_image", "before"] == 0.0
    assert res["forgetting"]["ok"]
    assert res["trace_summary"]["pairs"] == 4  # k=2 identical samples de-duplicated to one per item
    assert res["trace_summary"]["train_steps"] == 1
    for name in ("before", "after", "traces", "comparison"):
        assert not pd.read_parquet(tmp_path / f"{name}.parquet").empty
    assert (tmp_path / "summary.json").exists() and (res["lora_dir"] / "adapter_config.json").exists()
    assert res["lora_dir"] == tmp_path / "train" / "lora"


def test_experiment_refuses_test_problems_that_are_training_problems(tmp_path):
    import pytest

    from steerkit.errors import DistillError

    train = word_problems(4, seed=0, split="train")
    test = word_problems(3, seed=0, split="test") + train[:1]
    with pytest.raises(DistillError, match="1 test problems are also training problems"):
        self_distill_experiment(None, None, train, test, tmp_path, ExperimentConfig())
