"""Build the organism: tokenizer, text LM (LlamaForCausalLM) and MLLM (LlavaForConditionalGeneration), on CPU.

Recipe (see docs/organism.md):
1. Tokenizer: byte-level BPE trained on a sample of world text.
2. Text LM: pretrained on scene QA in text mode (Count, Relation, Attribute, Depth), two-digit additions with a
   chain of thought, and plain world sentences (descriptions, relation facts, concept sentences). Loss: mean over
   each example's response tokens (per-example averaging, so long chains of thought do not dominate) plus a small
   weight on its prompt tokens.
3. MLLM: a CLIP tower (64 px, patch 16 -> 16 image tokens) + projector, LM initialised from the text LM. Trained on
   image-mode scene QA and rendered arithmetic, with text-only replay, plus a grounding auxiliary loss: the
   projector output at each occupied grid cell is pulled (normalised MSE) towards the mean input embedding of the
   words/character that describe that cell, a "visual tokenizer" prior without which image-mode reading does not
   learn at this scale.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from steerkit.models.organism import tokenizer as tk
from steerkit.models.organism import world as w
from steerkit.tasks.schema import LETTERS, Item
from steerkit.tasks.scoring import PAPER_PREFIX

ANSWER_RE = re.compile(r"<answer>\s*([0-9]+)\s*</answer>")
EVAL_SEED = 12345  # seed of the held-out evaluation sets (split="test") behind metrics.parquet
TOKENIZER_SEED_OFFSET = 1000  # the tokenizer corpus's training draws use seeds apart from the LM's streams


@dataclass(frozen=True)
class OrganismConfig:
    """Sizes, steps and learning rates of the organism recipe (``fast()`` gives the smoke-test variant)."""

    seed: int = 0
    vocab_size: int = 512
    hidden: int = 128
    intermediate: int = 512
    layers: int = 4
    heads: int = 4
    vision_hidden: int = 128
    vision_layers: int = 2
    text_steps: int = 1000
    text_batch: int = 48
    text_lr: float = 3e-3
    warmup: int = 50
    mllm_steps: int = 800
    mllm_batch: int = 48
    tower_lr: float = 3e-3
    lm_lr: float = 3e-4
    replay: float = 0.2
    ground_weight: float = 1.0
    prompt_weight: float = 0.1
    # Per-token weight = length**-power. 0 (per-token sum) is what lets arithmetic learn: with per-example means
    # (power 1) each digit of a ~35-token trace weighs 1/35 of an answer letter and text-mode arithmetic stays
    # at 0.01-0.02; power 0 gives 0.61 (text LM alone, 1000 steps, docs/organism.md).
    length_power: float = 0.0
    mllm_length_power: float = 1.0  # the MLLM phase keeps per-example means (the grounding loss converges with it)
    arith_jitter: int = 1
    prefix_p: float = 0.5
    eval_n: int = 200
    mix_text: dict[str, float] = field(default_factory=lambda: {"qa": 0.6, "arith": 0.25, "plain": 0.15})
    mix_image: dict[str, float] = field(default_factory=lambda: {"qa": 0.7, "arith": 0.3})

    @staticmethod
    def fast(seed: int = 0) -> OrganismConfig:
        """A few steps of everything: exercises the whole path in seconds (not a useful model)."""
        return OrganismConfig(seed=seed, text_steps=4, text_batch=8, mllm_steps=3, mllm_batch=8, warmup=1,
                              eval_n=8)


# ---------------------------------------------------------------------------------------------- examples
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


def weighted_lm_loss(logits: torch.Tensor, input_ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy weighted per target token, summed per example, averaged over the batch."""
    ce = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), input_ids[:, 1:].flatten(), reduction="none")
    return (ce.view_as(weights) * weights).sum() / input_ids.shape[0]


def _schedule(opt: torch.optim.Optimizer, steps: int, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


# ---------------------------------------------------------------------------------------------- models
def make_text_lm(tok: Any, cfg: OrganismConfig) -> Any:
    """A fresh LlamaForCausalLM of the organism's size (untied embeddings)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=cfg.hidden, intermediate_size=cfg.intermediate,
        num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads,
        max_position_embeddings=512, tie_word_embeddings=False, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    return LlamaForCausalLM(config)


def make_processor(tok: Any) -> Any:
    """LlavaProcessor with a PIL CLIP image processor (64 px, no torchvision) and the organism's chat template."""
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    ip = CLIPImageProcessorPil(size={"shortest_edge": w.IMAGE_SIZE},
                               crop_size={"height": w.IMAGE_SIZE, "width": w.IMAGE_SIZE})
    return LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=w.CELL,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1,
                          chat_template=tk.CHAT_TEMPLATE)


