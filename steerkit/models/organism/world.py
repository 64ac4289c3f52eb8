"""The organism's procedural world: scenes of coloured shapes, their exact descriptions and renderings.

A scene is a 4 x 4 grid of 16-pixel cells (a 64-pixel image); each object sits in one cell and has a colour, a
shape and a size (size doubles as the depth cue: larger = closer). The same scene is given to a model either as
pixels (``render_scene``) or as an exact text description (``describe``), so every question exists as an
isomorphic (text, image) pair. Rendering draws its jitter from its own RNG seeded by the item id, so the image of
an item never depends on what else was generated.

Questions are multiple choice in the CV-Bench prompt format
(question + " Select from the following choices.\\n(A) ...\\n(B) ..."), answer a letter:

- ``Count``: "How many red objects are in the image?"
- ``Relation``: "Considering the relative positions of the red circle and the blue square in the image
  provided, where is the red circle located with respect to the blue square?" (left/right or above/below).
  The two objects always lie in opposite halves of the image (a one-hop relation: the answer is the half of the
  first object), because the two-hop form (compare two arbitrary columns) stayed at chance for a model this
  small.
- ``Attribute``: "What is the colour of the triangle?" (the shape is unique in the scene).
- ``Depth``: "Which object is closer to the camera, the red circle or the blue square?" (the larger one).

Choices are listed in a canonical order (numbers ascending, "left" before "right", "above" before "below",
colours in :data:`COLOURS` order), as CV-Bench lists count choices in order: with shuffled choices the letter is a
second hop (find the answer word, then find its letter) that a 1 M-parameter model learns far more slowly.
Count draws its answer letter uniformly before the scene (the builders take it as ``pos``; the others
ignore it). Depth choices follow the order in which the question names the two objects (shuffled).

Arithmetic: two-digit additions with a digit-by-digit chain of thought and the answer in ``<answer>...</answer>``,
asked as text or rendered one character per grid cell in a chosen font.

Held-out by construction: every scene and every addition belongs to ``"train"`` or ``"test"`` by a stable hash of
its content (:func:`steerkit.tasks.splits.content_split`, about 25% test): a scene by its exact description (so a
test scene is never asked about, nor described, in training), an addition by its unordered operand pair (so
neither ``47+38`` nor ``38+47`` is trained on when one of them is a test problem). The generators draw until the
content lands in the requested split, and :func:`plain_text_stream` (pretraining text) describes training scenes
only. The organism's build trains on ``split="train"`` only and evaluates on ``split="test"``.

Example:
    >>> items = world_items("Relation", 8, seed=0, mode="image")
    >>> twins = world_items("Relation", 8, seed=0, mode="text")  # the same questions, scene described in text
    >>> problems = arithmetic_problems(4, seed=0); img = render_arithmetic(problems[0]["question"], font="noto-serif")
"""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from steerkit.errors import DataError, RenderError
from steerkit.render.fonts import load_font
from steerkit.tasks.schema import LETTERS, Item
from steerkit.tasks.splits import check_split, content_split

GRID = 4
CELL = 16
IMAGE_SIZE = GRID * CELL

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "green": (40, 165, 60),
    "blue": (40, 80, 220),
    "yellow": (225, 195, 20),
    "purple": (145, 55, 190),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
SIZES: tuple[str, ...] = ("small", "large")
ROW_WORDS: tuple[str, ...] = ("top", "upper", "lower", "bottom")
COL_WORDS: tuple[str, ...] = ("far left", "left", "right", "far right")
NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six")

TASKS: tuple[str, ...] = ("Count", "Relation", "Attribute", "Depth")
SUFFIX = " Select from the following choices."
SCENE_PREFIX = "The image shows: "
# The instruction comes first so that the operands sit right before the answer (a short copy distance).
ARITH_TEXT_PROMPT = "Think step by step and give the answer as <answer>...</answer>. Compute {q} ."
ARITH_IMAGE_PROMPT = "Think step by step and give the answer as <answer>...</answer>. Compute the sum in the image ."

# Fonts (names of steerkit.render.fonts, which renders any of its fonts): the organism reads arithmetic in the
# training font; the unseen ones are never trained on (its metrics table measures these).
TRAIN_FONT = "noto-sans"
UNSEEN_FONTS: tuple[str, ...] = ("noto-serif", "ibm-plex-mono", "caveat")


