"""The engine against the 1-token lower bound of the paper's protocol (one greedy token per item and cell), across modes and batchings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from steerkit.errors import SteeringError
from steerkit.steer import assert_no_hooks
from steerkit.sweep.engine import BASELINE, PROMPTING, naive_protocol, sweep

from .helpers import make_items, make_vectors

LAYERS, ALPHAS, SCOPES = [0, 1], [0.5, 2.0], ["image", "text", "both"]


@pytest.mark.parametrize("family", ["llava", "qwen2_vl", "gemma3"])  # plain, M-RoPE, sliding/bidirectional
def test_engine_equals_naive_protocol_per_item_and_cell(tiny, family):
    model, processor = tiny(family)
    items = make_items(4)
    vecs = make_vectors(model, layers=LAYERS)
    df = sweep(model, processor, items, vecs, LAYERS, ALPHAS, SCOPES, batch_size=3, progress=False)
    assert df.attrs["mode"] == "replay"
    n_cells = len(LAYERS) * len(ALPHAS) * len(SCOPES)
    steered = df[df.method == "meanshift"]
    assert len(steered) == len(items) * n_cells
    assert (df.method == BASELINE).sum() == len(items) and (df.method == PROMPTING).sum() == len(items)
    vec = vecs[("meanshift", "counting")]
    for layer in LAYERS:
        for alpha in ALPHAS[1:]:  # the naive protocol is the slow part: one strength suffices per layer x scope
            for scope in SCOPES:
                ref = pd.DataFrame(naive_protocol(model, processor, items, vec, layer, alpha, scope))
                got = steered[(steered.layer == layer) & (steered.alpha == alpha) & (steered.scope == scope)]
                got = got.set_index("item_id").loc[ref.item_id]
                # the 1-token protocol: greedy first token, parsed -- identical per item
                assert got.greedy_text.tolist() == ref.greedy_text.tolist()
                assert got.greedy_correct.tolist() == ref.greedy_correct.tolist()
                # letter log-likelihood scoring -- identical answers, equal log-probs
                assert got.pred.tolist() == ref.pred.tolist()
                assert got.correct.tolist() == ref.correct.tolist()
                np.testing.assert_allclose(np.concatenate(got.logprobs.to_list()),
                                           np.concatenate(ref.logprobs.to_list()), atol=1e-4)
    base = pd.DataFrame(naive_protocol(model, processor, items, None, 0, 0.0, "image"))
    got = df[df.method == BASELINE].set_index("item_id").loc[base.item_id]
    assert got.greedy_text.tolist() == base.greedy_text.tolist() and got.pred.tolist() == base.pred.tolist()
    # steering must matter somewhere, or the comparisons above prove little
    strong = steered[(steered.layer == 0) & (steered.alpha == 2.0) & (steered.scope == "both")]
    assert not np.allclose(np.concatenate(strong.sort_values("item_index").logprobs.to_list()),
                           np.concatenate(df[df.method == BASELINE].sort_values("item_index").logprobs.to_list()))
    assert_no_hooks(model)


def test_modes_and_row_grouping_agree(tiny):
    model, processor = tiny("paligemma")
    items = make_items(4)
    vecs = make_vectors(model, layers=LAYERS, concepts=("counting", "spatial relationship"))
    kw = dict(progress=False, prompt_baseline=False)
    ref = sweep(model, processor, items, vecs, LAYERS, ALPHAS, SCOPES, mode="full", batch_size=4, **kw)
    for mode, bs, rows in [("replay", 4, 1000), ("replay", 3, 3), ("replay_vision", 2, 5)]:
        got = sweep(model, processor, items, vecs, LAYERS, ALPHAS, SCOPES, mode=mode, batch_size=bs, max_rows=rows, **kw)
        key = ["item_id", "method", "concept", "layer", "alpha", "scope"]
        a, b = ref.sort_values(key).reset_index(drop=True), got.sort_values(key).reset_index(drop=True)
        assert a[key].equals(b[key])
        assert a.pred.tolist() == b.pred.tolist() and a.greedy_text.tolist() == b.greedy_text.tolist()
        np.testing.assert_allclose(np.concatenate(a.logprobs.to_list()), np.concatenate(b.logprobs.to_list()),
                                   atol=1e-4)


def test_text_only_items_and_prompt_baseline(tiny):
    model, processor = tiny("llava")
    items = make_items(3, with_images=False)
    vecs = make_vectors(model, layers=[1])
    df = sweep(model, processor, items, vecs, [1], [1.0], ["text"], progress=False)
    hinted = df[df.method == PROMPTING]
    assert set(hinted.concept) == {"counting"} and len(hinted) == 3
    base = df[df.method == BASELINE]
    # the hint changes the prompt, so the letter log-probs move
    assert not np.allclose(np.concatenate(hinted.logprobs.to_list()), np.concatenate(base.logprobs.to_list()))


def test_errors_say_what_to_do(tiny):
    model, processor = tiny("llava")
    items = make_items(2)
    with pytest.raises(SteeringError, match="no entry for layers"):
        sweep(model, processor, items, make_vectors(model, layers=[0]), [1], [1.0], progress=False)
    with pytest.raises(SteeringError, match="scopes"):
        sweep(model, processor, items, make_vectors(model), [1], [1.0], ["pixels"], progress=False)
    with pytest.raises(SteeringError, match="mode"):
        sweep(model, processor, items, make_vectors(model), [1], [1.0], mode="fast", progress=False)
    # the replay passes explicit positions, which steer() does not check: the engine refuses an empty scope itself
    with pytest.raises(SteeringError, match=r"scope 'image' selects no token of items \['it0', 'it1'\]"):
        sweep(model, processor, make_items(2, with_images=False), make_vectors(model), [1], [1.0], ["image"],
              progress=False)
    with pytest.raises(SteeringError, match="pass the images"):  # the paper's protocol goes through steer()
        naive_protocol(model, processor, make_items(1, with_images=False), make_vectors(model)[("meanshift",
                       "counting")], 1, 1.0, "image")


def test_paper_masks_leave_the_last_prompt_token_unsteered(tiny):
    """exclude_last_prompt_token=True equals per-item steer(..., exclude_last_prompt_token=True) on text/both, leaves
    image scope alone, and changes text-scope answers' log-probs (the last prompt token is where they are read)."""
    model, processor = tiny("llava")
    items = make_items(3)
    vecs = make_vectors(model, layers=[0])
    vec = vecs[("meanshift", "counting")]
    kw = dict(batch_size=3, progress=False, prompt_baseline=False)
    paper = sweep(model, processor, items, vecs, [0], [2.0], SCOPES, exclude_last_prompt_token=True, **kw)
    plain = sweep(model, processor, items, vecs, [0], [2.0], SCOPES, **kw)
    for scope in SCOPES:
        ref = pd.DataFrame(naive_protocol(model, processor, items, vec, 0, 2.0, scope, exclude_last_prompt_token=True))
        got = paper[(paper.method == "meanshift") & (paper.scope == scope)].set_index("item_id").loc[ref.item_id]
        np.testing.assert_allclose(np.concatenate(got.logprobs.to_list()), np.concatenate(ref.logprobs.to_list()),
                                   atol=1e-4)
        assert got.greedy_text.tolist() == ref.greedy_text.tolist()
        other = plain[(plain.method == "meanshift") & (plain.scope == scope)].set_index("item_id").loc[ref.item_id]
        same = np.allclose(np.concatenate(got.logprobs.to_list()), np.concatenate(other.logprobs.to_list()))
        assert same == (scope == "image"), scope
    assert_no_hooks(model)
