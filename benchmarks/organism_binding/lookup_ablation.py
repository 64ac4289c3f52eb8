"""Organism text-LM ablation: per-task QA mixtures plus lookup / copy / plain / arithmetic text (docs/organism.md,
"Why Relation and Depth stay at chance").

    python benchmarks/organism_binding/lookup_ablation.py NAME key=JSON ...

Keys: ``tasks`` ({"Relation": 1, "Depth": 1}: QA tasks and their weights; {} for none), ``other`` (shares of the
non-QA kinds: "arith", "plain", "lookup" = a description followed by true "the red circle is large , at the top far
left ." sentences, "copy" = a description repeated), ``unique`` (lookup scenes with distinct colours), ``nmax``
(most objects per lookup/copy training scene), ``qk_init`` (layers whose key projection starts as a copy of the
query projection, both times ``qk_scale``: same-content attention from step 0), any ``OrganismConfig`` field.
``THREADS`` (env) sets torch threads. Prints, every third of the run: step, loss, teacher-forced accuracy on the
size word and the last column word of 200 held-out one-fact lookups (runs with lookup text only), and letter
accuracy on 200 held-out text items per task.
"""
import random
import sys
import time

import torch

from common import ALL_TASKS, base_examples, parse_args, report_arithmetic, setup, task_accuracy, T, w

name, kw = parse_args(sys.argv)
tasks = kw.pop("tasks", ALL_TASKS)
other = kw.pop("other", {"arith": 0.0, "plain": 0.0})
unique = kw.pop("unique", False)
qk_layers = kw.pop("qk_init", [])
qk_scale = kw.pop("qk_scale", 3.0)
nmax_train = kw.pop("nmax", 6)
cfg, tok, lm, t0 = setup(kw)
# qk_init: the key projection starts equal to the query projection (both scaled), so that a token attends to
# earlier tokens with the same content from the first step (an induction-style prior).
for layer in qk_layers:
    attn = lm.model.layers[layer].self_attn
    with torch.no_grad():
        attn.q_proj.weight.mul_(qk_scale)
        attn.k_proj.weight.copy_(attn.q_proj.weight)


def sample(r: random.Random, nmax: int) -> w.Scene:
    if not unique:
        return w.sample_scene(r, 2, nmax)
    n = r.randint(2, 5)  # distinct colours: at most five objects
    cells = r.sample(range(16), n)
    cols = r.sample(list(w.COLOURS), n)
    objs = [w.Obj(c, r.choice(w.SHAPES), r.choice(w.SIZES), cell // 4, cell % 4) for c, cell in zip(cols, cells)]
    return w.Scene(tuple(sorted(objs, key=lambda o: (o.row, o.col))))


def lookup(r: random.Random, nmax: int, k: int | None = None) -> str:
    """A description followed by ``k`` (default: random) true size-and-position facts about its objects."""
    scene = sample(r, nmax)
    objs = list(scene.objects)
    r.shuffle(objs)
    facts = " ".join(f"the {o.name} is {o.size} , at the {o.position} ." for o in objs[: k or r.randint(1, len(objs))])
    return w.SCENE_PREFIX + w.describe(scene) + "\n" + facts


n = cfg.text_steps * cfg.text_batch
rng = random.Random(0)
data = base_examples(tok, cfg, tasks, other, rng)
lookup_rng = random.Random(5)
for _ in range(int(n * other.get("lookup", 0))):
    data.append(T.encode_example(tok, "", lookup(lookup_rng, nmax_train), 1.0, length_power=cfg.length_power))
copy_rng = random.Random(6)
for _ in range(int(n * other.get("copy", 0))):
    d = w.describe(sample(copy_rng, nmax_train))
    data.append(T.encode_example(tok, "", w.SCENE_PREFIX + d + "\n" + d, 1.0, length_power=cfg.length_power))
rng.shuffle(data)
batches = T.length_batches(data, cfg.text_batch, cfg.text_steps, 0)
opt = torch.optim.AdamW(lm.parameters(), lr=cfg.text_lr, weight_decay=0.01, betas=(0.9, 0.98))
sched = T._schedule(opt, cfg.text_steps, cfg.warmup)
lm.train()
every = max(200, cfg.text_steps // 3)

# Held-out one-fact lookups over the full 2-6 objects, tokenized once: (ids, size-word index, column-word index).
held_out = []
eval_rng = random.Random(777)
for _ in range(200):
    ids = tok(lookup(eval_rng, 6, 1))["input_ids"]
    toks = [tok.decode([i]) for i in ids]
    nl = max(i for i, t in enumerate(toks) if "\n" in t)
    size_at = next(i for i in range(nl, len(ids)) if toks[i].strip() in ("large", "small"))
    held_out.append((ids, size_at, len(ids) - 2))  # the column word sits before the closing " ."


@torch.no_grad()
def lookup_accuracy() -> dict[str, float]:
    lm.eval()
    hits = {"size": 0, "col": 0}
    for ids, size_at, col_at in held_out:
        pred = lm(input_ids=torch.tensor([ids])).logits[0].argmax(-1)  # pred[i] predicts ids[i + 1]
        hits["size"] += int(pred[size_at - 1] == ids[size_at])
        hits["col"] += int(pred[col_at - 1] == ids[col_at])
    lm.train()
    return {k: v / len(held_out) for k, v in hits.items()}


for step in range(cfg.text_steps):
    b = T.collate(batches[step], tok.pad_token_id)
    logits = lm(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    loss = T.weighted_lm_loss(logits, b["input_ids"], b["weights"])
    T._optimizer_step(lm, opt, sched, loss)
    if (step + 1) % every == 0:
        res = lookup_accuracy() if other.get("lookup", 0) > 0 else {}
        res.update(task_accuracy(lm, tok, tasks))
        print(name, step + 1, round(float(loss.detach()), 3), res, round(time.time() - t0), flush=True)
report_arithmetic(name, lm, tok, other)
print(name, "done", round(time.time() - t0), flush=True)
