"""Steering inside the gap harness (run_gap(steer=...), run_gap_steered, gap_effects) on the organism."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pandas as pd
import pytest
import torch

import steerkit.models.generation as generation
from steerkit.errors import GapError, SteeringError
from steerkit.gap import STEER_COLUMNS, UNSTEERED, GapSteer, gap_effects, run_gap, run_gap_steered
from steerkit.gap.modes import mode_input, style_for
from steerkit.gap.problems import problem_set
from steerkit.steer import _ACTIVE_ATTR, steering_hook_count
from steerkit.vectors import SteeringVector

# The columns run_gap wrote before steering existed, in order (its rows must not change).
UNSTEERED_COLUMNS = ["item_id", "source", "mode", "question", "gold", "prompt", "response", "pass1_response",
                     "answer", "parse_method", "format_ok", "correct", "transcript", "ocr_engine", "response_chars",
                     "response_words", "style", "font", "size", "scale", "invert", "temperature", "model"]
MODES = ["text", "image", "instruction_image"]
TOKENS = 12
# The organism's residual stream has a median norm of ~40-65 after layers 0-2; a random direction of norm 300 at
# layer 0 on every token changed all 4 responses of every mode (3 at norm 100), so norm 300 is "large".
BIG = 300.0


@functools.cache
def _organism():
    from steerkit import load_model

    model, processor = load_model("steerkit/organism")
    return model, processor, problem_set("organism", 4, seed=0)


def _noise(model) -> SteeringVector:
    v = torch.randn(model.config.text_config.hidden_size, generator=torch.Generator().manual_seed(0))
    return SteeringVector({0: v / v.norm(), 2: -v / v.norm()}, method="random", concept="noise",
                          n_layers=model.config.text_config.num_hidden_layers)


@pytest.fixture
def calls(monkeypatch):
    """Every generate_text call of run_gap: (has images, steerkit hooks attached during it)."""
    seen: list[tuple[bool, int]] = []
    real = generation.generate_text

    def spy(model, processor, prompts, images=None, **kw):
        seen.append((images is not None, steering_hook_count(model)))
        return real(model, processor, prompts, images, **kw)

    monkeypatch.setattr(generation, "generate_text", spy)
    return seen


def test_steer_none_keeps_the_unsteered_rows():
    model, processor, probs = _organism()
    df = run_gap(model, processor, probs, modes=MODES, max_new_tokens=TOKENS)
    assert list(df.columns) == UNSTEERED_COLUMNS + list(STEER_COLUMNS)
    pd.testing.assert_frame_equal(df, run_gap(model, processor, probs, modes=MODES, max_new_tokens=TOKENS,
                                              steer=None))
    # The responses are those of generate_text on the mode inputs, with no hook in sight.
    style = style_for(probs)
    for mode in MODES:
        xs = [mode_input(p, mode, style) for p in probs]
        images = [x.image for x in xs] if xs[0].image is not None else None
        ref = generation.generate_text(model, processor, [x.prompt for x in xs], images, max_new_tokens=TOKENS,
                                       seed=0, batch_size=8)
        assert df.loc[df["mode"] == mode, "response"].tolist() == ref, mode
    assert df["steer_name"].isna().all() and df["steer_layer"].isna().all() and df["steer_alpha"].isna().all()
    assert df["steer_scope"].isna().all() and not df["steer_applied"].any()
    assert steering_hook_count(model) == 0


def test_zero_steering_matches_unsteered_and_hooks_were_on(calls):
    model, processor, probs = _organism()
    base = run_gap(model, processor, probs, modes=MODES, max_new_tokens=TOKENS)
    assert all(hooks == 0 for _, hooks in calls)
    v = _noise(model)
    for cond in (GapSteer(v, layer=0, alpha=0.0), GapSteer(torch.zeros(v.hidden_size), layer=0, alpha=BIG)):
        calls.clear()
        df = run_gap(model, processor, probs, modes=MODES, max_new_tokens=TOKENS, steer=cond)
        assert [hooks for _, hooks in calls] == [2] * len(MODES)  # a pre-hook and one layer hook per generation
        pd.testing.assert_frame_equal(df[UNSTEERED_COLUMNS], base[UNSTEERED_COLUMNS])
        assert (df["steer_name"] == cond.label).all() and (df["steer_layer"] == 0).all()
        assert (df["steer_alpha"] == cond.alpha).all() and (df["steer_scope"] == "both").all()
        assert df["steer_applied"].all()
    assert steering_hook_count(model) == 0


@pytest.mark.parametrize("scope", ["both", "text"])
def test_a_large_random_vector_changes_every_mode(scope):
    model, processor, probs = _organism()
    base = run_gap(model, processor, probs, modes=MODES, max_new_tokens=TOKENS)
    df = run_gap(model, processor, probs, modes=MODES, max_new_tokens=TOKENS,
                 steer=GapSteer(_noise(model), layer=0, alpha=BIG, scope=scope))
    changed = (df["response"] != base["response"]).groupby(df["mode"]).mean()
    assert (changed >= 0.5).all(), changed.to_dict()
    assert steering_hook_count(model) == 0


def test_image_scope_steers_only_generations_with_images(calls):
    model, processor, probs = _organism()
    df = run_gap(model, processor, probs, modes=MODES, max_new_tokens=TOKENS,
                 steer=GapSteer(_noise(model), layer=0, alpha=BIG, scope="image"))
    assert calls == [(False, 0), (True, 2), (True, 2)]  # text unsteered: it has no image positions
    assert df.groupby("mode")["steer_applied"].all().to_dict() == {"image": True, "instruction_image": True,
                                                                   "text": False}
    assert (df["steer_scope"] == "image").all()


def test_both_ocr_2p_passes_and_the_external_text_pass_are_steered(calls):
    model, processor, probs = _organism()
    # The organism was never trained to transcribe; these prompts only give the OCR modes something to run.
    style = dataclasses.replace(style_for(probs), ocr_1p_prompt="{instruction}",
                                ocr_2p_transcribe_prompt="Compute the sum in the image .")
    kw = dict(modes=["ocr_1p", "ocr_2p", "ocr_external"], style=style, max_new_tokens=TOKENS,
              ocr_engine=lambda image: "12+34")
    base = run_gap(model, processor, probs, **kw)
    assert calls == [(True, 0), (True, 0), (False, 0), (False, 0)]
    calls.clear()
    df = run_gap(model, processor, probs, steer=GapSteer(_noise(model), layer=0, alpha=BIG), **kw)
    # ocr_1p, ocr_2p pass 1 (image), ocr_2p pass 2 (text), ocr_external (text): all four steered
    assert calls == [(True, 2), (True, 2), (False, 2), (False, 2)]
    assert df["steer_applied"].all()
    ext = df["mode"] == "ocr_external"  # the same transcript both times: only the steered text pass differs
    assert (df.loc[ext, "transcript"] == base.loc[ext, "transcript"]).all()
    assert (df.loc[ext, "response"] != base.loc[ext, "response"]).mean() >= 0.5
    calls.clear()
    image_only = run_gap(model, processor, probs, steer=GapSteer(_noise(model), layer=0, alpha=BIG, scope="image"),
                         **kw)
    assert calls == [(True, 2), (True, 2), (False, 0), (False, 0)]
    assert image_only.groupby("mode")["steer_applied"].all().to_dict() == {"ocr_1p": True, "ocr_2p": True,
                                                                           "ocr_external": False}


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_an_exception_mid_run_leaves_no_hook(monkeypatch, error):
    model, processor, probs = _organism()
    real = generation.generate_text
    seen = []

    def fails_second(model, processor, prompts, images=None, **kw):
        seen.append(steering_hook_count(model))
        if len(seen) == 2:
            raise error("generation failed mid-run")
        return real(model, processor, prompts, images, **kw)

    monkeypatch.setattr(generation, "generate_text", fails_second)
    cond = GapSteer(_noise(model), layer=0, alpha=BIG)
    with pytest.raises(error, match="mid-run"):
        run_gap(model, processor, probs, modes=MODES, max_new_tokens=TOKENS, steer=cond)
    assert seen == [2, 2]  # the failing call ran steered
    assert steering_hook_count(model) == 0 and not getattr(model, _ACTIVE_ATTR, set())
    monkeypatch.setattr(generation, "generate_text", real)
    # The same layer can be steered again (no "already steered" clash left behind).
    df = run_gap(model, processor, probs, modes=["text"], max_new_tokens=4, steer=cond)
    assert df["steer_applied"].all() and steering_hook_count(model) == 0


def test_run_gap_steered_one_frame_and_its_effects():
    model, processor, probs = _organism()
    v = _noise(model)
    conds = [GapSteer(v, layer=0, alpha=0.0, name="zero"), GapSteer(v, layer=0, alpha=BIG)]
    df = run_gap_steered(model, processor, probs, conds, modes=["text", "instruction_image"], max_new_tokens=TOKENS)
    assert list(pd.unique(df["condition"])) == [UNSTEERED, "zero", "noise/random@L0x300/both"]
    assert len(df) == 3 * 2 * len(probs) and df["steer_layer"].dtype == "Int64"
    base, zero, big = (df[df["condition"] == c].reset_index(drop=True) for c in pd.unique(df["condition"]))
    assert zero["response"].tolist() == base["response"].tolist()
    assert (big["response"] != base["response"]).mean() >= 0.5
    eff = gap_effects(df, n_boot=200).set_index(["condition", "mode"])
    acc = df.groupby(["condition", "mode"])["correct"].mean()
    assert np.allclose(eff["accuracy"], acc.loc[eff.index])
    assert (eff.loc["zero", "delta"] == 0).all() and (eff.loc["zero", "gap_change"].dropna() == 0).all()
    cell = ("noise/random@L0x300/both", "instruction_image")
    assert eff.loc[cell, "delta"] == pytest.approx(acc[cell] - acc[(UNSTEERED, "instruction_image")])
    with pytest.raises(GapError, match="more than once"):
        run_gap_steered(model, processor, probs, [conds[1], conds[1]], modes=["text"], max_new_tokens=2)


def _hand_frame() -> pd.DataFrame:
    """10 items, modes text and image, under the baseline and two conditions.

    unsteered: text 0.8, image 0.2 (gap 0.6); "helps": image up to 0.8 on 6 items (gap 0.0, closes it);
    "hurts_text": text down to 0.2, image unchanged (gap 0.0 too, by breaking text).
    """
    text0 = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0]
    image0 = [0, 0, 0, 0, 0, 0, 1, 1, 0, 0]
    cells = {(UNSTEERED, "text"): text0, (UNSTEERED, "image"): image0,
             ("helps", "text"): text0, ("helps", "image"): [1, 1, 1, 1, 1, 1, 1, 1, 0, 0],
             ("hurts_text", "text"): [0, 0, 0, 0, 0, 0, 1, 1, 0, 0], ("hurts_text", "image"): image0}
    rows = [dict(condition=c, mode=m, item_id=f"i{i}", correct=bool(x))
            for (c, m), xs in cells.items() for i, x in enumerate(xs)]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # row order must not matter


def test_gap_effects_on_a_hand_built_frame():
    eff = gap_effects(_hand_frame(), n_boot=2000)
    assert list(eff["condition"]) == [UNSTEERED] * 2 + ["helps"] * 2 + ["hurts_text"] * 2
    assert list(eff["mode"]) == ["text", "image"] * 3
    e = eff.set_index(["condition", "mode"])
    assert e["accuracy"].round(6).tolist() == [0.8, 0.2, 0.8, 0.8, 0.2, 0.2]
    assert e.loc[(UNSTEERED, "image"), "gap"] == pytest.approx(0.6) and np.isnan(e.loc[(UNSTEERED, "image"),
                                                                                      "delta"])
    helps, hurts = e.loc[("helps", "image")], e.loc[("hurts_text", "image")]
    assert helps["delta"] == pytest.approx(0.6) and helps["delta_lo"] > 0 and helps["n_paired"] == 10
    assert helps["gap"] == pytest.approx(0.0) and helps["gap_unsteered"] == pytest.approx(0.6)
    assert helps["gap_change"] == pytest.approx(-0.6) and helps["gap_change_hi"] < 0 and helps["gap_narrowed"]
    assert helps["gap_closed"] == pytest.approx(1.0)
    assert helps["mcnemar_p"] == pytest.approx(2 / 2 ** 6)  # 6 discordant items, all one way
    # The same narrowing, reached by breaking text: delta is 0 on image and -0.6 on text.
    assert hurts["delta"] == 0 and e.loc[("hurts_text", "text"), "delta"] == pytest.approx(-0.6)
    assert hurts["gap_change"] == pytest.approx(-0.6) and hurts["gap_narrowed"]
    assert hurts["text_delta"] == pytest.approx(-0.6) and helps["text_delta"] == 0
    assert e.loc[("helps", "text"), "delta"] == 0 and np.isnan(e.loc[("helps", "text"), "gap"])
    steered = eff[eff["condition"] != UNSTEERED]
    assert ((steered["delta_lo"] <= steered["delta"]) & (steered["delta"] <= steered["delta_hi"])).all()


def test_gap_effects_reads_steer_name_and_rejects_bad_frames():
    df = _hand_frame()
    named = df.assign(steer_name=df["condition"].where(df["condition"] != UNSTEERED, None)).drop(
        columns="condition")
    pd.testing.assert_frame_equal(gap_effects(named, n_boot=200), gap_effects(df, n_boot=200))
    with pytest.raises(GapError, match="no 'unsteered' rows"):
        gap_effects(df[df["condition"] != UNSTEERED])
    with pytest.raises(GapError, match="more than once"):
        gap_effects(pd.concat([df, df.head(1)]))
    with pytest.raises(GapError, match="neither"):
        gap_effects(df.drop(columns="condition"))


def test_gap_steer_validates_and_labels():
    v = SteeringVector({1: torch.ones(8)}, method="mean_shift", concept="arithmetic", n_layers=4)
    assert GapSteer(v, layer=1, alpha=0.5, scope="image").label == "arithmetic/mean_shift@L1x0.5/image"
    assert GapSteer(torch.ones(8), 1, 2.0, when="all").label == "vector@L1x2/both+all"
    assert GapSteer(v, 1, 2.0, name="mine").columns(True)["steer_name"] == "mine"
    with pytest.raises(SteeringError, match="no entry for layer 2"):
        GapSteer(v, layer=2, alpha=1.0)
    with pytest.raises(SteeringError, match="scope="):
        GapSteer(v, layer=1, alpha=1.0, scope="pixels")
    with pytest.raises(SteeringError, match="when="):
        GapSteer(v, layer=1, alpha=1.0, when="decode")
    with pytest.raises(SteeringError, match="finite"):
        GapSteer(v, layer=1, alpha=float("nan"))
    with pytest.raises(GapError, match="baseline"):
        GapSteer(v, layer=1, alpha=1.0, name=UNSTEERED)
    with pytest.raises(GapError, match="GapSteer"):
        run_gap(None, None, [], steer=v)