def _rng(*parts: Any) -> random.Random:
    """A random stream named by ``parts`` (stable across processes, unlike ``hash``)."""
    return random.Random(zlib.crc32("|".join(map(str, parts)).encode()))


# ------------------------------------------------------------------------------------------------ scenes
@dataclass(frozen=True)
class Obj:
    """One object of a scene: colour, shape, size and grid cell (row 0 = top, col 0 = left)."""

    colour: str
    shape: str
    size: str
    row: int
    col: int

    @property
    def name(self) -> str:
        """How questions refer to it ("red circle"); (colour, shape) is unique within a scene."""
        return f"{self.colour} {self.shape}"

    @property
    def position(self) -> str:
        """Its cell in words, e.g. "top far left"."""
        return f"{ROW_WORDS[self.row]} {COL_WORDS[self.col]}"

    def phrase(self) -> str:
        """Its description, e.g. "a large red circle at the top far left"."""
        return f"a {self.size} {self.colour} {self.shape} at the {self.position}"


@dataclass(frozen=True)
class Scene:
    """Objects in raster order (top to bottom, left to right), the order in which they are described."""

    objects: tuple[Obj, ...]

    def count(self, *, colour: str | None = None, shape: str | None = None) -> int:
        """Number of objects matching the colour and/or shape."""
        return sum((colour is None or o.colour == colour) and (shape is None or o.shape == shape)
                   for o in self.objects)


