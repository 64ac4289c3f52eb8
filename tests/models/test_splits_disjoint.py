"""Held-out sets are held out: every training stream of the organism's build, regenerated at its real seeds and
sizes (the config recorded in the shipped build.json, through the functions the build trains on), shares no
problem with any evaluation set; and the other generators' train and test sets are disjoint.

The evaluation sets checked: the organism's metrics (``evaluation.evaluate``: scene questions and additions at
``EVAL_SEED``, which the headline-guard tests re-score), the self-distillation sets of docs/distill.md (600 train /
200 test additions, scene questions for transfer, seed 0) and of the distillation guard test, synthetic CV-Bench
items and synthetic word problems.
"""

from __future__ import annotations

import json

import pytest

from steerkit.gap.problems import problem_set, word_problems
from steerkit.models.organism import SHIPPED_DIR
from steerkit.models.organism import world as w
from steerkit.models.organism.config import OrganismConfig
from steerkit.models.organism.data import stream_plan, tokenizer_corpus, training_content
from steerkit.models.organism.evaluation import EVAL_SEED

# Seeds and sizes of the evaluation sets docs/distill.md reports (notebook 06 with its documented parameters).
DISTILL = dict(seed=0, n_train=600, n_test=200, transfer_per_task=50)


def _shipped_config() -> OrganismConfig:
    info = json.loads((SHIPPED_DIR / "build.json").read_text())
    return OrganismConfig(**info["config"])


@pytest.fixture(scope="module")
def cfg() -> OrganismConfig:
    return _shipped_config()


@pytest.fixture(scope="module")
def streams(cfg):
    """The content of every training stream of the build, at full size."""
    return training_content(cfg)


def _plain_description(text: str) -> str | None:
    """The scene description inside a plain pretraining sentence ("The image shows: <description> <facts>")."""
    if not text.startswith(w.SCENE_PREFIX):
        return None
    body = text[len(w.SCENE_PREFIX):]
    end = body.find(" . the ")  # relation facts start with "the <name> is ..."; descriptions never do
    return body[: end + 2] if end >= 0 else body


def _training_scenes(streams) -> set[str]:
    scenes = {w.describe(q.scene) for s in streams.values() for q in s.questions}
    scenes |= {d for s in streams.values() for t in s.plain if (d := _plain_description(t))}
    return scenes


def _training_pairs(streams) -> set[tuple[int, int]]:
    return {tuple(sorted((p["a"], p["b"]))) for s in streams.values() for p in s.arithmetic}


def _eval_questions(cfg) -> dict[str, list[w.SceneQuestion]]:
    sets = {f"metrics/{t}": w.scene_questions(t, cfg.eval_n, seed=EVAL_SEED, split="test") for t in w.TASKS}
    sets |= {f"distill-transfer/{t}": w.scene_questions(t, DISTILL["transfer_per_task"], seed=DISTILL["seed"],
                                                        split="test") for t in w.TASKS}
    return sets


def _eval_arithmetic(cfg) -> dict[str, list[dict]]:
    sets = {"metrics": w.arithmetic_problems(cfg.eval_n, seed=EVAL_SEED, split="test"),
            "distill-test": [p.extra | {"question": p.question} for p in
                             problem_set("organism", DISTILL["n_test"], seed=DISTILL["seed"], split="test")]}
    sets["distill-guard"] = w.arithmetic_problems(100, seed=1, split="test")  # tests/distill/test_organism_distill
    return sets


def test_streams_are_the_real_build(cfg, streams):
    """The regenerated streams have the sizes the build trains on (so the check below covers all of it)."""
    plan = stream_plan(cfg)
    assert set(streams) == {"text_lm", "mllm_image", "mllm_replay"}
    for name, content in streams.items():
        assert len(content.questions) + len(content.arithmetic) + len(content.plain) == plan[name]["n"], name
    assert plan["text_lm"]["n"] == cfg.text_steps * cfg.text_batch
    assert plan["mllm_image"]["n"] + plan["mllm_replay"]["n"] == cfg.mllm_steps * cfg.mllm_batch
    assert len(_training_pairs(streams)) > 1000 and len(_training_scenes(streams)) > 10_000


def test_no_evaluation_scene_is_in_any_training_stream(cfg, streams):
    trained_scenes = _training_scenes(streams)
    trained_prompts = {q.text_prompt() for s in streams.values() for q in s.questions}
    for name, questions in _eval_questions(cfg).items():
        shared = [q.id for q in questions if w.describe(q.scene) in trained_scenes]
        assert not shared, f"{name}: {len(shared)}/{len(questions)} test scenes are training scenes, e.g. {shared[:3]}"
        assert not {q.text_prompt() for q in questions} & trained_prompts, name


def test_no_evaluation_addition_is_in_any_training_stream(cfg, streams):
    trained = _training_pairs(streams)
    for name, problems in _eval_arithmetic(cfg).items():
        shared = [p["question"] for p in problems if tuple(sorted((p["a"], p["b"]))) in trained]
        assert not shared, f"{name}: {len(shared)}/{len(problems)} test additions are trained on, e.g. {shared[:3]}"


def test_tokenizer_corpus_holds_no_test_problem(cfg):
    corpus = tokenizer_corpus(cfg.seed, 3000)
    texts = set(corpus)
    scenes = {d for t in corpus if (d := _plain_description(t))}
    for name, questions in _eval_questions(cfg).items():
        assert not {q.text_prompt() for q in questions} & texts, name
        assert not {w.describe(q.scene) for q in questions} & scenes, name
    for name, problems in _eval_arithmetic(cfg).items():
        assert not {p["text_prompt"] for p in problems} & texts, name


def test_distillation_train_and_test_additions_are_disjoint():
    train = problem_set("organism", DISTILL["n_train"], seed=DISTILL["seed"], split="train")
    test = problem_set("organism", DISTILL["n_test"], seed=DISTILL["seed"], split="test")
    pairs = {tuple(sorted((p.extra["a"], p.extra["b"]))) for p in train}
    shared = [p.question for p in test if tuple(sorted((p.extra["a"], p.extra["b"]))) in pairs]
    assert not shared, f"{len(shared)}/{len(test)} distillation test problems are training problems: {shared[:5]}"


def test_word_problems_train_and_test_are_disjoint():
    train = {p.question for s in range(3) for p in word_problems(2000, seed=s, split="train")}
    test = [p.question for s in range(3) for p in word_problems(2000, seed=s, split="test")]
    shared = [q for q in test if q in train]
    assert not shared, f"{len(shared)} test word problems are training problems, e.g. {shared[:2]}"


def test_synthetic_cvbench_train_and_test_are_disjoint():
    from steerkit.tasks.synth import TASKS, generate, item_key

    train = generate(TASKS, n_per_task=40, seed=0, size=64, split="train")
    test = generate(TASKS, n_per_task=40, seed=0, size=64, split="test")
    assert {it.split for it in train} == {"train"} and {it.split for it in test} == {"test"}
    assert not {item_key(it) for it in train} & {item_key(it) for it in test}
    assert not {it.id for it in train} & {it.id for it in test}
    # Same seed, same index: without the split the two sets would be the same items.
    assert [it.prompt for it in train] != [it.prompt for it in test]
