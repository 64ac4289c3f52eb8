"""What the two organism binding ablations share: arguments, set-up, the base text mixture and the evaluations.

Every function keeps the draw order of the original scripts (seeds 0, one ``random.Random(0)`` for prompts and
answer forms, QA then arithmetic then plain text), so the numbers in docs/organism.md reproduce.
"""
from __future__ import annotations

import json
import os
import random
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import worldpatch  # noqa: E402,F401  (WP_ORDER / WP_UNIQUE world variants; a no-op without them)

from steerkit.models.organism import tokenizer as tk  # noqa: E402
from steerkit.models.organism import train as T  # noqa: E402
from steerkit.models.organism import world as w  # noqa: E402
from steerkit.tasks.schema import LETTERS  # noqa: E402

ALL_TASKS = {"Count": 1, "Relation": 1, "Attribute": 1, "Depth": 1}
ATTRIBUTE_SIZES = [len(w.COLOURS), len(w.SHAPES), len(w.SIZES), w.GRID, w.GRID]  # colour, shape, size, row, col


def parse_args(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """``NAME key=JSON ...`` -> (name, {key: value})."""
    return argv[1], {k: json.loads(v) for k, v in (a.split("=", 1) for a in argv[2:])}


def setup(kw: dict[str, Any]) -> tuple[T.OrganismConfig, Any, Any, float]:
    """Threads (``$THREADS``, default 1), seeds, tokenizer and a fresh text LM: (cfg, tok, lm, start time)."""
    torch.set_num_threads(int(os.environ.get("THREADS", "1")))
    cfg = T.OrganismConfig(**kw)
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    t0 = time.time()
    tok = tk.train_tokenizer(T._tokenizer_corpus(cfg.seed, 3000), cfg.vocab_size)
    return cfg, tok, T.make_text_lm(tok, cfg), t0


def base_examples(tok: Any, cfg: T.OrganismConfig, tasks: dict[str, float], other: dict[str, float],
                  rng: random.Random, on_qa: Callable[[T.Example, w.SceneQuestion], None] | None = None
                  ) -> list[T.Example]:
    """QA examples (tasks weighted, together ``1 - sum(other)`` of the run's sequences), then arithmetic and plain
    text at their shares of ``other``; ``on_qa(example, question)`` may annotate each QA example."""
    n = cfg.text_steps * cfg.text_batch
    power = cfg.length_power
    data = []
    qa_share, total = 1 - sum(other.values()), sum(tasks.values())
    for task, weight in tasks.items():
        for q in w.scene_questions(task, int(n * qa_share * weight / total), seed=0, split="train"):
            prompt = T._with_prefix(q.text_prompt(), rng, cfg.prefix_p)
            ex = T.encode_example(tok, tk.format_user(prompt, False), T._answer_form(LETTERS[q.answer_index], rng),
                                  cfg.prompt_weight, length_power=power)
            if on_qa is not None:
                on_qa(ex, q)
            data.append(ex)
    for p in w.arithmetic_problems(int(n * other.get("arith", 0)), seed=0, split="train"):
        data.append(T.encode_example(tok, tk.format_user(p["text_prompt"], False), " " + p["trace"],
                                     cfg.prompt_weight, length_power=power))
    stream = w.plain_text_stream(0)
    for _ in range(int(n * other.get("plain", 0))):
        data.append(T.encode_example(tok, "", next(stream), 1.0, length_power=power))
    return data


def attribute_labels(o: w.Obj) -> tuple[int, int, int, int, int]:
    """An object's colour, shape, size, row and column as class indices (see ATTRIBUTE_SIZES)."""
    return list(w.COLOURS).index(o.colour), w.SHAPES.index(o.shape), w.SIZES.index(o.size), o.row, o.col


@torch.no_grad()
def task_accuracy(lm: Any, tok: Any, tasks: dict[str, float]) -> dict[str, float]:
    """Letter accuracy on 200 held-out text items per task (the model is left in train mode)."""
    lm.eval()
    res = {task: round(float(T.letter_scores(lm, tok, w.world_items(task, 200, seed=12345, mode="text",
                                                                    split="test"))["correct"].mean()), 3)
           for task in tasks}
    lm.train()
    return res


def report_arithmetic(name: str, lm: Any, tok: Any, other: dict[str, float]) -> None:
    """Greedy chain-of-thought accuracy on 100 held-out additions, when the run trained on arithmetic."""
    if other.get("arith", 0) > 0:
        lm.eval()
        problems = w.arithmetic_problems(100, seed=12345, split="test")
        print(name, "arith", float(T.solve_arithmetic(lm, tok, problems, "text")["correct"].mean()))
