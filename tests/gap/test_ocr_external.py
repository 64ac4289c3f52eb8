"""The ocr_external gap mode: a dedicated OCR engine (RapidOCR) transcribes the rendered problem, the MLLM answers the
text prompt built from that transcript."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from steerkit.errors import GapError
from steerkit.gap import ocr as gocr
from steerkit.gap.modes import ALL_MODES, GENERIC, MODES, mode_input, run_gap, style_for
from steerkit.gap.problems import problem_set, word_problems
from steerkit.gap.report import compare_runs, gap_report, plot_gap
from steerkit.gap.taxonomy import char_error_rate, number_errors, tag_errors
from steerkit.render import RenderConfig, render_text


@pytest.fixture(scope="module")
def engine():
    """One real RapidOCR pipeline for the module (1 onnxruntime thread), built with downloads made impossible."""
    from rapidocr.utils import download_file

    def no_download(*args, **kwargs):
        raise AssertionError("RapidOCR tried to download a file; the packaged models must be used")

    eng = gocr.RapidOcrEngine(threads=1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(download_file.DownloadFile, "run", classmethod(no_download))
        eng.load()
        assert eng(render_text("What is 17 + 25 ?")) == "What is 17 + 25 ?"  # the first call loads det and rec
    return eng


def test_rapidocr_reads_rendered_problems(engine):
    import rapidocr

    assert engine._models["det"].parent == Path(rapidocr.__file__).parent / "models"
    assert engine.name.startswith("rapidocr ") and "det" in engine.name and "rec" in engine.name
    # A word problem that wraps over two lines comes back as one string in reading order. On 30 problems x 3 fonts
    # the measured CER was 0 (docs/gap.md, "External OCR mode"); 0.02 leaves room for another onnxruntime build.
    for p in word_problems(3, seed=0):
        text = engine(render_text(p.question))
        assert number_errors(text, p.question) == 0 and char_error_rate(text, p.question) <= 0.02, (text, p.question)
    hard = "Mia reads 14 pages a day for 12 days, then 9 pages a day for 3 days. How many pages does she read?"
    text = engine(render_text(hard, RenderConfig(font="ibm-plex-mono")))
    assert number_errors(text, hard) == 0 and char_error_rate(text, hard) <= 0.02, text


def test_transcripts_are_cached_by_pixels(engine, monkeypatch):
    calls = []
    real = engine._ocr
    monkeypatch.setattr(engine, "_ocr", lambda im: calls.append(1) or real(im))
    img = render_text("Ben has 31 marbles.", RenderConfig(font="noto-serif"))
    first = engine(img)
    assert engine(render_text("Ben has 31 marbles.", RenderConfig(font="noto-serif"))) == first
    assert len(calls) == 1 and "31" in first


def test_join_lines_reading_order():
    def box(x0, y0, x1, y1):
        return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]

    # Second line first, and the first line split into two boxes whose tops differ by 2 px.
    boxes = [box(0, 50, 90, 90), box(200, 2, 300, 42), box(0, 0, 180, 40)]
    assert gocr.join_lines(boxes, ["and sells it.", "apples", "Tom buys 3"]) == "Tom buys 3 apples and sells it."
    assert gocr.join_lines(boxes, ["c", "b", "a"], sep="\n") == "a\nb\nc"
    assert gocr.join_lines([], []) == ""


class FakeEngine:
    """An OCR engine: reads the problems at ``exact`` verbatim, the others with their first digit changed."""

    name = "fake-ocr"

    def __init__(self, problems, exact):
        self.problems, self.exact, self.images = problems, exact, []

    def __call__(self, image):
        i = len(self.images)
        self.images.append(image)
        q = self.problems[i].question
        if i in self.exact:
            return q
        d = next(c for c in q if c.isdigit())
        return q.replace(d, str((int(d) + 1) % 10), 1)


class FakeMLLM:
    """Stands in for generate_text: answers text prompts holding a known problem (wrongly for ``wrong``), and
    transcribes images in call order (the ocr_2p first pass)."""

    def __init__(self, problems, wrong=()):
        self.problems, self.wrong, self.calls = problems, set(wrong), []

    def __call__(self, model, processor, prompts, images=None, **kw):
        self.calls.append((list(prompts), images))
        out = []
        for i, prompt in enumerate(prompts):
            if images is not None:
                out.append(f"<transcript>{self.problems[i].question}</transcript>")
                continue
            j = next((j for j, p in enumerate(self.problems) if p.question in prompt), None)
            ans = -1 if j is None else int(self.problems[j].answer) + (j in self.wrong)
            out.append(f"so <answer>{ans}</answer>")
        return out


class _Model:
    class config:  # noqa: N801  (mimics a HF config attribute)
        _name_or_path = "fake"


def test_mode_registry():
    assert MODES == ("text", "image", "instruction_image", "ocr_1p", "ocr_2p")  # the paper's five stay the default
    assert ALL_MODES[-1] == "ocr_external" and GENERIC.supports("ocr_external")
    p = word_problems(1, seed=3)[0]
    ext = mode_input(p, "ocr_external", GENERIC)
    # The engine reads the same pixels as ocr_2p's first pass: the problem rendered alone.
    assert ext.prompt == "" and ext.image.tobytes() == mode_input(p, "ocr_2p", GENERIC).image.tobytes()


def test_fake_engine_plumbing(monkeypatch):
    import steerkit.models.generation as gen

    problems = word_problems(4, seed=5)
    mllm, ocr = FakeMLLM(problems, wrong={1}), FakeEngine(problems, exact={0, 1})
    monkeypatch.setattr(gen, "generate_text", mllm)
    df = run_gap(_Model(), None, problems, modes=["ocr_external", "text", "ocr_2p"], ocr_engine=ocr,
                 max_new_tokens=8)
    ext = df[df["mode"] == "ocr_external"].reset_index(drop=True)
    assert len(ext) == 4 and ext["ocr_engine"].eq("fake-ocr").all()
    assert df.loc[df["mode"] != "ocr_external", "ocr_engine"].isna().all()
    # The engine saw the rendered problems; the MLLM saw only text prompts built from the engine's transcripts.
    assert [im.tobytes() for im in ocr.images] == [mode_input(p, "ocr_2p", GENERIC).image.tobytes()
                                                   for p in problems]
    ext_call = next(c for c in mllm.calls if ext.loc[2, "prompt"] in c[0])  # a misread: no other mode has it
    assert ext_call[1] is None and ext_call[0] == list(ext["prompt"])
    for row, p in zip(ext.itertuples(), problems):
        assert row.prompt == GENERIC.fill(GENERIC.text_template, row.transcript)
        assert row.font == "noto-sans" and row.question == p.question
    assert ext.loc[0, "transcript"] == problems[0].question and ext.loc[2, "transcript"] != problems[2].question
    assert list(ext["correct"]) == [True, False, False, False]
    tagged = tag_errors(df)
    t = tagged[tagged["mode"] == "ocr_external"].reset_index(drop=True)
    assert list(t["error_type"]) == ["correct", "thinking", "reading", "reading"]
    assert list(t["error_subtype"][2:]) == ["wrong_numbers"] * 2 and t.loc[0, "cer"] == 0.0 and t.loc[2, "cer"] > 0
    rep = gap_report(df, n_boot=200)
    assert list(rep["mode"]) == ["text", "ocr_2p", "ocr_external"]
    assert list(rep["label"]) == ["Text", "OCR 2-pass", "External OCR"]
    assert rep.set_index("mode").loc["ocr_external", "diff"] == pytest.approx(-0.5)  # Text 3/4, External OCR 1/4
    assert list(plot_gap(rep).data[0].x) == ["Text", "OCR 2-pass", "External OCR"]
    assert "ocr_external" in set(compare_runs(df, df, n_boot=100)["mode"])


def test_organism_style_runs_ocr_external(monkeypatch):
    """The organism has no OCR prompts, but ocr_external needs only its renderer and text prompt."""
    import steerkit.models.generation as gen

    problems = problem_set("organism", 2, split="test")
    style = style_for(problems)
    assert not style.supports("ocr_2p") and style.supports("ocr_external")
    monkeypatch.setattr(gen, "generate_text", FakeMLLM(problems))
    df = run_gap(_Model(), None, problems, modes=["text", "ocr_2p", "ocr_external"], skip_unsupported=True,
                 ocr_engine=lambda im: "12+34")
    ext = df[df["mode"] == "ocr_external"]
    assert set(df["mode"]) == {"text", "ocr_external"} and ext["ocr_engine"].eq("<lambda>").all()
    assert (ext["prompt"] == style.fill(style.text_template, "12+34")).all()


def test_engine_errors(monkeypatch):
    import steerkit.models.generation as gen

    problems = word_problems(2, seed=0)
    mllm = FakeMLLM(problems)
    monkeypatch.setattr(gen, "generate_text", mllm)
    monkeypatch.setitem(sys.modules, "rapidocr", None)  # import rapidocr now raises ImportError
    with pytest.raises(GapError, match=r"pip install rapidocr onnxruntime"):
        gocr.RapidOcrEngine().load()
    monkeypatch.setattr(gocr, "_DEFAULT", None)
    with pytest.raises(GapError, match=r"pip install rapidocr onnxruntime"):
        run_gap(_Model(), None, problems, modes=["text", "ocr_external"])
    assert mllm.calls == []  # the missing engine is reported before any mode runs
    with pytest.raises(GapError, match="callable"):
        run_gap(_Model(), None, problems, modes=["ocr_external"], ocr_engine="rapidocr")
    with pytest.raises(GapError, match="not str"):
        run_gap(_Model(), None, problems, modes=["ocr_external"], ocr_engine=lambda im: ["What", "is"])


def test_packaged_models_must_be_unambiguous(tmp_path):
    for name in ("a_det_x.onnx", "a_rec_x.onnx", "b_rec_y.onnx", "c_cls_z.onnx"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(GapError, match="2 rec ONNX files"):
        gocr.RapidOcrEngine.packaged_models(tmp_path)
    (tmp_path / "b_rec_y.onnx").unlink()
    assert {k: v.name for k, v in gocr.RapidOcrEngine.packaged_models(tmp_path).items()} == \
        {"det": "a_det_x.onnx", "rec": "a_rec_x.onnx", "cls": "c_cls_z.onnx"}


def test_ocr_external_on_a_tiny_model(tiny, engine, monkeypatch):
    """The real path: RapidOCR (as the default engine) reads the rendered problems, a tiny LLaVA (random weights:
    accuracy is not checked) answers the text prompt built from each transcript."""
    monkeypatch.setattr(gocr, "_DEFAULT", engine)
    model, processor = tiny("llava")
    problems = word_problems(2, seed=7)
    df = run_gap(model, processor, problems, modes=["text", "ocr_external"], max_new_tokens=3)
    ext = tag_errors(df[df["mode"] == "ocr_external"])
    assert len(ext) == 2 and ext["ocr_engine"].eq(engine.name).all()
    for row in ext.itertuples():
        assert row.transcript in row.prompt and row.cer <= 0.02 and row.number_errors == 0
    # A correct reading: any wrong answer is the model's thinking, never a reading error.
    assert set(ext["error_type"]) <= {"correct", "thinking"}
    assert np.isfinite(ext["cer"]).all()
