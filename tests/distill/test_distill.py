"""Self-distillation on every tiny family: response-only loss, one LoRA step that touches nothing else, scopes,
resume, LoRA-weights round trip; trace sampling and pairing."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from steerkit.distill import (
    DistillConfig,
    collate,
    distill,
    encode_pair,
    keep_correct,
    load_lora,
    lora_targets,
    make_pairs,
    sample_traces,
    trace_summary,
)
from steerkit.distill.data import IGNORE_INDEX, response_fills
from steerkit.errors import DistillError
from steerkit.gap.problems import word_problems
from steerkit.models.adapters import adapter_for
from steerkit.models.tiny import FAMILIES
from steerkit.render import RenderConfig

SMALL = RenderConfig(canvas=(256, 192), size=10, margins=4, min_size=4)
STEP = DistillConfig(max_steps=1, per_device_batch=3, effective_batch=3, rank=4, dropout=0.0, lr=1e-2,
                     save_steps=1000, warmup=0)


def _pairs(n=2, replay=0.0):
    probs = word_problems(n, seed=0)
    kept = pd.DataFrame([dict(item_id=p.id, response=f" 7+8=15 . <answer>{p.answer}</answer>") for p in probs])
    return make_pairs(kept, probs, render=SMALL, text_replay=replay), probs


def _fresh(family):
    from steerkit.models.tiny import tiny_model

    return tiny_model(family)  # a new instance: distillation injects LoRA layers in place


@pytest.mark.parametrize("family", FAMILIES)
def test_loss_is_masked_to_the_response(family, tiny):
    model, processor = tiny(family)
    tok = adapter_for(model).tokenizer(processor)
    pairs, _ = _pairs(2, replay=0.5)
    examples = [encode_pair(model, processor, p) for p in pairs]
    for pair, ex in zip(pairs, examples):
        resp = tok(pair.response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        labels = ex["labels"][0]
        n = len(resp)
        assert labels[-n:].tolist() == resp and ex["input_ids"][0, -n:].tolist() == resp
        assert (labels[:-n] == IGNORE_INDEX).all(), "prompt tokens must carry no loss"
    img_tok = adapter_for(model).image_token_id(model)
    batch = collate(examples, tok.pad_token_id, response_fills(processor))
    assert (batch["input_ids"] == img_tok).any(), "image tokens expected in the batch"
    assert (batch["labels"][batch["input_ids"] == img_tok] == IGNORE_INDEX).all()
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()
    # The model's own loss equals cross-entropy over the response positions only.
    model.eval()
    with torch.no_grad():
        out = model(**batch)
    logits, labels = out.logits[:, :-1].float(), batch["labels"][:, 1:]
    keep = labels != IGNORE_INDEX
    manual = torch.nn.functional.cross_entropy(logits[keep], labels[keep])
    torch.testing.assert_close(out.loss, manual, rtol=1e-4, atol=1e-4)
    assert keep.sum() == sum(len(tok(p.response, add_special_tokens=False)["input_ids"]) + 1 for p in pairs)
    # Response tokens attend causally (no look-ahead, e.g. through a prefix-LM token_type_ids): changing the last
    # response token leaves every earlier position's logits unchanged.
    ex = {k: v.clone() for k, v in examples[0].items()}
    ex2 = {k: v.clone() for k, v in ex.items()}
    ex2["input_ids"][0, -2] = (ex2["input_ids"][0, -2] + 1) % len(tok)
    with torch.no_grad():
        a, b = model(**ex).logits, model(**ex2).logits
    torch.testing.assert_close(a[:, :-2], b[:, :-2])
    assert not torch.equal(a[:, -2:], b[:, -2:])


@pytest.mark.parametrize("family", FAMILIES)
def test_one_step_changes_only_lora(family, tmp_path):
    model, processor = _fresh(family)
    adapter = adapter_for(model)
    vision = adapter.vision_tower_modules(model)[0]
    vision_before = {k: v.clone() for k, v in vision.state_dict().items()}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    pairs, _ = _pairs(3, replay=0.34)
    res = distill(model, processor, pairs, tmp_path / "run", STEP)
    assert res.steps == 1 and res.lora_dir == tmp_path / "run" / "lora"
    assert (res.lora_dir / "adapter_config.json").exists()  # peft's own file name
    lora_changed = 0
    for name, p in res.model.named_parameters():
        if "lora_" in name:
            assert p.requires_grad
            if "lora_B" in name:
                lora_changed += int(p.abs().sum() > 0)  # B starts at zero: nonzero means it was trained
            continue
        base = name.replace("base_model.model.", "").replace(".base_layer", "")
        assert torch.equal(p, before[base]), f"{name} changed"
        assert not p.requires_grad
    assert lora_changed > 0
    after = vision.state_dict()
    assert set(after) == set(vision_before)
    assert all(torch.equal(after[k], vision_before[k]) for k in after), "vision tower changed"
    layers = adapter.layers
    assert all(any(t.startswith(path + ".") for path in layers) for t in res.targets), "LoRA outside the LM"


def test_scopes(tiny):
    model, _ = tiny("llava")
    lm = set(lora_targets(model, "lm"))
    lmp = set(lora_targets(model, "lm+projector"))
    vis = set(lora_targets(model, "vision"))
    assert lm < lmp and all("projector" in n for n in lmp - lm)
    assert vis and not (vis & lmp) and all("vision_tower" in n for n in vis)
    with pytest.raises(DistillError, match="unknown LoRA scope"):
        lora_targets(model, "everything")


def test_vision_scope_freezes_the_language_model(tmp_path):
    model, processor = _fresh("llava")
    lm = adapter_for(model).text_model_module(model)
    lm_before = {k: v.clone() for k, v in lm.state_dict().items()}
    pairs, _ = _pairs(3)
    cfg = DistillConfig(**{**STEP.__dict__, "scope": "vision"})
    res = distill(model, processor, pairs, tmp_path / "v", cfg)
    assert all("vision_tower" in t for t in res.targets)
    assert all(torch.equal(v, lm_before[k]) for k, v in lm.state_dict().items())


def test_resume_and_lora_round_trip(tmp_path):
    model, processor = _fresh("llava")
    pairs, _ = _pairs(3)
    cfg = DistillConfig(**{**STEP.__dict__, "max_steps": 2, "save_steps": 1, "per_device_batch": 1,
                           "effective_batch": 1})
    first = distill(model, processor, pairs, tmp_path / "r", cfg)
    assert first.steps == 2 and (tmp_path / "r" / "checkpoint-2").exists()
    model2, _ = _fresh("llava")
    cfg3 = DistillConfig(**{**cfg.__dict__, "max_steps": 3})
    resumed = distill(model2, processor, pairs, tmp_path / "r", cfg3, resume_from_checkpoint=True)
    assert resumed.steps == 3
    steps_logged = [s for s in resumed.log.get("step", pd.Series(dtype=float)).dropna()]
    assert min(steps_logged) >= 3, "resumed training must start after the checkpoint, not at step 1"
    # The saved LoRA weights reproduce the trained model's outputs on a fresh base model.
    base, _ = _fresh("llava")
    reloaded = load_lora(base, resumed.lora_dir)
    batch = collate([encode_pair(model2, processor, pairs[0])], 0, response_fills(processor))
    with torch.no_grad():
        a = resumed.model(**batch).logits
        b = reloaded(**batch).logits
    torch.testing.assert_close(a, b)


def test_sample_traces_and_pairs(monkeypatch):
    import steerkit.models.generation as gen

    probs = word_problems(3, seed=0)
    calls = {}

    def fake(model, processor, prompts, images=None, **kw):
        calls.update(kw, images=images, n=len(prompts))
        k = kw["num_return_sequences"]
        out = []
        for p in probs:
            out += [f"x <answer>{p.answer}</answer>", f"y <answer>{p.answer}</answer>", "<answer>-1</answer>",
                    f"x <answer>{p.answer}</answer>"][:k]
        return out

    monkeypatch.setattr(gen, "generate_text", fake)
    traces = sample_traces(None, None, probs, k=4, temperature=0.7, max_new_tokens=16)
    assert calls["images"] is None and calls["temperature"] == 0.7 and calls["n"] == 3
    assert len(traces) == 12 and traces["correct"].sum() == 9
    kept = keep_correct(traces)
    assert len(kept) == 6  # de-duplicated: two distinct correct traces per item
    assert len(keep_correct(traces, max_per_item=1)) == 3
    s = trace_summary(traces)
    assert s["sample_accuracy"] == 0.75 and s["items_with_a_correct_trace"] == 1.0
    pairs = make_pairs(kept, probs, render=SMALL)
    assert len(pairs) == 6 and all(p.image is not None and p.kind == "image" for p in pairs)
    assert pairs[0].image is pairs[1].image  # rendered once per item
    with pytest.raises(DistillError, match="no correct traces"):
        make_pairs(kept.iloc[:0], probs)
    with pytest.raises(DistillError, match="no problem"):
        make_pairs(kept, probs[:1])
