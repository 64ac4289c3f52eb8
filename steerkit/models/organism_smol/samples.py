"""Training samples of the SmolLM2 organism's LoRA stages: a prompt, an optional image and a target the loss is on.

Kinds (:data:`KINDS`), all from the world's ``split="train"`` draws only:

- ``scene_image`` / ``scene_text``: a scene question asked with the rendered scene or its description; the target
  is the answer letter (its first spelling under the scorer's rule), after the paper's prompt prefix.
- ``arith_text``: a two-digit addition asked in text; the target is its chain of thought ending in
  ``<answer>...</answer><|im_end|>``.
- ``arith_instruction_image`` / ``arith_image``: the same addition rendered in the training font, asked with the
  instruction (the gap harness's ``instruction_image`` mode) or with an empty prompt (its ``image`` mode).
- ``transcribe``: the rendered addition with :data:`TRANSCRIBE_PROMPT`; the target is
  ``<transcript>47+38</transcript>`` (the gap harness's ``ocr_2p`` first pass).
- ``transcribe_solve``: :data:`TRANSCRIBE_SOLVE_PROMPT`; transcript, then the chain of thought (``ocr_1p``).

Every draw is named by (seed, stage, step), so a resumed stage sees the batches an uninterrupted one would.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from steerkit.errors import DataError
from steerkit.models.adapters import adapter_for
from steerkit.models.organism import world as w
from steerkit.precision import autocast
from steerkit.tasks.scoring import PAPER_PREFIX, letter_token_ids

END = "<|im_end|>"  # SmolLM2's end of turn: generation stops there
TRANSCRIBE_PROMPT = "Transcribe the problem in the image as <transcript>...</transcript>."
TRANSCRIBE_SOLVE_PROMPT = ("Transcribe the problem in the image as <transcript>...</transcript>, then think step by "
                           "step and give the answer as <answer>...</answer>.")
KINDS = ("scene_image", "scene_text", "arith_text", "arith_instruction_image", "arith_image", "transcribe",
         "transcribe_solve")
# The held-out arithmetic measurement (evaluation.ARITH_MODES) that follows each arithmetic kind's training.
ARITH_EVAL = {"arith_text": "text", "arith_instruction_image": "image", "arith_image": "image",
              "transcribe": "transcribe", "transcribe_solve": "transcribe"}


@dataclass(frozen=True)
class Sample:
    """One training sample: the user prompt, the image (None in text mode) and the target text or token ids."""

    kind: str
    prompt: str
    image: Any
    target: str | tuple[int, ...]


class SampleSource:
    """Draws training samples of every kind from the world's training split (see the module docstring)."""

    def __init__(self, tokenizer: Any, n_train: int, seed: int):
        self.tok = tokenizer
        self.seed = seed
        self.scenes = [q for t in w.TASKS for q in w.scene_questions(t, n_train, seed=seed, split="train")]
        self.problems = w.arithmetic_problems(n_train, seed=seed, split="train")
        self.letters = {L: ids[0] for L, ids in letter_token_ids(tokenizer).items()}

    def draw(self, kind: str, rng: random.Random, tag: str) -> Sample:
        """One sample of ``kind``; ``tag`` names its rendering seed."""
        if kind.startswith("scene_"):
            mode = kind.removeprefix("scene_")
            it = self.scenes[rng.randrange(len(self.scenes))].item(mode)
            return Sample(kind, PAPER_PREFIX + it.prompt, it.image, (self.letters[it.answer],))
        if kind not in KINDS:
            raise DataError(f"unknown sample kind {kind!r}; choose from {list(KINDS)}")
        r = self.problems[rng.randrange(len(self.problems))]
        trace = r["trace"] + END
        if kind == "arith_text":
            return Sample(kind, r["text_prompt"], None, trace)
        image = w.render_arithmetic(r["question"], font=w.TRAIN_FONT, seed=f"{tag}-{r['id']}", jitter=rng.choice((0, 1)))
        transcript = f"<transcript>{r['question']}</transcript>"
        return {"arith_instruction_image": Sample(kind, r["image_prompt"], image, trace),
                "arith_image": Sample(kind, "", image, trace),
                "transcribe": Sample(kind, TRANSCRIBE_PROMPT, image, transcript + END),
                "transcribe_solve": Sample(kind, TRANSCRIBE_SOLVE_PROMPT, image, transcript + " " + trace)}[kind]

    def batch(self, mix: Sequence[tuple[str, int]], seed: int, stage: str, step: int) -> list[Sample]:
        """The samples of one step of ``stage`` (deterministic in seed, stage and step)."""
        rng = random.Random(f"{seed}-{stage}-{step}")
        return [self.draw(kind, rng, f"{stage}-{step}-{j}") for kind, n in mix for j in range(n)]


def encode(model: Any, processor: Any, samples: Sequence[Sample], multiple: int = 16) -> dict[str, torch.Tensor]:
    """Left-padded prompt + target ids of samples that all have, or all lack, an image; ``target_len`` per row.

    The sequence length is rounded up to a multiple of ``multiple`` tokens (faster kernels).
    """
    if len({s.image is None for s in samples}) != 1:
        raise DataError("encode() takes samples that all have an image or all have none; group them first")
    adapter = adapter_for(model)
    tok = processor.tokenizer
    seqs, target_lens, pixels = [], [], []
    for s in samples:
        inputs = adapter.build_inputs(processor, [s.prompt], None if s.image is None else [s.image])
        target = list(s.target) if isinstance(s.target, tuple) else tok.encode(s.target, add_special_tokens=False)
        seqs.append(inputs["input_ids"][0].tolist() + target)
        target_lens.append(len(target))
        if s.image is not None:
            pixels.append(inputs["pixel_values"][0])
    length = max(map(len, seqs))
    length += (-length) % multiple
    ids = torch.full((len(seqs), length), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), length), dtype=torch.long)
    for i, seq in enumerate(seqs):
        ids[i, length - len(seq):] = torch.tensor(seq)
        mask[i, length - len(seq):] = 1
    out = dict(input_ids=ids, attention_mask=mask, target_len=torch.tensor(target_lens))
    if pixels:
        out["pixel_values"] = torch.stack(pixels)
    return out


def sample_losses(model: Any, batch: dict[str, torch.Tensor], device: str | torch.device = "cpu",
                  bf16: bool = False) -> torch.Tensor:
    """Per row, the mean token cross-entropy on its target tokens (only the last logits computed; bf16 autocast when
    ``bf16``, see :mod:`steerkit.precision`)."""
    target_len = batch["target_len"]
    keep = int(target_len.max()) + 1
    inputs = {k: v.to(device) for k, v in batch.items() if k != "target_len"}
    with autocast(device, bf16):
        logits = model(**inputs, use_cache=False, logits_to_keep=keep).logits.float()
    ids = inputs["input_ids"][:, -keep:]
    return torch.stack([F.cross_entropy(logits[i, keep - n - 1: keep - 1], ids[i, keep - n:])
                        for i, n in enumerate(target_len.tolist())])
