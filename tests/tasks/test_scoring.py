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


class _SpellTok:
    """A vocabulary where "A".."C" and "(A".."(C" are one token each, " A" only for A, and decode is exact."""

    vocab = {"A": 1, "B": 2, "C": 3, " A": 4, "(A": 5, "(B": 6, "(C": 7, "x": 8, "left": 9}

    def encode(self, s, add_special_tokens=False):
        return [self.vocab[s]] if s in self.vocab else [0, 0]

    def decode(self, ids, skip_special_tokens=True):
        inv = {v: k for k, v in self.vocab.items()}
        return "".join(inv.get(i, "") for i in ids)


def test_letter_scorer_applies_the_one_spelling_rule_and_parses_the_greedy_token():
    from steerkit.tasks import Item, LetterScorer

    scorer = LetterScorer(_SpellTok(), n_choices=3)
    # " A" is one token for A only, so it counts for no letter; "A" and "(A" count for all three
    assert scorer.token_ids == {"A": [1, 5], "B": [2, 6], "C": [3, 7]}
    items = [Item(id="i0", image=None, prompt="?", choices=["left", "right"], answer="A", task="T"),
             Item(id="i1", image=None, prompt="?", choices=["1", "2", "3"], answer="C", task="T")]
    logits = torch.full((4, 10), -5.0)  # 2 repeats x 2 items: row r * 2 + b scores item b
    logits[0, 4] = 9.0   # item 0: " A" is the argmax but not a counted spelling -> greedy " A" parses to A
    logits[0, 2] = 3.0   # ... while the letter log-likelihood prefers B
    logits[1, 7] = 4.0   # item 1: "(C" -> C both ways
    logits[2, 9] = 6.0   # item 0 again: greedy "left" names choice A; letters tie at the floor
    logits[3, 8] = 6.0   # item 1 again: greedy "x" names nothing
    rows = scorer.score(logits, items, repeats=2)
    logp = torch.log_softmax(logits, -1)
    assert rows[0]["pred"] == "B" and not rows[0]["correct"]
    assert rows[0]["greedy_text"] == " A" and rows[0]["greedy_pred"] == "A" and rows[0]["greedy_correct"]
    assert rows[0]["logprobs"] == pytest.approx([torch.logsumexp(logp[0, [1, 5]], 0).item(),
                                                 torch.logsumexp(logp[0, [2, 6]], 0).item()], abs=1e-6)
    assert len(rows[1]["logprobs"]) == 3 and rows[1]["pred"] == "C" and rows[1]["greedy_pred"] == "C"
    assert rows[2]["greedy_pred"] == "A" and rows[3]["greedy_pred"] == "" and not rows[3]["greedy_correct"]
    np.testing.assert_allclose(scorer.logprobs(logits)[:, :2].numpy(),
                               np.array([r["logprobs"][:2] for r in rows]), atol=1e-6)
    with pytest.raises(DataError, match="for_items"):  # an item with more choices than the scorer was built for
        LetterScorer(_SpellTok(), n_choices=2).score(logits[:2], items)
    with pytest.raises(DataError, match="method='generate'"):  # "D" and "(D" are not single tokens
        LetterScorer(_SpellTok(), n_choices=4)


def test_evaluate_and_sweep_score_the_same_logits_the_same_way(tiny, items):
    from steerkit.sweep import BASELINE, sweep
    from steerkit.tasks.scoring import LetterScorer, item_inputs, last_logits

    model, processor = tiny("llava")
    ev = evaluate(model, processor, items, batch_size=5, progress=False)
    # the one scorer, called directly on one forward's logits, is what evaluate reports
    adapter = adapter_for(model)
    with torch.no_grad():
        logits = last_logits(model, item_inputs(adapter, processor, items[:5], PAPER_PREFIX))
    direct = LetterScorer.for_items(adapter.tokenizer(processor), items).score(logits, items[:5])
    assert [r["pred"] for r in direct] == ev["pred"].tolist()[:5]
    d = adapter_for(model).hidden_size(model)
    vec = {("meanshift", "counting"): {0: torch.zeros(d)}}
    sw = sweep(model, processor, items, vec, [0], [1.0], ["image"], batch_size=5, prompt_baseline=False,
               progress=False)
    base = sw[sw.method == BASELINE].set_index("item_id").loc[ev["id"]]
    assert base["pred"].tolist() == ev["pred"].tolist()
    lp = np.array([r + [np.nan] * (6 - len(r)) for r in base["logprobs"]])
    np.testing.assert_allclose(lp, ev[[f"lp_{L}" for L in "ABCDEF"]].to_numpy(), atol=1e-4)