def make_mllm(text_lm: Any, tok: Any, cfg: OrganismConfig) -> Any:
    """LlavaForConditionalGeneration whose language model and head are copied from ``text_lm``."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    n_patches = (w.IMAGE_SIZE // w.CELL) ** 2
    vision = dict(model_type="clip_vision_model", hidden_size=cfg.vision_hidden, intermediate_size=4 * cfg.vision_hidden,
                  num_hidden_layers=cfg.vision_layers, num_attention_heads=4, image_size=w.IMAGE_SIZE,
                  patch_size=w.CELL, projection_dim=cfg.vision_hidden)
    config = LlavaConfig(text_config=text_lm.config.to_dict(), vision_config=vision,
                         image_token_index=tok.convert_tokens_to_ids(tk.IMAGE),
                         vision_feature_layer=-1,  # the default -2 would be the first layer of a 2-layer tower
                         vision_feature_select_strategy="default", image_seq_length=n_patches,
                         tie_word_embeddings=False)
    mllm = LlavaForConditionalGeneration(config)
    mllm.model.language_model.load_state_dict(text_lm.model.state_dict())
    mllm.lm_head.load_state_dict(text_lm.lm_head.state_dict())
    return mllm


def image_seq_length(processor: Any) -> int:
    """Number of ``<image>`` tokens the processor expands one image into."""
    blank = Image.new("RGB", (w.IMAGE_SIZE, w.IMAGE_SIZE))
    ids = processor(text=[tk.IMAGE], images=[[blank]], return_tensors="pt")["input_ids"]
    return int((ids == processor.tokenizer.convert_tokens_to_ids(tk.IMAGE)).sum())


# ---------------------------------------------------------------------------------------------- training
def _optimizer_step(model: Any, opt: torch.optim.Optimizer, sched: Any, loss: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()


def train_text_lm(model: Any, tok: Any, cfg: OrganismConfig, log: Callable[[str], None] = print) -> list[float]:
    """Pretrain ``model`` on world text; returns the loss curve."""
    spec = stream_plan(cfg)["text_lm"]
    data = text_examples(tok, spec["n"], spec["seed"], cfg, mix=spec["mix"])
    batches = length_batches(data, cfg.text_batch, cfg.text_steps, cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.text_lr, weight_decay=0.01, betas=(0.9, 0.98))
    sched = _schedule(opt, cfg.text_steps, cfg.warmup)
    model.train()
    losses = []
    for step in tqdm(range(cfg.text_steps), desc="organism text LM", mininterval=5):
        batch = collate(batches[step], tok.pad_token_id)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = weighted_lm_loss(logits, batch["input_ids"], batch["weights"])
        _optimizer_step(model, opt, sched, loss)
        losses.append(float(loss.detach()))
        if step % 50 == 0 or step == cfg.text_steps - 1:
            log(f"text step {step}: loss {np.mean(losses[-50:]):.3f}")
    model.eval()
    return losses


def _pixels(processor: Any, images: Sequence[Image.Image]) -> torch.Tensor:
    return processor.image_processor(images=list(images), return_tensors="pt")["pixel_values"]


def grounding_loss(features: torch.Tensor, cells: Sequence[dict[int, list[int]] | None],
                   embed: torch.nn.Embedding) -> torch.Tensor:
    """Normalised MSE between projector outputs at described cells and the mean (detached) embedding of the
    cell's words: ``|f - e|^2 / |e|^2`` averaged over cells. ``features``: [n_images, n_cells, hidden]."""
    preds, targets = [], []
    weight = embed.weight.detach()
    for f, c in zip(features, cells):
        for cell, ids in (c or {}).items():
            preds.append(f[cell])
            targets.append(weight[ids].mean(0))
    if not preds:
        return features.sum() * 0.0
    p, t = torch.stack(preds), torch.stack(targets)
    return (((p - t) ** 2).sum(-1) / (t**2).sum(-1).clamp_min(1e-6)).mean()


