"""The organism's training data: the streams of the build (:func:`stream_plan`), their content, the tokenized
examples with per-token loss weights, and their batches. Everything here is drawn from ``split="train"`` only.

Example:
    >>> cfg = OrganismConfig.fast()
    >>> {name: spec["n"] for name, spec in stream_plan(cfg).items()}
    {'text_lm': 32, 'mllm_image': 19, 'mllm_replay': 5}
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from steerkit.models.organism import tokenizer as tk
from steerkit.models.organism import world as w
from steerkit.models.organism.config import OrganismConfig
from steerkit.tasks.schema import LETTERS
from steerkit.tasks.scoring import PAPER_PREFIX

TOKENIZER_SEED_OFFSET = 1000  # the tokenizer corpus's training draws use seeds apart from the LM's streams


@dataclass
class Example:
    """One training sequence: token ids, per-target-token loss weights, and (image examples) the image."""

    ids: list[int]
    weights: list[float]
    image: Image.Image | None = None
    cells: dict[int, list[int]] | None = None  # grid cell -> token ids of its grounding target


def _with_prefix(prompt: str, rng: random.Random, p: float) -> str:
    # steerkit's scorer prepends the paper's instruction; train with and without it so both work.
    return PAPER_PREFIX + prompt if rng.random() < p else prompt


def _answer_form(letter: str, rng: random.Random) -> str:
    # Both " A" and "A" follow the generation prompt in training, so either token form scores the answer.
    return (" " if rng.random() < 0.5 else "") + letter


def encode_example(tok: Any, prompt: str, response: str, prompt_weight: float, n_image_tokens: int = 0,
                   length_power: float = 1.0) -> Example:
    """Tokenize prompt (BOS + text, with ``<image>`` expanded) and response (+ EOS) into an :class:`Example`.

    Weights (one per predicted token): each response token ``len(response) ** -length_power``, each prompt token
    ``prompt_weight * len(prompt) ** -length_power`` (power 1: the response sums to 1 and the prompt to
    ``prompt_weight`` per example); image tokens and BOS are never targets.
    """
    if n_image_tokens:
        prompt = prompt.replace(tk.IMAGE, tk.IMAGE * n_image_tokens)
    p_ids = tok(prompt)["input_ids"] if prompt else [tok.bos_token_id]
    r_ids = tok(response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    image_id = tok.convert_tokens_to_ids(tk.IMAGE)
    p_targets = [i for i in p_ids[1:] if i != image_id]
    pw = prompt_weight * max(1, len(p_targets)) ** -length_power
    weights = [0.0 if i == image_id else pw for i in p_ids[1:]] + [len(r_ids) ** -length_power] * len(r_ids)
    return Example(p_ids + r_ids, weights)


def _mixture(mix: dict[str, float], n: int, rng: random.Random) -> dict[str, int]:
    kinds = rng.choices(list(mix), weights=list(mix.values()), k=n)
    return {k: kinds.count(k) for k in mix}


@dataclass
class StreamContent:
    """What one training stream shows the model, before tokenization: scene questions, additions, plain text."""

    questions: list[w.SceneQuestion]
    arithmetic: list[dict[str, Any]]
    plain: list[str]


def stream_content(n: int, seed: int, mix: dict[str, float], split: str = "train",
                   rng: random.Random | None = None) -> StreamContent:
    """The content of a stream of ``n`` sequences drawn from ``mix`` at ``seed`` (the counts come from ``rng``,
    default ``random.Random(seed)``): what :func:`text_examples` and :func:`image_examples` encode."""
    rng = rng or random.Random(seed)
    counts = _mixture(mix, n, rng)
    per_task = _split_evenly(counts.get("qa", 0), len(w.TASKS))
    questions = [q for task, k in zip(w.TASKS, per_task) for q in w.scene_questions(task, k, seed=seed, split=split)]
    stream = w.plain_text_stream(seed)
    return StreamContent(questions, w.arithmetic_problems(counts.get("arith", 0), seed=seed, split=split),
                         [next(stream) for _ in range(counts.get("plain", 0))])


# The MLLM phase's text replay mixes scene QA and arithmetic only (no plain sentences).
REPLAY_MIX: dict[str, float] = {"qa": 0.6, "arith": 0.4}


def stream_plan(cfg: OrganismConfig) -> dict[str, dict[str, Any]]:
    """Every training stream of the build: name -> ``n``, ``seed``, ``mix`` and ``mode`` (text or image).

    The training functions read their streams from here, and so does the test that checks them against every
    evaluation set (tests/models/test_splits_disjoint.py).
    """
    n_mllm = cfg.mllm_steps * cfg.mllm_batch
    n_replay = int(round(n_mllm * cfg.replay))
    return {
        "text_lm": dict(n=cfg.text_steps * cfg.text_batch, seed=cfg.seed, mix=cfg.mix_text, mode="text"),
        "mllm_image": dict(n=n_mllm - n_replay, seed=cfg.seed + 1, mix=cfg.mix_image, mode="image"),
        "mllm_replay": dict(n=n_replay, seed=cfg.seed + 2, mix=REPLAY_MIX, mode="text"),
    }


def training_content(cfg: OrganismConfig, scale: float = 1.0) -> dict[str, StreamContent]:
    """The content of every training stream of :func:`stream_plan` (``scale`` < 1 draws a prefix of each: the
    generators are sequential, so a shorter stream is the start of the full one)."""
    return {name: stream_content(max(1, int(spec["n"] * scale)), spec["seed"], spec["mix"])
            for name, spec in stream_plan(cfg).items()}


def text_examples(tok: Any, n: int, seed: int, cfg: OrganismConfig, mix: dict[str, float] | None = None,
                  split: str = "train", length_power: float | None = None) -> list[Example]:
    """``n`` text-mode training sequences drawn from the text mixture (scene QA, arithmetic, plain sentences);
    ``length_power`` defaults to ``cfg.length_power``."""
    power = cfg.length_power if length_power is None else length_power
    rng = random.Random(seed)
    content = stream_content(n, seed, mix or cfg.mix_text, split, rng)
    out: list[Example] = []
    for q in content.questions:
        letter = LETTERS[q.answer_index]
        prompt = _with_prefix(q.text_prompt(), rng, cfg.prefix_p)
        out.append(encode_example(tok, tk.format_user(prompt, False), _answer_form(letter, rng),
                                  cfg.prompt_weight, length_power=power))
    for p in content.arithmetic:
        out.append(encode_example(tok, tk.format_user(p["text_prompt"], False), " " + p["trace"], cfg.prompt_weight,
                                  length_power=power))
    for text in content.plain:
        out.append(encode_example(tok, "", text, 1.0, length_power=power))
    rng.shuffle(out)
    return out


def image_examples(tok: Any, n: int, seed: int, cfg: OrganismConfig, n_image_tokens: int,
                   split: str = "train") -> list[Example]:
    """``n`` image-mode training sequences: rendered scenes with questions, rendered arithmetic with its trace
    (loss weighting ``cfg.mllm_length_power``)."""
    power = cfg.mllm_length_power
    rng = random.Random(seed)
    content = stream_content(n, seed, cfg.mix_image, split, rng)
    out: list[Example] = []
    for q in content.questions:
        prompt = _with_prefix(q.prompt, rng, cfg.prefix_p)
        ex = encode_example(tok, tk.format_user(prompt, True), _answer_form(LETTERS[q.answer_index], rng),
                            cfg.prompt_weight, n_image_tokens, power)
        ex.image = w.render_scene(q.scene, seed=q.id)
        ex.cells = {c: tok(" " + words, add_special_tokens=False)["input_ids"]
                    for c, words in w.cell_words(q.scene).items()}
        out.append(ex)
    for p in content.arithmetic:
        ex = encode_example(tok, tk.format_user(p["image_prompt"], True), " " + p["trace"], cfg.prompt_weight,
                            n_image_tokens, power)
        ex.image = w.render_arithmetic(p["question"], w.TRAIN_FONT, seed=p["id"], jitter=cfg.arith_jitter)
        ex.cells = {i: tok(ch, add_special_tokens=False)["input_ids"] for i, ch in enumerate(p["question"])}
        out.append(ex)
    rng.shuffle(out)
    return out


def _split_evenly(n: int, k: int) -> list[int]:
    return [n // k + (i < n % k) for i in range(k)]


def collate(examples: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and per-target ``weights`` (aligned with ``logits[:, :-1]``)."""
    length = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), length), dtype=torch.long)
    weights = torch.zeros((len(examples), length - 1))
    for i, e in enumerate(examples):
        ids[i, : len(e.ids)] = torch.tensor(e.ids)
        mask[i, : len(e.ids)] = 1
        weights[i, : len(e.weights)] = torch.tensor(e.weights)
    return {"input_ids": ids, "attention_mask": mask, "weights": weights}


