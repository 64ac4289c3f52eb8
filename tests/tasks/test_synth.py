"""The synthetic generator: labels re-derived from pixels / geometry by independent code, determinism, knobs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from steerkit.tasks.synth import PALETTE, TASKS, Camera, generate


def _mask(item, colour):
    arr = np.asarray(item.image.convert("RGB"))
    return np.all(arr == np.array(PALETTE[colour], dtype=np.uint8), axis=-1)


def _obj(item, role):
    return next(o for o in item.extra["objects"] if o.get("role") == role)


@pytest.mark.parametrize("difficulty", ["easy", "hard"])
def test_count_label_equals_blobs_of_the_target_colour(difficulty):
    items = generate(["Count"], n_per_task=30, seed=3, size=160, difficulty=difficulty)
    for it in items:
        colour = it.extra["target"]["colour"]
        _, blobs = ndimage.label(_mask(it, colour))
        assert blobs == it.extra["count"], it.id
        assert int(it.choices[it.answer_index]) == blobs
        assert it.question == f"How many {colour} {it.extra['target']['shape']}s are in the image?"
    assert len({it.extra["count"] for it in items}) > 3  # the counts vary


def test_relation_label_from_pixel_centroids():
    items = generate(["Relation"], n_per_task=40, seed=5, size=160, difficulty="hard")
    axes = set()
    for it in items:
        a, b = _obj(it, "A"), _obj(it, "B")
        ya, xa = np.nonzero(_mask(it, a["colour"]))
        yb, xb = np.nonzero(_mask(it, b["colour"]))
        if it.extra["axis"] == "x":
            truth = "left" if xa.mean() < xb.mean() else "right"
        else:
            truth = "above" if ya.mean() < yb.mean() else "below"
        axes.add(it.extra["axis"])
        assert it.choices[it.answer_index] == truth, it.id
        # and from the stored boxes, as a reader of item.extra would do
        ca = (a["box"][0] + a["box"][2]) / 2 if it.extra["axis"] == "x" else (a["box"][1] + a["box"][3]) / 2
        cb = (b["box"][0] + b["box"][2]) / 2 if it.extra["axis"] == "x" else (b["box"][1] + b["box"][3]) / 2
        assert (ca < cb) == (truth in ("left", "above"))
    assert axes == {"x", "y"}
    assert {it.answer for it in items} == {"A", "B"}


def test_depth_label_from_the_lowest_pixel_row():
    items = generate(["Depth"], n_per_task=40, seed=7, size=192, difficulty="hard")
    conflicts = 0
    for it in items:
        a, b = _obj(it, "A"), _obj(it, "B")
        bottom_a = np.nonzero(_mask(it, a["colour"]))[0].max()
        bottom_b = np.nonzero(_mask(it, b["colour"]))[0].max()
        closer = a["name"] if bottom_a > bottom_b else b["name"]  # on a ground plane, nearer = lower in the image
        assert it.choices[it.answer_index] == closer, it.id
        far = b if closer == a["name"] else a
        near = a if far is b else b
        conflicts += (far["box"][3] - far["box"][1]) >= (near["box"][3] - near["box"][1])
    assert conflicts > 5  # hard items often make the far object look as big or bigger


def test_distance_label_by_inverting_the_projection():
    items = generate(["Distance"], n_per_task=40, seed=11, size=224, difficulty="medium")
    for it in items:
        cam = Camera(**it.extra["camera"])
        ground = {}
        for o in it.extra["objects"]:
            ys, xs = np.nonzero(_mask(it, o["colour"]))
            ground[o["role"]] = cam.unproject((xs.min() + xs.max()) / 2, ys.max() + 0.5)
        d_b, d_c = math.dist(ground["A"], ground["B"]), math.dist(ground["A"], ground["C"])
        closer = _obj(it, "B")["name"] if d_b < d_c else _obj(it, "C")["name"]
        assert it.choices[it.answer_index] == closer, it.id
        assert it.prompt.startswith("Estimate the real-world distances between objects in this image.")


def test_same_seed_same_images_and_items_are_keyed_by_index():
    a = generate(n_per_task=3, seed=1, size=96)
    b = generate(n_per_task=3, seed=1, size=96)
    assert [x.image.tobytes() for x in a] == [x.image.tobytes() for x in b]
    assert [(x.id, x.prompt, x.answer) for x in a] == [(x.id, x.prompt, x.answer) for x in b]
    c = generate(n_per_task=3, seed=2, size=96)
    assert [x.image.tobytes() for x in a] != [x.image.tobytes() for x in c]
    longer = generate(["Depth"], n_per_task=5, seed=1, size=96)
    assert longer[2].image.tobytes() == [x for x in a if x.task == "Depth"][2].image.tobytes()


def test_knobs_and_cvbench_format():
    items = generate(n_per_task=2, seed=0, size=64, difficulty=0.25)
    assert {it.task for it in items} == set(TASKS) and all(it.image.size == (64, 64) for it in items)
    for it in items:
        assert "Select from the following choices.\n(A) " in it.prompt and it.answer in it.letters
        assert it.source == "synthetic" and it.extra["difficulty"] == 0.25
    with pytest.raises(ValueError, match="difficulty"):
        generate(["Count"], 1, difficulty="extreme")
    with pytest.raises(ValueError, match="unknown synthetic tasks"):
        generate(["Colour"], 1)
    with pytest.raises(ValueError, match="size"):
        generate(["Count"], 1, size=16)


def test_split_items_are_held_out_by_content():
    from steerkit.errors import DataError
    from steerkit.tasks.splits import content_split
    from steerkit.tasks.synth import item_key

    everything = generate(TASKS, n_per_task=12, seed=5, size=64)
    for split in ("train", "test"):
        items = generate(TASKS, n_per_task=12, seed=5, size=64, split=split)
        assert len(items) == 12 * len(TASKS)
        assert all(content_split(item_key(it)) == split and it.split == split for it in items)
        # Items that already belong to the split are kept as they were (index by index).
        for plain, it in zip(everything, items):
            if content_split(item_key(plain)) == split:
                assert it.prompt == plain.prompt and np.array_equal(np.asarray(it.image), np.asarray(plain.image))
    assert {content_split(item_key(it)) for it in everything} == {"train", "test"}
    with pytest.raises(DataError, match="split must be one of"):
        generate(["Count"], n_per_task=1, size=64, split="val")
