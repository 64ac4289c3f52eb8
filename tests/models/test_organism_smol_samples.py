"""The SmolLM2 organism's training samples: drawn from the training split only (leak-free against every held-out set
its evaluation and the gap harness use), deterministic per (seed, stage, step), and encoded with the loss on the
target tokens only."""

from __future__ import annotations

import pytest
import torch

from steerkit.models.organism import world as w
from steerkit.models.organism_smol import samples as S
from steerkit.models.organism_smol.config import DEFAULT_STAGES, SmolOrganismConfig


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from steerkit.models.textlm import smollm2_gguf

    gguf = smollm2_gguf()
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


@pytest.fixture(scope="module")
def source(tokenizer):
    return S.SampleSource(tokenizer, n_train=300, seed=0)


def test_every_stage_kind_is_known_and_the_config_round_trips():
    from steerkit.models.organism_smol.evaluation import ARITH_MODES

    assert {k for s in DEFAULT_STAGES for k in s.kinds()} <= set(S.KINDS)
    # every arithmetic kind is measured by one held-out arithmetic mode, and every mode follows some kind
    assert set(S.ARITH_EVAL) == {k for k in S.KINDS if not k.startswith("scene_")}
    assert set(S.ARITH_EVAL.values()) == set(ARITH_MODES)
    cfg = SmolOrganismConfig()
    assert SmolOrganismConfig.from_dict(cfg.to_dict()) == cfg
    assert SmolOrganismConfig.from_dict({**cfg.to_dict(), "steps": 600}) == cfg  # an old build's key is ignored


def test_draws_are_deterministic_per_step_and_differ_between_steps(source):
    mix = DEFAULT_STAGES[-1].mix
    a, b = source.batch(mix, 0, "arith", 7), source.batch(mix, 0, "arith", 7)
    assert [(s.kind, s.prompt, s.target) for s in a] == [(s.kind, s.prompt, s.target) for s in b]
    assert all((x.image is None) == (y.image is None) and (x.image is None or x.image.tobytes() == y.image.tobytes())
               for x, y in zip(a, b))
    c = source.batch(mix, 0, "arith", 8)
    assert [s.target for s in a] != [s.target for s in c]
    assert [s.kind for s in a] == [k for k, n in mix for _ in range(n)]


def test_training_samples_never_touch_held_out_problems_or_scenes(source):
    """The sources draw split="train" only; every held-out set (final table, learning curve, gap problems) is
    split="test", disjoint by construction: no test addition (nor its commuted form) and no test scene is trained."""
    from steerkit.models.organism_smol.evaluation import EVAL_SEED, arithmetic_problems

    train_pairs = {(r["a"], r["b"]) for r in source.problems}
    for seed in (EVAL_SEED, EVAL_SEED + 1, 0, 1):
        for r in arithmetic_problems(300, seed=seed):
            assert (r["a"], r["b"]) not in train_pairs and (r["b"], r["a"]) not in train_pairs
    test_scenes = {w.describe(q.scene) for t in w.TASKS for q in w.scene_questions(t, 200, seed=EVAL_SEED, split="test")}
    assert not test_scenes & {w.describe(q.scene) for q in source.scenes}
    assert {q.split for q in source.scenes} == {"train"}


def test_targets_are_what_each_gap_mode_expects(source, tokenizer):
    from steerkit.gap.parse import parse_number, parse_transcript

    rng = __import__("random").Random(0)
    for kind in S.KINDS:
        s = source.draw(kind, rng, "t")
        assert (s.image is None) == (kind in ("scene_text", "arith_text"))
        if kind.startswith("scene_"):
            assert len(s.target) == 1 and tokenizer.decode(s.target).strip() in "ABCD"
            continue
        q = s.target.split("</transcript>")[0].removeprefix("<transcript>") if kind.startswith("transcribe") else None
        if kind == "transcribe":
            assert parse_transcript(s.target) == q and "<answer>" not in s.target
        else:
            value = parse_number(s.target).value
            a, b = (int(x) for x in (q or "").split("+")) if q else (None, None)
            assert value is not None and (q is None or int(value) == a + b)
        assert s.target.endswith(S.END)


def test_encode_puts_the_loss_on_the_target_tokens_only(source):
    """The per-sample loss equals a hand-computed cross-entropy over exactly the target tokens."""
    from steerkit.models.loading import load_model

    model, processor = load_model("tiny/llava")  # any family: the encoder is generic
    tok = processor.tokenizer
    samples = [S.Sample("arith_text", "Compute 1+2 .", None, "3 <answer>3</answer>"),
               S.Sample("scene_text", "Q? (A) x (B) y", None, (tok.encode("B", add_special_tokens=False)[0],))]
    batch = S.encode(model, processor, samples)
    assert batch["input_ids"].shape[1] % 16 == 0 and batch["target_len"].tolist()[1] == 1
    losses = S.sample_losses(model, batch)  # float32
    in_bf16 = S.sample_losses(model, batch, bf16=True)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    for i, n in enumerate(batch["target_len"].tolist()):
        ids = batch["input_ids"][i, -n:]
        ref = torch.nn.functional.cross_entropy(logits[i, -n - 1:-1], ids)
        torch.testing.assert_close(losses[i].detach(), ref, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(in_bf16[i].detach(), ref, rtol=2e-2, atol=2e-2)
        assert not torch.equal(in_bf16[i], losses[i])  # the flag does switch precision
    with pytest.raises(Exception, match="group them"):
        S.encode(model, processor, [samples[0], S.Sample("arith_image", "", object(), "x")])
