"""Organism text-LM ablation with auxiliary binding / retrieval losses (docs/organism.md, "Why Relation and Depth
stay at chance").

    python benchmarks/organism_binding/binding_ablation.py NAME key=JSON ...

``bind_weight`` (default 1): a linear head on the hidden state after ``bind_layer`` layers (default 2) at each
object's closing " ." in the description predicts that object's colour, shape, size, row and column (cross-entropy,
mean of the five). ``ret_weight`` (default 0): a second head on the hidden state after 3 layers at the last mention
of each object the question names predicts the same five attributes (retrieval). ``tasks``/``other``, ``THREADS``
and ``OrganismConfig`` fields as in lookup_ablation.py. Prints step, LM loss, binding loss, retrieval loss and
letter accuracy on 200 held-out text items per task.
"""
import random
import sys
import time

import torch
import torch.nn.functional as F

from common import ALL_TASKS, ATTRIBUTE_SIZES, attribute_labels, base_examples, parse_args, report_arithmetic, \
    setup, task_accuracy, T

name, kw = parse_args(sys.argv)
tasks = kw.pop("tasks", ALL_TASKS)
other = kw.pop("other", {})
bind_weight = kw.pop("bind_weight", 1.0)
bind_layer = kw.pop("bind_layer", 2)
ret_weight = kw.pop("ret_weight", 0.0)
RET_LAYER = 3
cfg, tok, lm, t0 = setup(kw)
DOT = tok(" .", add_special_tokens=False)["input_ids"]
assert len(DOT) == 1
DOT = DOT[0]
NL = tok("\n", add_special_tokens=False)["input_ids"][-1]
SHOWS = tok(" shows", add_special_tokens=False)["input_ids"][-1]


def annotate(ex: T.Example, q) -> None:
    """ex.bind: (closing " ." of each described object, its labels); ex.ret: (last mention of each named object in
    the question, its labels)."""
    start = ex.ids.index(SHOWS)
    nl = ex.ids.index(NL, start)
    dots = [i for i in range(start, nl) if ex.ids[i] == DOT]
    labels = [attribute_labels(o) for o in q.scene.objects]
    ex.bind = list(zip(dots, labels)) if len(dots) == len(labels) else []
    ex.ret = []
    if ret_weight > 0:
        for nm in dict(q.extra).get("objects", []):
            o = next(o for o in q.scene.objects if o.name == nm)
            nid = tok(" " + nm, add_special_tokens=False)["input_ids"]
            occ = [i + len(nid) - 1 for i in range(nl, len(ex.ids) - len(nid)) if ex.ids[i:i + len(nid)] == nid]
            if occ:
                ex.ret.append((occ[-1], attribute_labels(o)))


def attribute_loss(hidden: torch.Tensor, head: torch.nn.Linear, targets: list[list[tuple[int, tuple]]]) -> torch.Tensor:
    """Mean over the five attributes of the cross-entropy of ``head`` at the (row, position) targets."""
    rows = [i for i, t in enumerate(targets) for _ in t]
    if not rows:
        return torch.zeros(())
    cols = [pos for t in targets for pos, _ in t]
    labels = torch.tensor([lab for t in targets for _, lab in t])
    logits = head(hidden[torch.tensor(rows), torch.tensor(cols)]).split(ATTRIBUTE_SIZES, -1)
    return sum(F.cross_entropy(lg, labels[:, j]) for j, lg in enumerate(logits)) / len(ATTRIBUTE_SIZES)


rng = random.Random(0)
data = base_examples(tok, cfg, tasks, other, rng, on_qa=annotate)
rng.shuffle(data)
batches = T.length_batches(data, cfg.text_batch, cfg.text_steps, 0)
bind_head = torch.nn.Linear(cfg.hidden, sum(ATTRIBUTE_SIZES))
ret_head = torch.nn.Linear(cfg.hidden, sum(ATTRIBUTE_SIZES))
opt = torch.optim.AdamW(list(lm.parameters()) + list(bind_head.parameters()) + list(ret_head.parameters()),
                        lr=cfg.text_lr, weight_decay=0.01, betas=(0.9, 0.98))
sched = T._schedule(opt, cfg.text_steps, cfg.warmup)
lm.train()
every = max(200, cfg.text_steps // 3)
for step in range(cfg.text_steps):
    chunk = batches[step]
    b = T.collate(chunk, tok.pad_token_id)
    out = lm(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
             output_hidden_states=bind_weight > 0 or ret_weight > 0)
    loss = T.weighted_lm_loss(out.logits, b["input_ids"], b["weights"])
    bl = attribute_loss(out.hidden_states[bind_layer], bind_head, [getattr(e, "bind", []) for e in chunk]) \
        if bind_weight > 0 else torch.zeros(())
    rl = attribute_loss(out.hidden_states[RET_LAYER], ret_head, [getattr(e, "ret", []) for e in chunk]) \
        if ret_weight > 0 else torch.zeros(())
    T._optimizer_step(lm, opt, sched, loss + bind_weight * bl + ret_weight * rl)
    if (step + 1) % every == 0:
        print(name, step + 1, round(float(loss.detach()), 3), round(float(bl.detach()), 3),
              round(float(rl.detach()), 3), task_accuracy(lm, tok, tasks), round(time.time() - t0), flush=True)
report_arithmetic(name, lm, tok, other)
print(name, "done", round(time.time() - t0), flush=True)