def sample_scene(rng: random.Random, n_min: int = 2, n_max: int = 6) -> Scene:
    """A random scene of ``n_min..n_max`` objects in distinct cells with distinct (colour, shape) pairs."""
    n = rng.randint(n_min, n_max)
    cells = rng.sample(range(GRID * GRID), n)
    kinds = rng.sample([(c, s) for c in COLOURS for s in SHAPES], n)
    objs = [Obj(c, s, rng.choice(SIZES), cell // GRID, cell % GRID) for (c, s), cell in zip(kinds, cells)]
    return Scene(tuple(sorted(objs, key=lambda o: (o.row, o.col))))


def describe(scene: Scene) -> str:
    """The exact text description of a scene, objects in raster order.

    Example:
        >>> describe(scene)
        'a large red circle at the top far left . a small blue square at the lower right .'
    """
    return " ".join(o.phrase() + " ." for o in scene.objects)


def render_scene(scene: Scene, seed: int | str = 0, *, jitter: int = 1) -> Image.Image:
    """The scene as a 64 x 64 RGB image: one shape per 16-pixel cell, large shapes fill most of the cell.

    ``seed`` names the rendering RNG (position and colour jitter), independent of the scene's RNG.
    """
    rng = _rng("render", seed)
    img = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (245, 245, 245))
    draw = ImageDraw.Draw(img)
    for o in scene.objects:
        half = 7 if o.size == "large" else 4
        cx = o.col * CELL + CELL // 2 + rng.randint(-jitter, jitter) * (o.size == "small")
        cy = o.row * CELL + CELL // 2 + rng.randint(-jitter, jitter) * (o.size == "small")
        colour = tuple(max(0, min(255, v + rng.randint(-12, 12))) for v in COLOURS[o.colour])
        box = [cx - half, cy - half, cx + half - 1, cy + half - 1]
        if o.shape == "circle":
            draw.ellipse(box, fill=colour)
        elif o.shape == "square":
            draw.rectangle(box, fill=colour)
        else:
            draw.polygon([(cx, cy - half), (cx - half, cy + half - 1), (cx + half - 1, cy + half - 1)], fill=colour)
    return img


def scene_split(scene: Scene) -> str:
    """``"train"`` or ``"test"``: the split of a scene, by a hash of its exact description."""
    return content_split("scene|" + describe(scene))


def arithmetic_split(a: int, b: int) -> str:
    """``"train"`` or ``"test"``: the split of the addition ``a + b``, by a hash of the unordered operand pair."""
    lo, hi = sorted((a, b))
    return content_split(f"arith|{lo}+{hi}")


def sample_split_scene(rng: random.Random, split: str, n_min: int = 2, n_max: int = 6) -> Scene:
    """:func:`sample_scene` until the scene belongs to ``split`` (rejection sampling, see :func:`scene_split`)."""
    while True:
        scene = sample_scene(rng, n_min, n_max)
        if scene_split(scene) == split:
            return scene


def cell_words(scene: Scene) -> dict[int, str]:
    """For each occupied cell (raster index), the words that describe its object (the grounding targets)."""
    return {o.row * GRID + o.col: f"{o.size} {o.colour} {o.shape} {o.position}" for o in scene.objects}


# ------------------------------------------------------------------------------------------------ questions
def cvbench_prompt(question: str, choices: Sequence[str]) -> str:
    """CV-Bench's prompt: question + " Select from the following choices." + one "(A) choice" line each."""
    return question + SUFFIX + "".join(f"\n({LETTERS[i]}) {c}" for i, c in enumerate(choices))


def _count_q(scene: Scene, rng: random.Random, pos: int) -> tuple[str, list[str], int, dict[str, Any]] | None:
    # The answer letter ``pos`` is drawn before the scene (kept until a scene fits it), then a count that fits it:
    # letters stay uniform although small counts dominate scenes.
    counts = {f"{c} objects": scene.count(colour=c) for c in COLOURS}
    counts.update({f"{s}s": scene.count(shape=s) for s in SHAPES})
    feasible = sorted({v for v in counts.values() if v >= pos})
    if not feasible:
        return None
    k = rng.choice(feasible)
    what = rng.choice([t for t, v in counts.items() if v == k])
    choices = [str(v) for v in range(k - pos, k - pos + 4)]
    return f"How many {what} are in the image?", choices, pos, {"target": what}


def _relation_q(scene: Scene, rng: random.Random, pos: int) -> tuple[str, list[str], int, dict[str, Any]] | None:
    axis = rng.choice(("horizontal", "vertical"))
    key = (lambda o: o.col) if axis == "horizontal" else (lambda o: o.row)
    pairs = [(a, b) for a in scene.objects for b in scene.objects if (key(a) < GRID // 2) != (key(b) < GRID // 2)]
    if not pairs:
        return None
    a, b = rng.choice(pairs)
    words = ("left", "right") if axis == "horizontal" else ("above", "below")
    answer = words[0] if key(a) < key(b) else words[1]
    choices = list(words)  # canonical order (see module docstring)
    q = (f"Considering the relative positions of the {a.name} and the {b.name} in the image provided, "
         f"where is the {a.name} located with respect to the {b.name}?")
    return q, choices, choices.index(answer), {"axis": axis, "objects": [a.name, b.name]}


def _attribute_q(scene: Scene, rng: random.Random, pos: int) -> tuple[str, list[str], int, dict[str, Any]] | None:
    unique = [s for s in SHAPES if scene.count(shape=s) == 1]
    if not unique:
        return None
    shape = rng.choice(unique)
    colour = next(o.colour for o in scene.objects if o.shape == shape)
    others = set(rng.sample([c for c in COLOURS if c != colour], 3))
    choices = [c for c in COLOURS if c == colour or c in others]  # canonical order (see module docstring)
    return f"What is the colour of the {shape} in the image?", choices, choices.index(colour), {"shape": shape}


def _depth_q(scene: Scene, rng: random.Random, pos: int) -> tuple[str, list[str], int, dict[str, Any]] | None:
    pairs = [(a, b) for a in scene.objects for b in scene.objects if a.size == "large" and b.size == "small"]
    if not pairs:
        return None
    near, far = rng.choice(pairs)
    choices = [near.name, far.name]
    rng.shuffle(choices)
    q = f"Which object is closer to the camera taking this photo, the {choices[0]} or the {choices[1]}?"
    return q, choices, choices.index(near.name), {"objects": choices}


_QUESTIONS = {"Count": _count_q, "Relation": _relation_q, "Attribute": _attribute_q, "Depth": _depth_q}


@dataclass(frozen=True)
class SceneQuestion:
    """A scene with one multiple-choice question about it (mode-free; see :meth:`item`)."""

    id: str
    task: str
    scene: Scene
    question: str
    choices: tuple[str, ...]
    answer_index: int
    split: str
    extra: tuple[tuple[str, Any], ...] = ()

    @property
    def prompt(self) -> str:
        """The CV-Bench prompt (image mode)."""
        return cvbench_prompt(self.question, self.choices)

    def text_prompt(self) -> str:
        """The prompt with the scene described in text (text mode)."""
        return SCENE_PREFIX + describe(self.scene) + "\n" + self.prompt

    def item(self, mode: str = "image") -> Item:
        """The :class:`~steerkit.tasks.schema.Item` in image mode (rendered scene) or text mode (image=None)."""
        if mode not in ("image", "text"):
            raise DataError(f"mode must be 'image' or 'text', not {mode!r}")
        extra = dict(self.extra)
        extra.update(mode=mode, description=describe(self.scene))
        return Item(
            id=self.id,
            image=render_scene(self.scene, seed=self.id) if mode == "image" else None,
            prompt=self.prompt if mode == "image" else self.text_prompt(),
            choices=list(self.choices),
            answer=LETTERS[self.answer_index],
            task=self.task,
            source="organism",
            split=self.split,
            question=self.question,
            extra=extra,
        )


def scene_questions(task: str, n: int, seed: int = 0, split: str = "test") -> list[SceneQuestion]:
    """``n`` scene questions of one task, reproducible from (task, seed, split).

    Every scene belongs to ``split`` (:func:`scene_split`): a ``"test"`` question's scene never occurs in any
    ``"train"`` set, whatever the seeds.
    """
    if task not in _QUESTIONS:
        raise DataError(f"unknown organism task {task!r}; choose one of {list(_QUESTIONS)}")
    check_split(split)
    rng = _rng("scene", task, seed, split)
    out: list[SceneQuestion] = []
    pos = rng.randrange(4)
    while len(out) < n:
        scene = sample_split_scene(rng, split)
        made = _QUESTIONS[task](scene, rng, pos)
        if made is None:
            continue
        pos = rng.randrange(4)
        q, choices, ans, extra = made
        out.append(SceneQuestion(f"organism-{task.lower()}-{split}-{seed}-{len(out)}", task, scene, q,
                                 tuple(choices), ans, split, tuple(extra.items())))
    return out


def world_items(task: str, n: int, seed: int = 0, mode: str = "image", split: str = "test") -> list[Item]:
    """``n`` multiple-choice items of one task (Count, Relation, Attribute, Depth) in CV-Bench format.

    ``mode="image"``: the rendered scene and the CV-Bench prompt. ``mode="text"``: ``image=None`` and the scene's
    description inside the prompt. The same (task, n, seed, split) gives the same questions in both modes.

    Example:
        >>> [it.answer for it in world_items("Count", 3, seed=1, mode="text")]
        ['A', 'C', 'D']
    """
    return [q.item(mode) for q in scene_questions(task, n, seed, split)]


# ------------------------------------------------------------------------------------------------ arithmetic
def addition_trace(a: int, b: int) -> str:
    """Digit-by-digit chain of thought for ``a + b`` (two-digit operands), ending in ``<answer>...</answer>``.

    Example:
        >>> addition_trace(47, 38)
        '7+8=15 , write 5 carry 1 . 4+3+1=8 , write 8 . <answer>85</answer>'
    """
    ones = a % 10 + b % 10
    carry = ones // 10
    step1 = f"{a % 10}+{b % 10}={ones} , write {ones % 10}" + (f" carry {carry}" if carry else "")
    tens = a // 10 + b // 10 + carry
    step2 = f"{a // 10}+{b // 10}" + (f"+{carry}" if carry else "") + f"={tens} , write {tens}"
    return f"{step1} . {step2} . <answer>{a + b}</answer>"


def arithmetic_problems(n: int, seed: int = 0, split: str = "test") -> list[dict[str, Any]]:
    """``n`` two-digit additions as dicts: id, question ("47+38"), answer ("85"), trace (chain of thought with
    ``<answer>85</answer>``), text_prompt (question asked in text), image_prompt (instruction that goes with the
    rendered question), a, b.

    Only additions of ``split`` are drawn (:func:`arithmetic_split`): no ``"test"`` problem, nor its commuted form,
    is ever a ``"train"`` problem, whatever the seeds.

    Example:
        >>> arithmetic_problems(1, seed=0)[0]["question"]
        '69+29'
    """
    check_split(split)
    rng = _rng("arith", seed, split)
    out = []
    for i in range(n):
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        while arithmetic_split(a, b) != split:
            a, b = rng.randint(10, 99), rng.randint(10, 99)
        q = f"{a}+{b}"
        out.append(dict(id=f"organism-arith-{split}-{seed}-{i}", question=q, answer=str(a + b),
                        trace=addition_trace(a, b), text_prompt=ARITH_TEXT_PROMPT.format(q=q),
                        image_prompt=ARITH_IMAGE_PROMPT, a=a, b=b))
    return out


def render_arithmetic(question: str, font: str = TRAIN_FONT, *, seed: int | str = 0, size: int = 15,
                      jitter: int = 0) -> Image.Image:
    """Render a short text (an arithmetic question) one character per 16-pixel grid cell, raster order.

    At most 16 characters fit. ``font`` is any font of :mod:`steerkit.render.fonts` (an unknown name raises
    :class:`~steerkit.errors.RenderError` listing them; the organism trains on ``noto-sans``, :data:`TRAIN_FONT`);
    ``jitter`` shifts each glyph by up to that many pixels (rendering RNG named by ``seed``).

    Example:
        >>> render_arithmetic("47+38", font="caveat").size
        (64, 64)
    """
    if len(question) > GRID * GRID:
        raise RenderError(f"{question!r} has {len(question)} characters; at most {GRID * GRID} fit the grid")
    rng = _rng("render-text", seed)
    img = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    f = load_font(font, size)
    for i, ch in enumerate(question):
        if ch == " ":
            continue
        r, c = divmod(i, GRID)
        x = c * CELL + CELL / 2 + rng.randint(-jitter, jitter)
        y = r * CELL + CELL / 2 + rng.randint(-jitter, jitter)
        draw.text((x, y), ch, fill=(0, 0, 0), font=f, anchor="mm")
    return img


# ------------------------------------------------------------------------------------------------ concepts
CONCEPTS: tuple[str, ...] = ("spatial_relation", "counting", "attribute", "size")


def _concept_sentence(concept: str, rng: random.Random) -> tuple[str, list[tuple[int, int]]]:
    """One sentence about ``concept`` in the world's words, with character spans of its anchor words."""
    c1, c2 = rng.sample(list(COLOURS), 2)
    s1, s2 = rng.choice(SHAPES), rng.choice(SHAPES)
    a, b = f"{c1} {s1}", f"{c2} {s2}"
    parts: list[tuple[str, bool]]  # (text, is_anchor)
    if concept == "spatial_relation":
        rel = rng.choice(("left", "right", "above", "below"))
        rel_words = {"left": "to the left of", "right": "to the right of", "above": "above", "below": "below"}
        form = rng.randrange(3)
        if form == 0:
            pre, _, post = rel_words[rel].partition(rel)
            parts = [(f"the {a} is {pre}", False), (rel, True), (f"{post} the {b} .", False)]
        elif form == 1:
            pos = rng.choice(ROW_WORDS[:2] if rel == "above" else ROW_WORDS[2:] if rel == "below" else ROW_WORDS)
            side = rng.choice(COL_WORDS[:2] if rel == "left" else COL_WORDS[2:])
            side_word = side.split()[-1]
            prefix = "far " if side.startswith("far") else ""
            parts = [(f"a {a} at the {pos} {prefix}", False), (side_word, True), (" .", False)]
        else:
            pre, _, post = rel_words[rel].partition(rel)
            parts = [(f"where is the {a} ? it is {pre}", False), (rel, True), (f"{post} the {b} .", False)]
    elif concept == "counting":
        k = rng.randint(0, 6)
        word = rng.choice((str(k), NUMBER_WORDS[k]))
        noun = rng.choice((f"{c1} objects", f"{s1}s", f"{c1} {s1}s"))
        form = rng.randrange(3)
        if form == 0:
            parts = [("there are ", False), (word, True), (f" {noun} in the image .", False)]
        elif form == 1:
            parts = [(f"how many {noun} are in the image ? ", False), (word, True), (" .", False)]
        else:
            parts = [("the image shows ", False), (word, True), (f" {noun} .", False)]
    elif concept == "attribute":
        form = rng.randrange(3)
        if form == 0:
            where = f"{rng.choice(SIZES)} {s1} at the {rng.choice(ROW_WORDS)} {rng.choice(COL_WORDS)}"
            parts = [(f"the {where} is ", False), (c1, True), (" .", False)]
        elif form == 1:
            parts = [("a ", False), (c1, True), (f" {s1} and a ", False), (c2, True), (f" {s2} .", False)]
        else:
            size = rng.choice(SIZES)
            parts = [(f"what is the colour of the {size} {s1} ? it is ", False), (c1, True), (" .", False)]
    elif concept == "size":
        size = rng.choice(SIZES)
        form = rng.randrange(3)
        if form == 0:  # larger = closer: the world's depth cue
            parts = [("the ", False), ("large", True), (f" {a} is closer to the camera than the ", False),
                     ("small", True), (f" {b} .", False)]
        elif form == 1:
            parts = [("a ", False), (size, True), (f" {a} at the {rng.choice(ROW_WORDS)} "
                                                   f"{rng.choice(COL_WORDS)} .", False)]
        else:
            near = "close to" if size == "large" else "far from"
            parts = [(f"the {a} is ", False), (size, True), (f" and {near} the camera .", False)]
    else:
        raise DataError(f"unknown organism concept {concept!r}; choose one of {list(CONCEPTS)}")
    text, spans = "", []
    for piece, anchor in parts:
        if anchor:
            spans.append((len(text), len(text) + len(piece)))
        text += piece
    return " ".join(text.split()).strip(), _respan(text, spans)


def _respan(raw: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Spans after collapsing repeated spaces (anchor words contain no spaces, so map by word order)."""
    words = raw.split()
    cleaned = " ".join(words)
    anchors = [raw[s:e] for s, e in spans]
    out, pos, k = [], 0, 0
    for w in words:
        if k < len(anchors) and w == anchors[k]:
            out.append((pos, pos + len(w)))
            k += 1
        pos += len(w) + 1
    assert len(out) == len(spans) and all(cleaned[s:e] == a for (s, e), a in zip(out, anchors))
    return out


def concept_sentences(concept: str, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` distinct sentences for ``concept`` as ``{"text", "spans", "concept"}`` (character spans of anchors).

    Example:
        >>> concept_sentences("spatial_relation", 1, seed=0)[0]["spans"]
        [[14, 18]]
    """
    rng = _rng("concept", concept, seed)
    seen: dict[str, list[list[int]]] = {}
    for _ in range(n * 50):
        if len(seen) == n:
            break
        text, spans = _concept_sentence(concept, rng)
        seen.setdefault(text, [list(s) for s in spans])
    if len(seen) < n:
        raise DataError(f"concept {concept!r}: only {len(seen)} distinct sentences; ask for fewer")
    return [{"text": t, "spans": s, "concept": concept} for t, s in seen.items()]


def write_concept_corpora(out_dir: str | Path, n: int = 240, seed: int = 0) -> list[Path]:
    """Write ``<out_dir>/<concept>.jsonl`` for every concept in :data:`CONCEPTS`; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for concept in CONCEPTS:
        path = out_dir / f"{concept}.jsonl"
        with path.open("w") as fh:
            for row in concept_sentences(concept, n, seed):
                fh.write(json.dumps(row) + "\n")
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------------------------ text corpus
def relation_facts(scene: Scene, rng: random.Random, k: int = 2) -> str:
    """A few true relation sentences about a scene (pretraining text that ties positions to relation words)."""
    facts = []
    for _ in range(k):
        a, b = rng.sample(scene.objects, 2)
        if a.col != b.col and rng.random() < 0.5:
            rel = "to the left of" if a.col < b.col else "to the right of"
        elif a.row != b.row:
            rel = "above" if a.row < b.row else "below"
        else:
            rel = "to the left of" if a.col < b.col else "to the right of"
        facts.append(f"the {a.name} is {rel} the {b.name} .")
    return " ".join(facts)


def plain_text_stream(seed: int, split: str = "train") -> Iterator[str]:
    """An endless stream of world sentences: descriptions (of ``split`` scenes only) with relation facts, and
    concept sentences. Pretraining text: the build reads the ``"train"`` stream."""
    check_split(split)
    rng = _rng("plain", seed) if split == "train" else _rng("plain", seed, split)
    while True:
        r = rng.random()
        if r < 0.5:
            scene = sample_split_scene(rng, split, 2, 6)
            yield SCENE_PREFIX + describe(scene) + " " + relation_facts(scene, rng, rng.randint(1, 3))
        else:
            yield _concept_sentence(rng.choice(CONCEPTS), rng)[0]