def length_batches(data: Sequence[Example], batch_size: int, steps: int, seed: int) -> list[list[Example]]:
    """``steps`` batches with similar lengths (sorted within windows of 32 batches, less padding), in seeded
    random order."""
    batches: list[list[Example]] = []
    window = 32 * batch_size
    for start in range(0, steps * batch_size, window):
        chunk = sorted(data[start:start + window], key=lambda e: len(e.ids))
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    random.Random(seed).shuffle(batches)
    return [b for b in batches if b][:steps]


def tokenizer_corpus(seed: int, n: int = 3000) -> list[str]:
    """World text covering every template the organism sees (prompts, answers, traces, plain sentences)."""
    corpus = [tk.CHAT_TEMPLATE, tk.format_user("x", True)] + [PAPER_PREFIX] * 20
    # Both answer forms must be single tokens: "A" (from "(A)") and " A" (after "ASSISTANT:").
    corpus += [f"{tk.ASSISTANT} {letter}" for letter in LETTERS[:6]] * 50
    # Training content only (its own seeds): the vocabulary is learnt without ever reading a test problem.
    for task in w.TASKS:
        for q in w.scene_questions(task, n // 8, seed=TOKENIZER_SEED_OFFSET + seed, split="train"):
            corpus.append(q.text_prompt())
    for p in w.arithmetic_problems(n // 8, seed=TOKENIZER_SEED_OFFSET + seed, split="train"):
        corpus += [p["text_prompt"], p["image_prompt"], " " + p["trace"]]
    stream = w.plain_text_stream(seed + 99)
    corpus += [next(stream) for _ in range(n // 4)]
    for concept in w.CONCEPTS:
        corpus += [r["text"] for r in w.concept_sentences(concept, 100, seed=seed + 7)]
    return corpus


__all__ = ["Example", "REPLAY_MIX", "StreamContent", "TOKENIZER_SEED_OFFSET", "collate", "encode_example",
           "image_examples", "length_batches", "stream_content", "stream_plan", "text_examples", "tokenizer_corpus",
           "training_content"]
