"""The gap harness: mode inputs, OCR-2P chaining, the tidy frame, reports, sweeps; one run on a tiny model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from steerkit.errors import GapError
from steerkit.gap import modes as gm
from steerkit.gap.modes import GENERIC, MODES, PromptStyle, mode_input, run_gap, save_results, sweep_render
from steerkit.gap.problems import word_problems
from steerkit.gap.report import compare_runs, gap_report, plot_gap, plot_sweep
from steerkit.render import RenderConfig


def test_mode_inputs_follow_the_protocol():
    p = word_problems(1, seed=0)[0]
    text = mode_input(p, "text", GENERIC)
    assert text.image is None and p.question in text.prompt and "<answer>" in text.prompt
    img = mode_input(p, "image", GENERIC)
    assert img.prompt == "" and img.image.size == (1280, 720)
    ii = mode_input(p, "instruction_image", GENERIC)
    assert p.question not in ii.prompt and ii.prompt == GENERIC.instruction
    # Image mode renders instruction + problem, instruction+image renders the problem alone: different pixels.
    assert np.asarray(img.image).mean() < np.asarray(ii.image).mean()
    assert "<transcript>" in mode_input(p, "ocr_1p", GENERIC).prompt
    assert mode_input(p, "ocr_2p", GENERIC).prompt == GENERIC.ocr_2p_transcribe_prompt
    # Same item, same pixels (the render seed is the item id).
    assert mode_input(p, "image", GENERIC, RenderConfig(jitter=2)).image.tobytes() == \
        mode_input(p, "image", GENERIC, RenderConfig(jitter=2)).image.tobytes()
    with pytest.raises(GapError, match="unknown mode"):
        mode_input(p, "audio", GENERIC)
    no_ocr = PromptStyle(name="x", instruction="Solve.")
    with pytest.raises(GapError, match="no 'ocr_1p' prompt"):
        mode_input(p, "ocr_1p", no_ocr)


class FakeReader:
    """Stands in for generate_text: solves text prompts correctly, 'reads' images with a fixed number error."""

    def __init__(self, problems):
        self.by_q = {p.question: p for p in problems}
        self.calls = []

    def __call__(self, model, processor, prompts, images=None, **kw):
        self.calls.append((list(prompts), images is not None))
        out = []
        for i, prompt in enumerate(prompts):
            if images is None:
                p = next((p for q, p in self.by_q.items() if q in prompt), None)  # None: a misread transcript
                out.append("long careful reasoning " * 5 + f"<answer>{p.answer if p else -1}</answer>")
            elif "Transcribe the text" in prompt:
                out.append(f"<transcript>{self._misread(i)}</transcript>")
            elif "transcribe" in prompt:
                out.append(f"<transcript>{self._misread(i)}</transcript> <answer>1</answer>")
            else:
                out.append("<answer>1</answer>")
        return out

    def _misread(self, i):
        q = list(self.by_q)[i]
        # The first problem is read correctly, the others get their first digit changed.
        if i == 0:
            return q
        for ch in q:
            if ch.isdigit():
                return q.replace(ch, str((int(ch) + 1) % 10), 1)
        return q


class _Cfg:
    _name_or_path = "fake"


class _Model:
    config = _Cfg()


@pytest.fixture
def fake_run(monkeypatch):
    import steerkit.models.generation as gen

    problems = word_problems(6, seed=1)
    reader = FakeReader(problems)
    monkeypatch.setattr(gen, "generate_text", reader)
    df = run_gap(_Model(), None, problems, modes=MODES, max_new_tokens=16)
    return df, reader, problems


def test_run_gap_tidy_frame(fake_run):
    df, reader, problems = fake_run
    assert len(df) == len(problems) * len(MODES)
    assert set(df.groupby("mode").size()) == {len(problems)}
    acc = df.groupby("mode")["correct"].mean()
    assert acc["text"] == 1.0 and acc["image"] == 0.0
    # OCR-2P: pass 2 is a text prompt that contains the transcript; only the correctly read problem is solved.
    ocr2 = df[df["mode"] == "ocr_2p"].reset_index(drop=True)
    assert ocr2.loc[0, "correct"] and not ocr2.loc[1:, "correct"].any()
    assert ocr2["pass1_response"].str.contains("<transcript>").all()
    second_pass = [c for c in reader.calls if not c[1] and "Transcribe" not in c[0][0]]
    assert any(ocr2.loc[1, "transcript"] in prompt for prompt in second_pass[-1][0])
    assert df.loc[df["mode"] == "text", "font"].isna().all()
    assert (df.loc[df["mode"] == "image", "font"] == "noto-sans").all()


def test_report_and_taxonomy(fake_run, tmp_path):
    from steerkit.gap.taxonomy import error_shares, length_stats, tag_errors

    df, _, problems = fake_run
    rep = gap_report(df, n_boot=300).set_index("mode")
    assert rep.loc["text", "accuracy"] == 1.0 and np.isnan(rep.loc["text", "diff"])
    assert rep.loc["image", "diff"] == -1.0 and rep.loc["image", "diff_hi"] == -1.0
    assert rep.loc["ocr_2p", "diff"] == pytest.approx(-5 / 6)
    assert rep.loc["image", "mcnemar_p"] < 0.05
    tagged = tag_errors(df)
    ocr2 = tagged[tagged["mode"] == "ocr_2p"]
    assert (ocr2["error_type"].iloc[1:] == "reading").all() and ocr2["error_type"].iloc[0] == "correct"
    ocr1 = tagged[tagged["mode"] == "ocr_1p"].reset_index(drop=True)
    assert ocr1.loc[0, "error_type"] == "thinking" and (ocr1.loc[1:, "error_type"] == "reading").all()
    shares = error_shares(tagged)
    assert shares.groupby("mode")["share"].sum().round(6).eq(1.0).all()
    lengths = length_stats(df).set_index("mode")
    assert lengths.loc["image", "chars_vs_text"] < 0.2  # the fake's "reasoning collapse"
    fig = plot_gap(gap_report(df, n_boot=100))
    assert len(fig.data) == 1 and list(fig.data[0].x)[0] == "Text"
    path = save_results(df, tmp_path, {"model": "fake", "n": 6})
    assert path.exists() and pd.read_parquet(path).shape == df.shape
    assert save_results(df, tmp_path, {"model": "fake", "n": 6}) == path
    assert save_results(df, tmp_path, {"model": "fake", "n": 7}) != path


def test_compare_runs_paired(fake_run):
    df, _, _ = fake_run
    after = df.copy()
    after.loc[after["mode"] == "image", "correct"] = True
    cmp = compare_runs(df, after, modes=["text", "image"], n_boot=300).set_index("mode")
    assert cmp.loc["image", "diff"] == 1.0 and cmp.loc["image", "significant"]
    assert cmp.loc["text", "diff"] == 0.0 and not cmp.loc["text", "significant"]


def test_sweep_render(monkeypatch):
    import steerkit.models.generation as gen

    problems = word_problems(3, seed=2)
    seen = []

    def fake(model, processor, prompts, images=None, **kw):
        if images is not None:
            seen.extend(im.size for im in images)
        return ["<answer>0</answer>"] * len(prompts)

    monkeypatch.setattr(gen, "generate_text", fake)
    cfgs = [RenderConfig(font="caveat"), RenderConfig(scale=0.5)]
    df = sweep_render(_Model(), None, problems, cfgs, max_new_tokens=4)
    assert set(df["config"]) == {"text", "caveat/32/x1", "noto-sans/32/x0.5"}
    assert (1280, 720) in seen and (640, 360) in seen
    rep = gap_report(df, by=["config"], n_boot=100)
    assert rep["n_paired"].dropna().eq(3).all()
    fig = plot_sweep(df, x="font")
    assert list(fig.data[0].x) == ["caveat", "noto-sans"]


def test_run_gap_on_a_tiny_model(tiny):
    """The real path: adapter inputs and generate_text on a tiny LLaVA (random weights: accuracy is not checked)."""
    model, processor = tiny("llava")
    problems = word_problems(2, seed=0)
    df = run_gap(model, processor, problems, modes=["text", "instruction_image", "ocr_2p"], max_new_tokens=3)
    assert len(df) == 6 and df["response"].map(type).eq(str).all()
    assert df["correct"].dtype == bool


def test_gap_run_folders_use_the_store_scheme(fake_run, tmp_path):
    from steerkit.errors import StoreError
    from steerkit.sweep.fingerprint import config_hash

    df, _, _ = fake_run
    config = {"model": "fake", "n": 6}
    path = save_results(df, tmp_path, config)
    # one naming scheme for every run folder: <name>-<sha256 of the canonical JSON, 12 hex>, with its record
    assert path.parent.name == f"gap-{config_hash(config)[:12]}"
    record = json.loads((path.parent / "config.json").read_text())
    assert record["config"] == config and record["hash"] == config_hash(config)
    record["config"] = {"model": "other", "n": 6}
    (path.parent / "config.json").write_text(json.dumps(record))
    with pytest.raises(StoreError, match="different configuration"):
        save_results(df, tmp_path, config)
