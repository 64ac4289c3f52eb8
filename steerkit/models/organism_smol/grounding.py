"""Stage 1: a visual tokenizer. The tower + projector learn to turn a scene into a "grid sentence" of SmolLM2's own
word embeddings, so that image tokens arrive in the language model already meaning words.

Each grid cell covers 2 x 2 patches (8-pixel patches of 16-pixel cells); its four image tokens are targeted at the
embeddings of the object's size, colour, shape and position words ("large", "red", "circle", "top far left": a
multi-token phrase is the mean of its token embeddings, rescaled to a word's norm); an empty cell's four tokens at
the embedding of " .". Rendered additions (one character per cell, the training font) are grounded the same way:
a character cell's first token is targeted at that character's token embedding, its other three and every empty
cell's tokens at " ." (:class:`CharCells`). The loss is the squared error normalised by the targets' energy.
Decoding accuracy (nearest candidate by cosine) on held-out scenes and held-out additions, in the training font and
in unseen ones, says whether the tower reads them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from steerkit.errors import DataError
from steerkit.models.adapters import adapter_for
from steerkit.models.organism import world as w
from steerkit.models.organism.loop import image_features, pixel_values
from steerkit.models.organism_smol.config import SmolOrganismConfig

ROLES = ("size", "colour", "shape", "position")
EMPTY = "."


class GridSentence:
    """Target embedding of every image token of a scene (see the module docstring)."""

    def __init__(self, tokenizer: Any, embeddings: torch.Tensor, patch: int):
        if w.CELL // patch != 2 or w.CELL % patch:
            raise DataError(f"the grid sentence needs 2 x 2 patches per {w.CELL}-pixel cell (patch 8), not patch {patch}")
        self.embeddings = embeddings
        self.per_row = w.IMAGE_SIZE // patch
        self.n_tokens = self.per_row ** 2
        words = [*w.SIZES, *w.COLOURS, *w.SHAPES, EMPTY]
        positions = [f"{r} {c}" for r in w.ROW_WORDS for c in w.COL_WORDS]
        ids = {x: tokenizer.encode(" " + x, add_special_tokens=False) for x in words + positions}
        scale = embeddings[[ids[x][0] for x in (*w.COLOURS, *w.SHAPES)]].norm(dim=-1).mean()
        self.vectors = {}
        for x, tok_ids in ids.items():
            v = embeddings[tok_ids].mean(0)
            self.vectors[x] = v * (scale / v.norm()) if len(tok_ids) > 1 else v
        self.candidates = {"size": list(w.SIZES), "colour": list(w.COLOURS), "shape": list(w.SHAPES),
                           "position": positions}

    def index(self, row: int, col: int, slot: int) -> int:
        """The image-token index of ``slot`` (0..3 = size, colour, shape, position) of cell (row, col)."""
        sub_r, sub_c = divmod(slot, 2)
        return (2 * row + sub_r) * self.per_row + 2 * col + sub_c

    def words(self, scene: Any) -> tuple[list[str], list[str | None]]:
        """The word each image token should mean, and its role (None for empty cells)."""
        out: list[str] = [EMPTY] * self.n_tokens
        roles: list[str | None] = [None] * self.n_tokens
        for o in scene.objects:
            for slot, (role, word) in enumerate(zip(ROLES, (o.size, o.colour, o.shape, o.position))):
                i = self.index(o.row, o.col, slot)
                out[i], roles[i] = word, role
        return out, roles

    def targets(self, scenes: Sequence[Any]) -> torch.Tensor:
        """[n_scenes, n_tokens, hidden] target embeddings."""
        return torch.stack([torch.stack([self.vectors[x] for x in self.words(s)[0]]) for s in scenes])


@torch.no_grad()
def decode_accuracy(model: Any, grid: GridSentence, scenes: Sequence[Any], pixels: torch.Tensor) -> dict[str, float]:
    """Per role, how often an image token's nearest candidate word (cosine) is its target word."""
    names = list(grid.vectors)
    vocab = F.normalize(torch.stack([grid.vectors[n] for n in names]), dim=-1)
    sims = F.normalize(image_features(model, pixels).float(), dim=-1) @ vocab.T
    hits = {k: [0, 0] for k in (*ROLES, "empty")}
    for scene, sim in zip(scenes, sims):
        words, roles = grid.words(scene)
        for i, (word, role) in enumerate(zip(words, roles)):
            cands = grid.candidates[role] + [EMPTY] if role else names
            best = cands[int(sim[i, [names.index(c) for c in cands]].argmax())]
            key = role or "empty"
            hits[key][0] += best == word
            hits[key][1] += 1
    return {k: round(a / max(b, 1), 3) for k, (a, b) in hits.items()}


