"""An offline, seeded generator of CV-Bench-style items (pillow only): Count, Relation, Depth, Distance.

Every item uses CV-Bench's question wording and answer format (``prompt`` = question + " Select from the following
choices.\\n(A) ...", answer a letter), and its ground truth is exact by construction:

- **Count**: "How many red circles are in the image?"; target objects and distractors never overlap and
  distractors never share the target's colour, so the target count is the number of connected blobs of that
  colour.
- **Relation**: two objects annotated by a red and a blue box; the answer (left/right or above/below) compares
  their centres, separated by at least a difficulty-dependent gap along the asked axis (and more along it than
  across it).
- **Depth**: two objects standing on a perspective ground plane; the closer one (smaller depth Z) is lower in
  the image. At high difficulty the physical sizes are chosen against the size cue (the farther object looks as
  big or bigger).
- **Distance**: three objects on the ground plane (red, blue, green boxes); which of blue/green is closer to red
  in 3D, with the two distances differing by at least a difficulty-dependent ratio.

The geometry (pixel boxes, colours, world coordinates, camera) is kept in ``item.extra`` so a test can recompute
each label independently (e.g. left/right from the boxes, depth order from pixel rows, distances by inverting the
projection). Items are keyed by ``(seed, task, index)``: item i is identical whatever ``n`` is.

Held-out by construction: :func:`steerkit.tasks.splits.content_split` sends every item to ``"train"`` or
``"test"`` by a stable hash of its content (question, choices, answer and pixels); ``generate(..., split="test")``
yields only test items, so a train set and a test set never share an item, whatever their seeds. The same function splits the organism's
world (scenes, additions) and the synthetic word problems (:mod:`steerkit.gap.problems`).

Example:
    >>> items = generate(["Count", "Relation"], n_per_task=20, seed=0, size=224, difficulty="medium")
    >>> items[0].prompt.splitlines()[0]
    'How many red circles are in the image? Select from the following choices.'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from steerkit.tasks.loaders._common import mc_prompt
from steerkit.tasks.schema import LETTERS, Item
from steerkit.tasks.splits import check_split, content_split

TASKS = ("Count", "Relation", "Depth", "Distance")
SOURCE = "synthetic"

# Object colours: none equals a box colour, the backgrounds or the grid, so colour masks are exact.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 30), "green": (40, 160, 60), "blue": (40, 80, 200),
    "yellow": (230, 200, 40), "purple": (140, 60, 170), "orange": (240, 140, 30),
}
SHAPES = ("circle", "square", "triangle", "diamond")
PLURAL = {"circle": "circles", "square": "squares", "triangle": "triangles", "diamond": "diamonds"}
BOX_COLOURS = {"red": (255, 0, 0), "blue": (0, 0, 255), "green": (0, 255, 0)}
BACKGROUND = (235, 235, 235)
SKY = (200, 225, 245)
GROUND = (215, 205, 185)
GRID = (170, 160, 140)
DIFFICULTY = {"easy": 0.0, "medium": 0.5, "hard": 1.0}

def item_key(item: Item) -> bytes:
    """The content of a synthetic item that decides its split: question, choices, answer and pixels."""
    head = "\x1f".join([item.task, item.question or item.prompt, *item.choices, item.answer]).encode()
    return head + b"\x1e" + (item.image.tobytes() if item.image is not None else b"")

CV_BENCH_QUESTIONS = {
    "Count": "How many {obj} are in the image?",
    "Relation": ("Considering the relative positions of the {a} (annotated by the red box) and the {b} (annotated "
                 "by the blue box) in the image provided, where is the {a} (annotated by the red box) located with "
                 "respect to the {b} (annotated by the blue box)?"),
    "Depth": ("Which object is closer to the camera taking this photo, the {a} (highlighted by a red box) or the "
              "{b} (highlighted by a blue box)?"),
    "Distance": ("Estimate the real-world distances between objects in this image. Which object is closer to the "
                 "{a} (highlighted by a red box), the {b} (highlighted by a blue box) or the {c} (highlighted by a "
                 "green box)?"),
}


@dataclass(frozen=True)
class Camera:
    """A pinhole camera at height ``height`` above a flat ground, looking along +Z with a level horizon.

    A ground point (X, Z) projects to ``x = cx + f X / Z``, ``y = horizon + f height / Z``; an object of physical
    size s at depth Z is ``f s / Z`` pixels tall.
    """

    size: int
    f: float
    horizon: float
    height: float = 1.0

    @classmethod
    def for_size(cls, size: int) -> Camera:
        # Z=2 lands near the bottom edge, Z=8 well below the horizon (keeps far objects a few pixels tall).
        return cls(size=size, f=1.2 * size, horizon=0.35 * size)

    def project(self, x: float, z: float) -> tuple[float, float]:
        """Pixel (x, y) of the ground point (X, Z)."""
        return self.size / 2 + self.f * x / z, self.horizon + self.f * self.height / z

    def unproject(self, px: float, py: float) -> tuple[float, float]:
        """Ground point (X, Z) of a pixel below the horizon (inverse of :meth:`project`)."""
        z = self.f * self.height / (py - self.horizon)
        return (px - self.size / 2) * z / self.f, z


def _difficulty(d: str | float) -> float:
    if isinstance(d, str):
        if d not in DIFFICULTY:
            raise ValueError(f"difficulty must be one of {list(DIFFICULTY)} or a float in [0, 1], got {d!r}")
        return DIFFICULTY[d]
    if not 0.0 <= float(d) <= 1.0:
        raise ValueError(f"difficulty must be in [0, 1], got {d}")
    return float(d)


def _lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * t


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: Sequence[float], colour: tuple[int, int, int]) -> None:
    """Fill ``shape`` inside ``box`` = (x0, y0, x1, y1) without anti-aliasing (exact colours)."""
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse([x0, y0, x1, y1], fill=colour)
    elif shape == "square":
        draw.rectangle([x0, y0, x1, y1], fill=colour)
    elif shape == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=colour)
    elif shape == "diamond":
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=colour)
    else:
        raise ValueError(f"unknown shape {shape!r}; choose from {SHAPES}")


def _annotate(draw: ImageDraw.ImageDraw, box: Sequence[float], colour: str, pad: int = 2) -> None:
    x0, y0, x1, y1 = box
    draw.rectangle([x0 - pad, y0 - pad, x1 + pad, y1 + pad], outline=BOX_COLOURS[colour], width=1)


def _name(colour: str, shape: str) -> str:
    return f"{colour} {shape}"


def _place(rng: np.random.Generator, size: int, sizes: Sequence[float], boxes: list[list[float]], gap: float,
           margin: float, tries: int = 400) -> list[float] | None:
    """A random square box of side ``sizes`` pick that keeps ``gap`` pixels from every box in ``boxes``."""
    for _ in range(tries):
        s = float(rng.uniform(*sizes))
        x0 = float(rng.uniform(margin, size - margin - s))
        y0 = float(rng.uniform(margin, size - margin - s))
        cand = [x0, y0, x0 + s, y0 + s]
        if all(cand[2] + gap < b[0] or b[2] + gap < cand[0] or cand[3] + gap < b[1] or b[3] + gap < cand[1]
               for b in boxes):
            return [round(v) for v in cand]
    return None


def _choices_with(answer: str, options: Sequence[str], rng: np.random.Generator) -> tuple[list[str], str]:
    order = list(options)
    if rng.random() < 0.5:
        order.reverse()
    return order, LETTERS[order.index(answer)]


def _item(task: str, index: int, seed: int, image: Image.Image, question: str, choices: list[str], answer: str,
          difficulty: float, extra: dict[str, Any]) -> Item:
    extra = {"difficulty": difficulty, "seed": seed, "index": index, "size": image.size[0], **extra}
    return Item(id=f"synth-{task}-{seed}-{index}", image=image, prompt=mc_prompt(question, choices), choices=choices,
                answer=answer, task=task, source=SOURCE, question=question, extra=extra)


# ------------------------------------------------------------------------------------------------------- tasks
def make_count(rng: np.random.Generator, *, index: int = 0, seed: int = 0, size: int = 224,
               difficulty: float = 0.5, n_choices: int = 5) -> Item:
    """One Count item: how many ``colour shape`` objects; choices are consecutive integers from 0 up."""
    t = difficulty
    max_count = round(_lerp(4, 9, t))
    n = int(rng.integers(0 if t > 0.3 else 1, max_count + 1))
    n_distract = int(rng.integers(round(_lerp(0, 4, t)), round(_lerp(2, 9, t)) + 1))
    colour = str(rng.choice(list(PALETTE)))
    shape = str(rng.choice(SHAPES))
    side = (_lerp(0.11, 0.06, t) * size, _lerp(0.16, 0.10, t) * size)
    im = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(im)
    objects: list[dict[str, Any]] = []
    boxes: list[list[float]] = []
    others = [c for c in PALETTE if c != colour]
    specs = [(colour, shape, True)] * n + [(str(rng.choice(others)), str(rng.choice(SHAPES)), False)
                                          for _ in range(n_distract)]
    for c, s, target in specs:
        box = _place(rng, size, side, boxes, gap=max(2.0, 0.02 * size), margin=2)
        if box is None:
            if target:  # never silently lose a target: restart with fewer distractors is simpler than guessing
                raise RuntimeError("could not place every target object; lower difficulty or raise size")
            continue
        boxes.append(box)
        draw_shape(draw, s, box, PALETTE[c])
        objects.append({"name": _name(c, s), "colour": c, "shape": s, "box": box, "target": target})
    lo = max(0, n - int(rng.integers(0, n_choices)))
    values = list(range(lo, lo + n_choices))
    obj = f"{colour} {PLURAL[shape]}"
    return _item("Count", index, seed, im, CV_BENCH_QUESTIONS["Count"].format(obj=obj), [str(v) for v in values],
                 LETTERS[values.index(n)], difficulty,
                 {"count": n, "target": {"colour": colour, "shape": shape, "rgb": PALETTE[colour]},
                  "objects": objects})


def _two_distinct(rng: np.random.Generator, k: int) -> list[tuple[str, str]]:
    colours = list(rng.choice(list(PALETTE), size=k, replace=False))
    return [(str(c), str(rng.choice(SHAPES))) for c in colours]


def make_relation(rng: np.random.Generator, *, index: int = 0, seed: int = 0, size: int = 224,
                  difficulty: float = 0.5) -> Item:
    """One Relation item: where is A (red box) relative to B (blue box): left/right or above/below."""
    t = difficulty
    side = (_lerp(0.14, 0.08, t) * size, _lerp(0.2, 0.12, t) * size)
    min_gap = _lerp(0.35, 0.08, t) * size  # centre separation along the asked axis
    horizontal = bool(rng.random() < 0.5)
    (ca, sa), (cb, sb), *rest = _two_distinct(rng, 2 + round(_lerp(0, 3, t)))
    for _ in range(1000):
        boxes: list[list[float]] = []
        a = _place(rng, size, side, boxes, gap=6, margin=4)
        b = _place(rng, size, side, [a], gap=6, margin=4) if a else None
        if a is None or b is None:
            continue
        dx = (a[0] + a[2]) / 2 - (b[0] + b[2]) / 2
        dy = (a[1] + a[3]) / 2 - (b[1] + b[3]) / 2
        along, across = (dx, dy) if horizontal else (dy, dx)
        if abs(along) >= min_gap and abs(along) > abs(across):
            break
    else:  # pragma: no cover - the loop finds a layout in practice
        raise RuntimeError("could not place a relation pair; lower difficulty or raise size")
    im = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(im)
    placed = [a, b]
    objects = [{"name": _name(ca, sa), "colour": ca, "shape": sa, "box": a, "role": "A"},
               {"name": _name(cb, sb), "colour": cb, "shape": sb, "box": b, "role": "B"}]
    for c, s in rest:  # distractors, unannotated
        box = _place(rng, size, side, placed, gap=6, margin=4)
        if box is not None:
            placed.append(box)
            objects.append({"name": _name(c, s), "colour": c, "shape": s, "box": box, "role": "distractor"})
    for o in objects:
        draw_shape(draw, o["shape"], o["box"], PALETTE[o["colour"]])
    _annotate(draw, a, "red")
    _annotate(draw, b, "blue")
    if horizontal:
        truth, options = ("left" if dx < 0 else "right"), ("left", "right")
    else:
        truth, options = ("above" if dy < 0 else "below"), ("above", "below")
    choices, letter = _choices_with(truth, options, rng)
    q = CV_BENCH_QUESTIONS["Relation"].format(a=_name(ca, sa), b=_name(cb, sb))
    return _item("Relation", index, seed, im, q, choices, letter, difficulty,
                 {"relation": truth, "axis": "x" if horizontal else "y", "objects": objects})


def _ground_scene(size: int, cam: Camera) -> Image.Image:
    im = Image.new("RGB", (size, size), SKY)
    draw = ImageDraw.Draw(im)
    draw.rectangle([0, cam.horizon, size, size], fill=GROUND)
    for x in np.arange(-4.0, 4.5, 0.5):  # lines of constant X converge at the vanishing point
        p0, p1 = cam.project(x, 1.2), cam.project(x, 25.0)
        draw.line([p0, p1], fill=GRID, width=1)
    for z in (2.0, 3.0, 4.0, 6.0, 9.0, 14.0):
        y = cam.project(0.0, z)[1]
        draw.line([(0, y), (size, y)], fill=GRID, width=1)
    return im


def _stand(cam: Camera, x: float, z: float, s: float) -> list[float]:
    """Pixel box of an object of physical size ``s`` standing on the ground at (x, z)."""
    px, py = cam.project(x, z)
    h = cam.f * s / z
    return [round(px - h / 2), round(py - h), round(px + h / 2), round(py)]


def _inside(box: Sequence[float], size: int) -> bool:
    return box[0] >= 3 and box[2] <= size - 4 and box[1] >= 3 and box[3] <= size - 4


def _apart(boxes: Sequence[Sequence[float]], gap: float = 5) -> bool:
    return all(b1[2] + gap < b2[0] or b2[2] + gap < b1[0] or b1[3] + gap < b2[1] or b2[3] + gap < b1[1]
               for i, b1 in enumerate(boxes) for b2 in boxes[i + 1:])


def make_depth(rng: np.random.Generator, *, index: int = 0, seed: int = 0, size: int = 224,
               difficulty: float = 0.5) -> Item:
    """One Depth item: which of two boxed objects on the ground plane is closer to the camera."""
    t = difficulty
    cam = Camera.for_size(size)
    min_ratio = _lerp(2.0, 1.2, t)
    (ca, sa), (cb, sb) = _two_distinct(rng, 2)
    for _ in range(2000):
        z_near = float(rng.uniform(2.2, 7.5 / min_ratio))
        z_far = float(rng.uniform(z_near * min_ratio, 7.5))
        s_near = float(rng.uniform(0.35, 0.6))
        # Against the size cue at high difficulty: the far object is physically bigger, up to equal image size.
        s_far = float(rng.uniform(0.35, 0.6)) if rng.random() > t else s_near * z_far / z_near * rng.uniform(0.8, 1.1)
        x_near, x_far = (float(v) for v in rng.uniform(-0.45, 0.45, size=2) * np.array([z_near, z_far]))
        near, far = _stand(cam, x_near, z_near, s_near), _stand(cam, x_far, z_far, s_far)
        if _inside(near, size) and _inside(far, size) and _apart([near, far]) and s_far < 2.0:
            break
    else:  # pragma: no cover
        raise RuntimeError("could not place a depth pair; lower difficulty or raise size")
    a_is_near = bool(rng.random() < 0.5)
    (za, xa, sa_, box_a), (zb, xb, sb_, box_b) = (
        ((z_near, x_near, s_near, near), (z_far, x_far, s_far, far)) if a_is_near
        else ((z_far, x_far, s_far, far), (z_near, x_near, s_near, near)))
    im = _ground_scene(size, cam)
    draw = ImageDraw.Draw(im)
    # Painter's order: far first, so a near object may cover it (they are kept apart anyway).
    objs = [{"name": _name(ca, sa), "colour": ca, "shape": sa, "box": box_a, "world": {"x": xa, "z": za, "s": sa_},
             "role": "A"},
            {"name": _name(cb, sb), "colour": cb, "shape": sb, "box": box_b, "world": {"x": xb, "z": zb, "s": sb_},
             "role": "B"}]
    for o in sorted(objs, key=lambda o: -o["world"]["z"]):
        draw_shape(draw, o["shape"], o["box"], PALETTE[o["colour"]])
    _annotate(draw, box_a, "red")
    _annotate(draw, box_b, "blue")
    truth = objs[0]["name"] if a_is_near else objs[1]["name"]
    choices = [objs[0]["name"], objs[1]["name"]]  # CV-Bench lists the two objects in question order
    q = CV_BENCH_QUESTIONS["Depth"].format(a=objs[0]["name"], b=objs[1]["name"])
    return _item("Depth", index, seed, im, q, choices, LETTERS[choices.index(truth)], difficulty,
                 {"closer": truth, "objects": objs, "camera": cam.__dict__.copy()})


def make_distance(rng: np.random.Generator, *, index: int = 0, seed: int = 0, size: int = 224,
                  difficulty: float = 0.5) -> Item:
    """One Distance item: which of B (blue) and C (green) is closer to A (red) in 3D (on the ground plane)."""
    t = difficulty
    cam = Camera.for_size(size)
    min_ratio = _lerp(2.0, 1.3, t)
    (ca, sa), (cb, sb), (cc, sc) = _two_distinct(rng, 3)
    for _ in range(5000):
        pts = [(float(rng.uniform(-0.4, 0.4) * z), z) for z in rng.uniform(2.2, 7.5, size=3)]
        d_b = math.dist(pts[0], pts[1])
        d_c = math.dist(pts[0], pts[2])
        if max(d_b, d_c) / max(1e-9, min(d_b, d_c)) < min_ratio:
            continue
        sizes = [float(v) for v in rng.uniform(0.3, 0.5, size=3)]
        boxes = [_stand(cam, x, z, s) for (x, z), s in zip(pts, sizes)]
        if all(_inside(b, size) for b in boxes) and _apart(boxes):
            break
    else:  # pragma: no cover
        raise RuntimeError("could not place a distance triple; lower difficulty or raise size")
    im = _ground_scene(size, cam)
    draw = ImageDraw.Draw(im)
    objs = [{"name": _name(c, s), "colour": c, "shape": s, "box": box, "world": {"x": x, "z": z, "s": sz},
             "role": role, "annotation": ann}
            for (c, s), box, (x, z), sz, role, ann in zip([(ca, sa), (cb, sb), (cc, sc)], boxes, pts, sizes,
                                                         "ABC", ("red", "blue", "green"))]
    for o in sorted(objs, key=lambda o: -o["world"]["z"]):
        draw_shape(draw, o["shape"], o["box"], PALETTE[o["colour"]])
    for o in objs:
        _annotate(draw, o["box"], o["annotation"])
    truth = objs[1]["name"] if d_b < d_c else objs[2]["name"]
    choices = [objs[1]["name"], objs[2]["name"]]
    q = CV_BENCH_QUESTIONS["Distance"].format(a=objs[0]["name"], b=objs[1]["name"], c=objs[2]["name"])
    return _item("Distance", index, seed, im, q, choices, LETTERS[choices.index(truth)], difficulty,
                 {"closer": truth, "distances": {"B": d_b, "C": d_c}, "objects": objs,
                  "camera": cam.__dict__.copy()})


_MAKERS = {"Count": make_count, "Relation": make_relation, "Depth": make_depth, "Distance": make_distance}


def generate(
    tasks: Sequence[str] = TASKS,
    n_per_task: int = 50,
    *,
    seed: int = 0,
    size: int = 224,
    difficulty: str | float = "medium",
    split: str | None = None,
) -> list[Item]:
    """Generate ``n_per_task`` items for each of ``tasks`` (CV-Bench task names), deterministically from ``seed``.

    ``size``: image side in pixels (>= 48). ``difficulty``: "easy" | "medium" | "hard" or a float in [0, 1]
    (more clutter and smaller objects for Count, smaller gaps for Relation, closer depth / distance ratios and a
    misleading size cue for Depth and Distance). ``split``: None (every item, the default) or ``"train"`` /
    ``"test"``: only items whose content hashes to that split (:func:`content_split`), so a train and a test set
    never share an item; ``item.split`` is set to it.

    Example:
        >>> items = generate(["Depth"], n_per_task=10, seed=3, size=128, difficulty="hard")
    """
    if isinstance(tasks, str):
        tasks = [tasks]
    unknown = [t for t in tasks if t not in _MAKERS]
    if unknown:
        raise ValueError(f"unknown synthetic tasks {unknown}; choose from {TASKS}")
    if size < 48:
        raise ValueError(f"size={size} is too small to draw separable objects; use size >= 48")
    d = _difficulty(difficulty)
    if split is not None:
        check_split(split)
    items: list[Item] = []
    for task in tasks:
        for i in range(n_per_task):
            rng = np.random.default_rng([seed, TASKS.index(task), i])
            item = _MAKERS[task](rng, index=i, seed=seed, size=size, difficulty=d)
            attempt = 0
            while split is not None and content_split(item_key(item)) != split:
                # Rejection sampling: a fresh draw for the same index until its content lands in the split.
                attempt += 1
                rng = np.random.default_rng([seed, TASKS.index(task), i, attempt])
                item = _MAKERS[task](rng, index=i, seed=seed, size=size, difficulty=d)
            if split is not None:  # ids name the split: a train and a test item never share one
                item.split, item.id = split, f"synth-{task}-{split}-{seed}-{i}"
            items.append(item)
    return items
