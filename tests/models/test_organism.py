"""The model organism: its world, the smoke build, determinism, and the shipped weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from steerkit.models import organism
from steerkit.models.organism import tokenizer as tk
from steerkit.models.organism import world as w


# ------------------------------------------------------------------------------------------------ world
@pytest.mark.parametrize("task", w.TASKS)
def test_text_and_image_items_are_isomorphic(task):
    text = organism.world_items(task, 12, seed=3, mode="text", split="test")
    image = organism.world_items(task, 12, seed=3, mode="image", split="test")
    assert [i.id for i in text] == [i.id for i in image]
    for t, im in zip(text, image):
        assert t.image is None and im.image is not None and im.image.size == (64, 64)
        assert (t.answer, t.choices, t.question) == (im.answer, im.choices, im.question)
        assert t.prompt == w.SCENE_PREFIX + t.extra["description"] + "\n" + im.prompt
        assert im.prompt.startswith(im.question + " Select from the following choices.\n(A) ")
        assert im.prompt.endswith(f"\n({t.letters[-1]}) {t.choices[-1]}")
    # Rendering has its own RNG: the same item renders to the same pixels however it was generated.
    again = organism.world_items(task, 3, seed=3, mode="image", split="test")
    assert all(np.array_equal(np.asarray(a.image), np.asarray(b.image)) for a, b in zip(image, again))
    other = organism.world_items(task, 12, seed=3, mode="text", split="train")
    assert [i.prompt for i in other] != [i.prompt for i in text]


def test_answers_follow_from_the_scene():
    for q in w.scene_questions("Relation", 50, seed=1):
        a, b = (next(o for o in q.scene.objects if o.name == n) for n in dict(q.extra)["objects"])
        truth = ("left" if a.col < b.col else "right") if dict(q.extra)["axis"] == "horizontal" else \
            ("above" if a.row < b.row else "below")
        assert q.choices[q.answer_index] == truth
    for q in w.scene_questions("Count", 50, seed=1):
        target = dict(q.extra)["target"]
        colour = target.split()[0] if target.endswith("objects") else None
        shape = None if colour else target[:-1]
        assert q.choices[q.answer_index] == str(q.scene.count(colour=colour, shape=shape))
    for q in w.scene_questions("Depth", 50, seed=1):
        sizes = {o.name: o.size for o in q.scene.objects}
        assert sizes[q.choices[q.answer_index]] == "large" and "small" in {sizes[c] for c in q.choices}


def test_arithmetic_traces_and_rendering():
    problems = organism.arithmetic_problems(200, seed=0)
    for p in problems:
        assert p["answer"] == str(p["a"] + p["b"]) and p["trace"].endswith(f"<answer>{p['answer']}</answer>")
    assert w.addition_trace(47, 38) == "7+8=15 , write 5 carry 1 . 4+3+1=8 , write 8 . <answer>85</answer>"
    q = problems[0]["question"]
    pixels = {f: np.asarray(organism.render_arithmetic(q, font=f)) for f in (organism.TRAIN_FONT, *organism.UNSEEN_FONTS)}
    assert len(organism.UNSEEN_FONTS) >= 2
    for f, arr in pixels.items():
        assert arr.shape == (64, 64, 3) and (arr < 128).any(), f  # something dark was drawn
        if f != organism.TRAIN_FONT:
            assert not np.array_equal(arr, pixels[organism.TRAIN_FONT]), f
    # One character per 16-pixel cell: the cells after the question stay blank.
    arr = pixels[organism.TRAIN_FONT]
    assert (arr[32:, :] == 255).all() and (arr[16:32, 16 * (len(q) - 4):] == 255).all()


def test_arithmetic_renders_with_the_project_font_registry():
    """The organism draws with steerkit.render.fonts (no registry of its own): every registered font renders, with
    the registry's glyph, and an unknown name fails with the registry's error listing the available fonts."""
    from PIL import Image, ImageDraw

    from steerkit.errors import RenderError
    from steerkit.render.fonts import available_fonts, load_font

    assert {organism.TRAIN_FONT, *organism.UNSEEN_FONTS} <= set(available_fonts())
    for name in available_fonts():
        expected = Image.new("RGB", (64, 64), (255, 255, 255))
        ImageDraw.Draw(expected).text((8.0, 8.0), "7", fill=(0, 0, 0), font=load_font(name, 15), anchor="mm")
        assert organism.render_arithmetic("7", font=name).tobytes() == expected.tobytes(), name
    with pytest.raises(RenderError, match=r"unknown font 'no-such-font'; available: \[.*'noto-sans'"):
        organism.render_arithmetic("1+1", font="no-such-font")


def test_world_splits_are_by_content():
    """Every scene and addition lands in its content's split, so train and test never share one."""
    from steerkit.errors import DataError

    for task in w.TASKS:
        for split in ("train", "test"):
            assert all(w.scene_split(q.scene) == split for q in w.scene_questions(task, 40, seed=2, split=split))
    train = organism.arithmetic_problems(3000, seed=0, split="train")
    test = organism.arithmetic_problems(300, seed=0, split="test")
    assert all(w.arithmetic_split(p["a"], p["b"]) == "train" for p in train)
    assert all(w.arithmetic_split(p["a"], p["b"]) == "test" for p in test)
    # The commuted form shares the split: 47+38 is never trained on when 38+47 is a test problem.
    assert not {frozenset((p["a"], p["b"])) for p in train} & {frozenset((p["a"], p["b"])) for p in test}
    assert 0.15 < len({frozenset((p["a"], p["b"])) for p in test}) / 300 <= 1.0
    stream = w.plain_text_stream(0)
    described = [next(stream) for _ in range(200)]
    scenes = [t for t in described if t.startswith(w.SCENE_PREFIX)]
    assert scenes and all(
        w.content_split("scene|" + t[len(w.SCENE_PREFIX):t.index(" . the ") + 2]) == "train" for t in scenes)
    with pytest.raises(DataError, match="split must be one of"):
        w.scene_questions("Count", 1, split="tokenizer")
    with pytest.raises(DataError, match="split must be one of"):
        organism.arithmetic_problems(1, split="val")