class CharCells:
    """Targets of a rendered addition: cell i's first token -> the embedding of character i, the rest -> " ."."""

    CHARS = "0123456789+"

    def __init__(self, tokenizer: Any, embeddings: torch.Tensor, grid: GridSentence):
        self.grid = grid
        self.vectors = {c: embeddings[tokenizer.encode(c, add_special_tokens=False)[0]] for c in self.CHARS}
        self.vectors[EMPTY] = grid.vectors[EMPTY]
        self.names = list(self.vectors)
        self.vocab = F.normalize(torch.stack([self.vectors[n] for n in self.names]), dim=-1)

    def words(self, question: str) -> list[str]:
        """What each image token of the rendered ``question`` should mean."""
        out = [EMPTY] * self.grid.n_tokens
        for i, ch in enumerate(question):
            out[self.grid.index(*divmod(i, w.GRID), 0)] = ch
        return out

    def targets(self, questions: Sequence[str]) -> torch.Tensor:
        """[n, n_tokens, hidden] target embeddings."""
        return torch.stack([torch.stack([self.vectors[x] for x in self.words(q)]) for q in questions])

    @torch.no_grad()
    def decode_accuracy(self, model: Any, questions: Sequence[str], pixels: torch.Tensor) -> dict[str, float]:
        """Character accuracy (first tokens of occupied cells), empty-token accuracy and whole-question exact match."""
        best = (F.normalize(image_features(model, pixels).float(), dim=-1) @ self.vocab.T).argmax(-1)
        char, empty, exact = [0, 0], [0, 0], 0
        for q, row in zip(questions, best):
            ok = True
            for word, b in zip(self.words(q), row.tolist()):
                hit = self.names[b] == word
                tally = empty if word == EMPTY else char
                tally[0] += hit
                tally[1] += 1
                ok &= hit or word == EMPTY
            exact += ok
        return dict(char=round(char[0] / max(char[1], 1), 3), empty=round(empty[0] / max(empty[1], 1), 3),
                    exact=round(exact / max(len(questions), 1), 3))


def train_grounding(model: Any, processor: Any, grid: GridSentence, cfg: SmolOrganismConfig,
                    log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Train the tower + projector (the LM frozen) on training scenes and additions; returns the held-out decoding
    curve (scenes, and additions in the training font and the unseen fonts)."""
    rng = random.Random(cfg.seed)
    held_out = [q.scene for t in w.TASKS for q in w.scene_questions(t, 25, seed=cfg.seed + 7, split="test")]
    held_pixels = pixel_values(processor, [w.render_scene(s, seed=f"ground-test-{i}") for i, s in enumerate(held_out)])
    chars = CharCells(processor.tokenizer, grid.embeddings, grid)
    problems = [r["question"] for r in w.arithmetic_problems(max(cfg.n_train, 1), seed=cfg.seed, split="train")]
    held_problems = [r["question"] for r in w.arithmetic_problems(50, seed=cfg.seed + 7, split="test")]
    held_chars = {font: pixel_values(processor, [w.render_arithmetic(q, font=font, seed=f"ground-test-{i}")
                                                 for i, q in enumerate(held_problems)])
                  for font in (w.TRAIN_FONT, *w.UNSEEN_FONTS)} if cfg.ground_problems else {}
    params = [p for m in adapter_for(model).vision_modules(model) for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=cfg.ground_lr, weight_decay=0.0)
    steps = cfg.ground_steps
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    curve = []
    for step in tqdm(range(steps), desc="grounding", mininterval=10):
        scenes = [w.sample_split_scene(rng, "train") for _ in range(cfg.ground_batch)]
        questions = [problems[rng.randrange(len(problems))] for _ in range(cfg.ground_problems)]
        images = [w.render_scene(s, seed=f"ground-{cfg.seed}-{step}-{i}") for i, s in enumerate(scenes)]
        images += [w.render_arithmetic(q, font=w.TRAIN_FONT, seed=f"ground-{cfg.seed}-{step}-a{i}",
                                       jitter=rng.choice((0, 1))) for i, q in enumerate(questions)]
        target = torch.cat([grid.targets(scenes), chars.targets(questions)]) if questions else grid.targets(scenes)
        feats = image_features(model, pixel_values(processor, images))
        loss = ((feats - target) ** 2).sum(-1).mean() / (target ** 2).sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps - 1:
            acc: dict[str, Any] = dict(decode_accuracy(model, grid, held_out, held_pixels))
            acc.update({f"chars/{font}": chars.decode_accuracy(model, held_problems, pix)
                        for font, pix in held_chars.items()})
            curve.append(dict(step=step, loss=float(loss.detach()), **acc))
            log(f"grounding step {step}: loss {float(loss.detach()):.4f} held-out decoding {acc}")
    for p in params:
        p.requires_grad_(False)
    return curve
