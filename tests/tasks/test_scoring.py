"""Letter scoring and generation scoring on tiny real-class models; conditions; CV-Bench metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from steerkit.errors import DataError
from steerkit.models.adapters import adapter_for
from steerkit.steer import assert_no_hooks, steer
from steerkit.tasks import Condition, cvbench_scores, evaluate, generate, letter_logprobs, letter_token_ids
from steerkit.tasks.scoring import PAPER_PREFIX, build_prompt, item_image


@pytest.fixture(scope="module")
def items():
    return generate(n_per_task=4, seed=0, size=64)


def test_letter_token_ids_use_spellings_every_letter_has():
    class Tok:  # " A" exists only for A: it must not give A extra mass
        vocab = {"A": 1, "B": 2, "C": 3, " A": 4, "(A": 5, "(B": 6, "(C": 7}

        def encode(self, s, add_special_tokens=False):
            return [self.vocab[s]] if s in self.vocab else [0, 0]

    ids = letter_token_ids(Tok(), "ABC")
    assert ids == {"A": [1, 5], "B": [2, 6], "C": [3, 7]}
    with pytest.raises(DataError, match="method='generate'"):
        letter_token_ids(Tok(), "ABCD")


def test_letter_logprobs_match_a_manual_forward(tiny, items):
    model, processor = tiny("llava")
    adapter = adapter_for(model)
    ids = letter_token_ids(adapter.tokenizer(processor), "ABCDE")
    batched = letter_logprobs(model, processor, items, batch_size=5)  # mixed prompt lengths -> left padding
    for k in (0, 5, 13):
        it = items[k]
        inputs = adapter.build_inputs(processor, [build_prompt(it)], [item_image(it)])
        with torch.no_grad():
            logp = torch.log_softmax(model(**inputs).logits[0, -1].float(), -1)
        for c, L in enumerate(it.letters):
            assert batched[k, c] == pytest.approx(torch.logsumexp(logp[ids[L]], 0).item(), abs=1e-4)
        assert np.isneginf(batched[k, len(it.choices):]).all()


def _last_hidden(model, processor, items):
    adapter = adapter_for(model)
    inputs = adapter.build_inputs(processor, [build_prompt(it) for it in items], [item_image(it) for it in items])
    with torch.no_grad():
        return model(**inputs, output_hidden_states=True).hidden_states[-1][:, -1].float()


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_letter_and_generation_agree_where_generation_parses(tiny, items, family):
    model, processor = tiny(family)
    tok = adapter_for(model).tokenizer(processor)
    head = adapter_for(model).lm_head_module(model)
    ids = letter_token_ids(tok, "AB")
    # Make "A" and "B" dominate the vocabulary, with the winner varying across items: their head rows point
    # along +/- the main direction in which the items' final hidden states differ (orthogonal to their mean).
    h = _last_hidden(model, processor, items)
    mean = h.mean(0)
    delta = torch.linalg.svd(h - mean, full_matrices=False).Vh[0]
    delta = delta - (delta @ mean) / (mean @ mean) * mean
    scale = 60.0 / (h - mean).matmul(delta).abs().median()
    saved = head.weight.detach().clone()
    try:
        with torch.no_grad():
            head.weight[ids["A"][0]] = delta * scale
            head.weight[ids["B"][0]] = -delta * scale
        letter = evaluate(model, processor, items, method="letter", batch_size=8, progress=False)
        gen = evaluate(model, processor, items, method="generate", batch_size=8, max_new_tokens=1, progress=False)
    finally:
        with torch.no_grad():
            head.weight.copy_(saved)
    parsed = gen["pred"] != ""
    assert parsed.sum() >= len(items) // 2, gen["generation"].tolist()
    assert set(gen.loc[parsed, "pred"]) == {"A", "B"}  # both letters occur: the agreement is not a constant
    assert (letter.loc[parsed, "pred"].to_numpy() == gen.loc[parsed, "pred"].to_numpy()).all()
    assert gen["lp_A"].isna().all() and not letter["lp_A"].isna().any()


def test_evaluate_conditions_steering_and_hint(tiny, items, tmp_path):
    model, processor = tiny("llava")
    d = adapter_for(model).hidden_size(model)
    vec = torch.randn(d, generator=torch.Generator().manual_seed(1))
    conds = {"baseline": None,
             "steered": lambda: steer(model, vec, layers=[0], alpha=4.0, tokens="image"),
             "hint": Condition("hint", hint="Count the objects carefully, one by one.")}
    df = evaluate(model, processor, items, conditions=conds, batch_size=6, out=tmp_path / "r.parquet",
                  progress=False)
    assert_no_hooks(model)
    assert len(df) == 3 * len(items)
    assert list(df.columns[:9]) == ["id", "task", "source", "split", "condition", "method", "pred", "answer",
                                    "correct"]
    assert df["condition"].tolist() == ["baseline"] * 16 + ["steered"] * 16 + ["hint"] * 16
    assert df["id"].tolist()[:16] == [it.id for it in items]
    base, steered, hint = (df[df.condition == c][["lp_A", "lp_B"]].to_numpy() for c in conds)
    assert not np.allclose(base, steered) and not np.allclose(base, hint)
    again = evaluate(model, processor, items, batch_size=16, progress=False)  # batch size does not matter
    np.testing.assert_allclose(again[["lp_A", "lp_B"]].to_numpy(), base, atol=1e-4)
    stored = pd.read_parquet(tmp_path / "r.parquet")
    assert len(stored) == len(df) and stored["correct"].dtype == bool
    assert (df["correct"] == (df["pred"] == df["answer"])).all()
    with pytest.raises(ValueError, match="method"):
        evaluate(model, processor, items, method="sample")


def test_text_only_items_are_scored_without_images(tiny):
    from steerkit.tasks import Item

    model, processor = tiny("llava")
    items = [Item(id=str(i), image=None, prompt=f"Is {i} even? (A) yes (B) no", choices=["yes", "no"],
                  answer="A" if i % 2 == 0 else "B", task="Parity") for i in range(3)]
    df = evaluate(model, processor, items, progress=False)
    assert len(df) == 3 and df["lp_A"].notna().all()
    assert build_prompt(items[0]) == PAPER_PREFIX + items[0].prompt


def test_cvbench_scores_follow_the_official_definition():
    # ADE20K 8/10, COCO 2/10 (pooled 2D would be 0.5 either way), Omni3D 3/4; make sizes unequal to tell apart
    rows = ([("ADE20K", c) for c in [1] * 8 + [0] * 2] + [("COCO", c) for c in [1] * 2 + [0] * 28]
            + [("Omni3D", c) for c in [1] * 3 + [0] * 1])
    df = pd.DataFrame({"source": [r[0] for r in rows], "correct": [bool(r[1]) for r in rows],
                       "condition": "baseline"})
    s = cvbench_scores(df, n_boot=300).iloc[0]
    assert s["acc_ADE20K"] == pytest.approx(0.8) and s["acc_COCO"] == pytest.approx(2 / 30)
    assert s["acc2D"] == pytest.approx((0.8 + 2 / 30) / 2)  # not the pooled 10/40
    assert s["acc3D"] == pytest.approx(0.75)
    assert s["overall"] == pytest.approx(((0.8 + 2 / 30) / 2 + 0.75) / 2)
    assert s["overall_lo"] <= s["overall"] <= s["overall_hi"]
    only2d = cvbench_scores(df[df.source != "Omni3D"], n_boot=100).iloc[0]
    assert np.isnan(only2d["acc3D"]) and np.isnan(only2d["overall"]) and not np.isnan(only2d["acc2D"])