@pytest.mark.parametrize("concept", ["spatial_relation", "counting", "attribute", "size"])
def test_concept_corpora_files(concept):
    path = organism.SHIPPED_DIR.parent / "concepts" / "organism" / f"{concept}.jsonl"  # beside the shipped build
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) >= 200 and len({r["text"] for r in rows}) == len(rows)
    regenerated = w.concept_sentences(concept, len(rows), seed=0)
    assert rows == regenerated  # the shipped file is what the seeded generator writes
    for r in rows:
        assert r["concept"] == concept and r["spans"]
        for s, e in r["spans"]:
            word = r["text"][s:e]
            assert word == word.strip() and word and (s == 0 or r["text"][s - 1] == " ")


# ------------------------------------------------------------------------------------------------ tokenizer
def test_tokenizer_pieces():
    from steerkit.models.organism.data import tokenizer_corpus

    tok = tk.train_tokenizer(tokenizer_corpus(0, 200))
    pieces = tok.convert_ids_to_tokens(tok("(A) 47 <answer>85</answer>")["input_ids"])
    assert pieces[:4] == ["<bos>", "(", "A", ")"]
    assert "<answer>" in pieces and "</answer>" in pieces and {"4", "7", "8", "5"} <= set(pieces)
    assert tok.decode(tok("<answer>85</answer> (B)")["input_ids"], skip_special_tokens=True) == \
        "<answer>85</answer> (B)"
    from steerkit.tasks.scoring import LetterScorer

    # the one spelling rule keeps exactly "A" and " A" on this tokenizer (both single tokens for every letter)
    assert all(len(ids) == 2 for ids in LetterScorer(tok, 4).token_ids.values())
    assert len(tok(tk.IMAGE, add_special_tokens=False)["input_ids"]) == 1


# ------------------------------------------------------------------------------------------------ builds
@pytest.fixture(scope="module")
def smoke_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("organism") / "a"
    organism.build(out, seed=0, fast=True)
    return out