def mllm_forward(model: Any, batch: dict[str, torch.Tensor], pixel_values: torch.Tensor | None,
                 image_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits of a mixed batch (image rows get their image features in place of ``<image>`` tokens) and the
    projector outputs ([n_images, n_cells, hidden]) used by the grounding loss."""
    ids = batch["input_ids"]
    embeds = model.get_input_embeddings()(ids)
    features = None
    if pixel_values is not None:
        out = model.model.get_image_features(pixel_values=pixel_values)
        features = torch.stack(list(out.pooler_output))
        mask = ids == model.config.image_token_id
        rows = mask[image_rows]
        sub = embeds[image_rows]
        sub = sub.masked_scatter(rows.unsqueeze(-1), features.to(sub.dtype))
        embeds = embeds.clone()
        embeds[image_rows] = sub
    logits = model(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).logits
    return logits, features


def train_mllm(model: Any, processor: Any, cfg: OrganismConfig, log: Callable[[str], None] = print) -> list[float]:
    """Train tower + projector (and the LM at a lower rate) on image-mode data with text replay."""
    tok = processor.tokenizer
    n_img_tok = image_seq_length(processor)
    plan = stream_plan(cfg)
    images = image_examples(tok, plan["mllm_image"]["n"], plan["mllm_image"]["seed"], cfg, n_img_tok)
    texts = text_examples(tok, plan["mllm_replay"]["n"], plan["mllm_replay"]["seed"], cfg,
                          mix=plan["mllm_replay"]["mix"], length_power=cfg.mllm_length_power)
    data = images + texts
    random.Random(cfg.seed + 3).shuffle(data)
    batches = length_batches(data, cfg.mllm_batch, cfg.mllm_steps, cfg.seed + 4)
    vision = list(model.model.vision_tower.parameters()) + list(model.model.multi_modal_projector.parameters())
    lm = list(model.model.language_model.parameters()) + list(model.lm_head.parameters())
    opt = torch.optim.AdamW([{"params": vision, "lr": cfg.tower_lr}, {"params": lm, "lr": cfg.lm_lr}],
                            weight_decay=0.01, betas=(0.9, 0.98))
    sched = _schedule(opt, cfg.mllm_steps, cfg.warmup)
    embed = model.get_input_embeddings()
    model.train()
    losses = []
    for step in tqdm(range(cfg.mllm_steps), desc="organism MLLM", mininterval=5):
        chunk = batches[step]
        batch = collate(chunk, tok.pad_token_id)
        image_rows = torch.tensor([e.image is not None for e in chunk])
        pixel_values = _pixels(processor, [e.image for e in chunk if e.image is not None]) if image_rows.any() else None
        logits, features = mllm_forward(model, batch, pixel_values, image_rows)
        loss = weighted_lm_loss(logits, batch["input_ids"], batch["weights"])
        ground = torch.zeros(())
        if features is not None and cfg.ground_weight:
            ground = grounding_loss(features, [e.cells for e in chunk if e.image is not None], embed)
        _optimizer_step(model, opt, sched, loss + cfg.ground_weight * ground)
        losses.append(float(loss.detach()))
        if step % 200 == 0 or step == cfg.mllm_steps - 1:
            log(f"mllm step {step}: lm loss {np.mean(losses[-50:]):.3f} grounding {float(ground.detach()):.3f}")
    model.eval()
    return losses


# ---------------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def letter_scores(model: Any, processor: Any, items: Sequence[Item], batch_size: int = 64) -> pd.DataFrame:
    """Letter scoring with steerkit's one scorer (:class:`steerkit.tasks.scoring.LetterScorer`) at the answer position.

    Works for the MLLM (processor; items with or without images, inputs built by steerkit's adapter) and for the
    text LM (tokenizer; text items only). Returns one row per item: id, task, mode, answer, pred, correct.
    """
    from steerkit.models.adapters import adapter_for
    from steerkit.tasks.scoring import LetterScorer

    adapter = adapter_for(model)
    tok = adapter.tokenizer(processor)
    scorer = LetterScorer.for_items(tok, items)
    rows = []
    for start in range(0, len(items), batch_size):
        chunk = list(items[start:start + batch_size])
        with_image = chunk[0].image is not None
        if any((it.image is not None) != with_image for it in chunk):
            raise ValueError("a batch mixes image and text items; score the two modes separately")
        if processor is tok:  # text LM: the chat template by hand (the tokenizer has no image path)
            tok.padding_side = "left"
            inputs = tok([tk.format_user(it.prompt, False) for it in chunk], return_tensors="pt", padding=True)
        else:
            inputs = adapter.build_inputs(processor, [it.prompt for it in chunk],
                                          [it.image for it in chunk] if with_image else None)
        logits = model(**inputs).logits[:, -1].float()
        for it, scored in zip(chunk, scorer.score(logits, chunk)):
            rows.append(dict(id=it.id, task=it.task, mode="image" if with_image else "text", answer=it.answer,
                             pred=scored["pred"], correct=scored["correct"], n_choices=len(it.choices)))
    return pd.DataFrame(rows)


@torch.no_grad()
def solve_arithmetic(model: Any, processor: Any, problems: Sequence[dict[str, Any]], mode: str = "text",
                     font: str = w.TRAIN_FONT, max_new_tokens: int = 48, batch_size: int = 64) -> pd.DataFrame:
    """Greedy chain-of-thought generation on arithmetic problems (text mode, or rendered in ``font``).

    Returns one row per problem: id, mode, font, answer, output, pred, correct.
    """
    from steerkit.models.adapters import adapter_for

    adapter = adapter_for(model)
    tok = adapter.tokenizer(processor)
    rows = []
    for start in range(0, len(problems), batch_size):
        chunk = list(problems[start:start + batch_size])
        if processor is tok:
            tok.padding_side = "left"
            inputs = tok([tk.format_user(p["text_prompt"], False) for p in chunk], return_tensors="pt", padding=True)
        elif mode == "image":
            imgs = [w.render_arithmetic(p["question"], font, seed=p["id"]) for p in chunk]
            inputs = adapter.build_inputs(processor, [p["image_prompt"] for p in chunk], imgs)
        else:
            inputs = adapter.build_inputs(processor, [p["text_prompt"] for p in chunk])
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        texts = tok.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        for p, text in zip(chunk, texts):
            m = ANSWER_RE.search(text)
            pred = m.group(1) if m else None
            rows.append(dict(id=p["id"], mode=mode, font=font if mode == "image" else None, answer=p["answer"],
                             output=text, pred=pred, correct=pred == p["answer"]))
    return pd.DataFrame(rows)


def evaluate(mllm: Any, processor: Any, text_lm: Any | None = None, n: int = 200, seed: int = EVAL_SEED,
             fonts: Iterable[str] = (w.TRAIN_FONT, *w.UNSEEN_FONTS)) -> pd.DataFrame:
    """Accuracy table of the organism on held-out items (``split="test"``, never trained on): rows (model, task,
    mode, font) with accuracy, its 95% bootstrap CI (``lo``, ``hi``), n and chance level; plus one row
    ``task="Arithmetic gap"`` (mode ``"text-image"``): text minus training-font image accuracy of the MLLM on the
    same problems, with a paired bootstrap CI."""
    from steerkit.tasks.stats import bootstrap_ci, paired_bootstrap_diff

    rows = []

    def add(model_name: str, df: pd.DataFrame, task: str, mode: str, font: str | None, chance: float) -> None:
        ci = bootstrap_ci(df["correct"].astype(float).to_numpy(), n_boot=2000, seed=0)
        rows.append(dict(model=model_name, task=task, mode=mode, font=font, accuracy=float(df["correct"].mean()),
                         lo=ci.lo, hi=ci.hi, n=len(df), chance=chance))

    for task in w.TASKS:
        text_items = w.world_items(task, n, seed=seed, mode="text", split="test")
        image_items = w.world_items(task, n, seed=seed, mode="image", split="test")
        chance = float(np.mean([1 / len(it.choices) for it in text_items]))
        majority = float(pd.Series([it.answer for it in text_items]).value_counts(normalize=True).iloc[0])
        for model_name, model, proc, modes in (("mllm", mllm, processor, ("text", "image")),
                                               ("text_lm", text_lm, getattr(processor, "tokenizer", None), ("text",))):
            if model is None:
                continue
            for mode in modes:
                df = letter_scores(model, proc, text_items if mode == "text" else image_items)
                add(model_name, df, task, mode, None, chance)
                rows[-1]["majority"] = majority
    problems = w.arithmetic_problems(n, seed=seed, split="test")
    text_arith = solve_arithmetic(mllm, processor, problems, "text")
    add("mllm", text_arith, "Arithmetic", "text", None, 0.0)
    image_arith = None
    for font in fonts:
        df = solve_arithmetic(mllm, processor, problems, "image", font)
        image_arith = df if font == w.TRAIN_FONT else image_arith
        add("mllm", df, "Arithmetic", "image", font, 0.0)
    if image_arith is not None:
        gap = paired_bootstrap_diff(image_arith["correct"].astype(float).to_numpy(),
                                    text_arith["correct"].astype(float).to_numpy(), n_boot=2000, seed=0)
        rows.append(dict(model="mllm", task="Arithmetic gap", mode="text-image", font=w.TRAIN_FONT,
                         accuracy=gap.value, lo=gap.lo, hi=gap.hi, n=gap.n, chance=0.0))
    if text_lm is not None:
        add("text_lm", solve_arithmetic(text_lm, processor.tokenizer, problems, "text"), "Arithmetic", "text", None,
            0.0)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- build
def _tokenizer_corpus(seed: int, n: int = 3000) -> list[str]:
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


def build(cache_dir: str | Path, seed: int = 0, fast: bool = False, config: OrganismConfig | None = None,
          evaluate_n: int | None = None, log: Callable[[str], None] = print) -> Path:
    """Train the organism from scratch into ``cache_dir`` and return it.

    Writes ``<cache_dir>/text`` (LlamaForCausalLM + tokenizer), ``<cache_dir>/mllm`` (LlavaForConditionalGeneration
    + LlavaProcessor), ``<cache_dir>/metrics.parquet`` (accuracy table) and ``<cache_dir>/build.json`` (config,
    seconds per phase, versions). Deterministic for a given seed and thread count. ``fast=True`` runs a few steps
    of every phase (a smoke test, not a useful model).

    Example:
        >>> build("/tmp/organism", seed=0, fast=True)
        PosixPath('/tmp/organism')
    """
    import transformers

    cfg = config or (OrganismConfig.fast(seed) if fast else OrganismConfig(seed=seed))
    out = Path(cache_dir)
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    tok = tk.train_tokenizer(_tokenizer_corpus(cfg.seed, 400 if fast else 3000), cfg.vocab_size)
    text_lm = make_text_lm(tok, cfg)
    times["tokenizer"] = time.perf_counter() - t0
    log(f"organism: vocab {len(tok)}, text LM {sum(p.numel() for p in text_lm.parameters()) / 1e6:.2f} M params")

    t = time.perf_counter()
    text_losses = train_text_lm(text_lm, tok, cfg, log)
    times["text_lm"] = time.perf_counter() - t
    text_lm.save_pretrained(out / "text")
    tok.save_pretrained(out / "text")

    t = time.perf_counter()
    torch.manual_seed(cfg.seed + 1)
    processor = make_processor(tok)
    mllm = make_mllm(text_lm, tok, cfg)
    log(f"organism: MLLM {sum(p.numel() for p in mllm.parameters()) / 1e6:.2f} M params")
    mllm_losses = train_mllm(mllm, processor, cfg, log)
    times["mllm"] = time.perf_counter() - t
    mllm.save_pretrained(out / "mllm")
    processor.save_pretrained(out / "mllm")

    t = time.perf_counter()
    metrics = evaluate(mllm, processor, text_lm, n=evaluate_n or cfg.eval_n)
    metrics["seed"] = cfg.seed
    metrics.to_parquet(out / "metrics.parquet")
    times["evaluate"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - t0
    info = dict(config=asdict(cfg), seconds=times, threads=torch.get_num_threads(),
                versions=dict(torch=torch.__version__, transformers=transformers.__version__),
                final_loss=dict(text=float(np.mean(text_losses[-50:])), mllm=float(np.mean(mllm_losses[-50:]))))
    (out / "build.json").write_text(json.dumps(info, indent=2))
    log(f"organism built in {times['total']:.0f} s -> {out}")
    log(metrics.to_string())
    return out


__all__ = ["OrganismConfig", "build", "evaluate", "letter_scores", "solve_arithmetic", "grounding_loss",
           "make_processor", "make_mllm", "make_text_lm"]
