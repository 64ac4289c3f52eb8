"""World variants for the binding ablations, chosen by environment variables (imported by the ablation scripts).

``WP_ORDER=posfirst``: each object is described position first ("at the top far left , a large red circle"), so
the shape word closes the phrase and can gather every attribute before it. ``WP_ORDER=adjacent``: "a red large
circle far left top": size just before the shape, column just after it. ``WP_UNIQUE=1``: Relation and Depth
only name objects whose shape is unique in the scene, so one word (the shape) finds the phrase, as in Attribute.
"""
import os, random
from steerkit.models.organism import world as w
if os.environ.get("WP_ORDER") == "posfirst":
    w.Obj.phrase = lambda self: f"at the {self.position} , a {self.size} {self.colour} {self.shape}"
elif os.environ.get("WP_ORDER") == "adjacent":  # size right before the shape, column and row right after it
    w.Obj.phrase = lambda self: f"a {self.colour} {self.size} {self.shape} {w.COL_WORDS[self.col]} {w.ROW_WORDS[self.row]}"
if os.environ.get("WP_UNIQUE") == "1":
    orig_depth = w._depth_q
    def _uniq(scene):
        return w.Scene(tuple(o for o in scene.objects if scene.count(shape=o.shape) == 1))
    def rel(scene, rng, pos):
        u = _uniq(scene)
        if len(u.objects) < 2:
            return None
        axis = rng.choice(("horizontal", "vertical"))
        key = (lambda o: o.col) if axis == "horizontal" else (lambda o: o.row)
        pairs = [(a, b) for a in u.objects for b in u.objects if (key(a) < 2) != (key(b) < 2)]
        if not pairs:
            return None
        a, b = rng.choice(pairs)
        words = ("left", "right") if axis == "horizontal" else ("above", "below")
        answer = words[0] if key(a) < key(b) else words[1]
        choices = list(words)
        q = (f"Considering the relative positions of the {a.name} and the {b.name} in the image provided, "
             f"where is the {a.name} located with respect to the {b.name}?")
        return q, choices, choices.index(answer), {"axis": axis, "objects": [a.name, b.name]}
    def depth(scene, rng, pos):
        return orig_depth(_uniq(scene), rng, pos)  # the same draws, over the unique-shape objects only
    w._QUESTIONS["Relation"] = rel
    w._QUESTIONS["Depth"] = depth