def test_remeasuring_at_another_size_keeps_the_builds_record(smoke_build, tmp_path):
    """`evaluate DIR --n N` with the build's own n rewrites metrics.parquet; with another n it writes
    metrics_n<N>.parquet beside it and leaves the record the build wrote alone."""
    import shutil

    import pandas as pd

    folder = tmp_path / "build"
    shutil.copytree(smoke_build, folder)
    record = (folder / "metrics.parquet").read_bytes()
    build_n = int(pd.read_parquet(folder / "metrics.parquet")["n"].max())
    other = organism.remeasure(folder, n=build_n // 2)
    assert (folder / "metrics.parquet").read_bytes() == record
    assert (folder / f"metrics_n{build_n // 2}.parquet").exists() and int(other["n"].max()) == build_n // 2
    same = organism.remeasure(folder)
    pd.testing.assert_frame_equal(same, pd.read_parquet(folder / "metrics.parquet"))
    assert int(same["n"].max()) == build_n


def test_smoke_build_writes_loadable_models(smoke_build):
    from transformers import CLIPImageProcessorPil, LlamaForCausalLM, LlavaForConditionalGeneration

    model, processor = organism.load(smoke_build)
    lm, tok = organism.load_text_lm(smoke_build)
    assert isinstance(model, LlavaForConditionalGeneration) and isinstance(lm, LlamaForCausalLM)
    assert isinstance(processor.image_processor, CLIPImageProcessorPil)
    info = json.loads((smoke_build / "build.json").read_text())
    assert info["config"]["text_steps"] > 0 and info["seconds"]["total"] > 0
    import pandas as pd

    metrics = pd.read_parquet(smoke_build / "metrics.parquet")
    assert set(metrics["task"]) == {*w.TASKS, "Arithmetic", "Arithmetic gap"}
    acc = metrics[metrics["task"] != "Arithmetic gap"]
    assert acc["accuracy"].between(0, 1).all() and (metrics["lo"] <= metrics["accuracy"]).all()
    assert (metrics["accuracy"] <= metrics["hi"]).all()
    # The MLLM's LM started from the text LM: same vocabulary and text width.
    assert model.config.text_config.vocab_size == lm.config.vocab_size == len(tok)


def test_fast_build_is_deterministic(smoke_build, tmp_path):
    from safetensors.torch import load_file

    again = organism.build(tmp_path / "b", seed=0, fast=True)
    for part in ("text", "mllm"):
        a = load_file(str(smoke_build / part / "model.safetensors"))
        b = load_file(str(again / part / "model.safetensors"))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), part


def test_load_on_a_missing_build_names_the_build_command(tmp_path, monkeypatch):
    from steerkit.models.organism import recipe

    def trained_unasked(*args, **kwargs):
        raise AssertionError("the organism was trained without being asked")

    monkeypatch.setattr(recipe, "build", trained_unasked)
    missing = tmp_path / "nowhere"
    for load in (organism.load, organism.load_text_lm):
        with pytest.raises(organism.ModelNotBuiltError,
                           match=f"python -m steerkit.models.organism build {missing}"):
            load(missing)
    monkeypatch.setenv(organism.ENV_VAR, str(missing))
    from steerkit.models.loading import load_model

    with pytest.raises(organism.ModelNotBuiltError, match="build_if_missing=True"):
        load_model("steerkit/organism")
    assert not missing.exists()


def test_build_if_missing_trains_only_when_asked(tmp_path, monkeypatch):
    from steerkit.models.organism import recipe

    calls = []

    def fake_build(path, *args, **kwargs):
        calls.append(Path(path))
        (Path(path) / "mllm").mkdir(parents=True)
        (Path(path) / "mllm" / "config.json").write_text("{}")

    monkeypatch.setattr(recipe, "build", fake_build)
    assert organism._ensure(tmp_path / "x", "mllm", build_if_missing=True) == tmp_path / "x"
    assert calls == [tmp_path / "x"]


def test_grounding_loss_is_zero_at_the_target():
    from steerkit.models.organism.loop import grounding_loss

    embed = torch.nn.Embedding(10, 4)
    cells = [{0: [1, 2], 3: [5]}]
    feats = torch.randn(1, 16, 4)
    assert grounding_loss(feats, cells, embed) > 0
    feats[0, 0] = embed.weight[[1, 2]].mean(0).detach()
    feats[0, 3] = embed.weight[5].detach()
    assert float(grounding_loss(feats, cells, embed)) == pytest.approx(0.0, abs=1e-6)


# ------------------------------------------------------------------------------------------------ shipped
@pytest.fixture(scope="module")
def shipped():
    if not (organism.SHIPPED_DIR / "mllm" / "config.json").exists():
        pytest.fail("steerkit/data/organism has no shipped organism; run: python -m steerkit.models.organism build")
    return organism.load(organism.SHIPPED_DIR)


def test_shipped_organism_image_tokens(shipped):
    from transformers import LlavaForConditionalGeneration

    from steerkit.models.adapters import adapter_for

    model, processor = shipped
    assert isinstance(model, LlavaForConditionalGeneration)
    items = organism.world_items("Count", 3, seed=0, mode="image")
    inputs = adapter_for(model).build_inputs(processor, [i.prompt for i in items], [i.image for i in items])
    image_id = model.config.image_token_id
    n_patches = (model.config.vision_config.image_size // model.config.vision_config.patch_size) ** 2
    feats = model.model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output
    for row, f in zip(inputs["input_ids"], feats):
        pos = (row == image_id).nonzero().flatten()
        assert len(pos) == n_patches == f.shape[0]
        assert torch.equal(pos, torch.arange(int(pos[0]), int(pos[0]) + n_patches))  # one contiguous block
        # It sits where the chat template put "<image>": right after "USER: ".
        prefix = processor.tokenizer.decode(row[: int(pos[0])], skip_special_tokens=True)
        assert prefix.endswith(tk.USER)
    with torch.no_grad():
        out = model(**inputs)
    assert out.logits.shape[:2] == inputs["input_ids"].shape


@pytest.fixture(scope="module")
def recorded():
    import pandas as pd

    return pd.read_parquet(organism.SHIPPED_DIR / "metrics.parquet")


@pytest.fixture(scope="module")
def remeasured(shipped, recorded):
    """The shipped organism evaluated again on its held-out sets (``evaluation.evaluate``, as the build did)."""
    from steerkit.models.organism.evaluation import evaluate

    model, processor = shipped
    lm, _ = organism.load_text_lm(organism.SHIPPED_DIR)
    return evaluate(model, processor, lm, n=int(recorded["n"].max()))


@pytest.mark.slow
def test_shipped_accuracies_match_their_record(recorded, remeasured):
    """Headline guard: every accuracy of steerkit/data/organism/metrics.parquet (text and image mode per task, arithmetic
    per font) is what the shipped weights score now, within the recorded 95% CI."""
    key = ["model", "task", "mode", "font"]
    both = recorded.merge(remeasured, on=key, how="outer", suffixes=("_rec", "_now"), indicator=True)
    assert (both["_merge"] == "both").all(), both.loc[both["_merge"] != "both", key]
    for _, r in both.iterrows():
        assert r["lo_rec"] <= r["accuracy_now"] <= r["hi_rec"], (tuple(r[key]), r["accuracy_now"],
                                                                 (r["lo_rec"], r["hi_rec"]))
    # What the docs claim the organism learned: Count above its majority baseline in both modes.
    count = both[(both["task"] == "Count") & (both["model"] == "mllm")]
    assert (count["lo_rec"] > count["majority_rec"]).all() and (count["accuracy_now"] > count["majority_rec"]).all()


@pytest.mark.slow
def test_shipped_arithmetic_gap(recorded, remeasured):
    """Headline guard: text-mode arithmetic beats image-mode arithmetic (training font) on held-out problems, the
    paired CI of the gap excluding 0, recorded and re-measured."""
    for table in (recorded, remeasured):
        gap = table[table["task"] == "Arithmetic gap"].iloc[0]
        acc = table[(table["task"] == "Arithmetic") & (table["model"] == "mllm")]
        text = acc.loc[acc["mode"] == "text", "accuracy"].item()
        image = acc.loc[(acc["mode"] == "image") & (acc["font"] == organism.TRAIN_FONT), "accuracy"].item()
        assert gap["accuracy"] == pytest.approx(text - image)
        assert gap["lo"] > 0, gap


def test_shipped_text_lm_loads(shipped):
    from transformers import LlamaForCausalLM

    lm, tok = organism.load_text_lm(organism.SHIPPED_DIR)
    model, processor = shipped
    assert isinstance(lm, LlamaForCausalLM)
    assert tok.get_vocab() == processor.tokenizer.get_vocab()
    size = sum(p.stat().st_size for p in organism.SHIPPED_DIR.rglob("*") if p.is_file())
    assert size <= 25 * 2**20, f"steerkit/data/organism is {size / 2**20:.1f} MB; the budget is 25 MB"
