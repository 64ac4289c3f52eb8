"""Organism text-LM ablation with auxiliary binding / retrieval losses (docs/organism.md, "Why Relation and Depth
stay at chance").

    python benchmarks/organism_binding/binding_ablation.py NAME key=JSON ...

``bind_weight`` (default 1): a linear head on the hidden state after ``bind_layer`` layers (default 2) at each
object's closing " ." in the description predicts that object's colour, shape, size, row and column (cross-entropy,
mean of the five). ``ret_weight`` (default 0): a second head on the hidden state after 3 layers at the last mention
of each object the question names predicts the same five attributes (retrieval). ``tasks``/``other`` and
``OrganismConfig`` fields as in lookup_ablation.py. Prints step, LM loss, binding loss, retrieval loss and letter
accuracy on 200 held-out text items per task.
"""
import sys, json, time, random, os, numpy as np, torch, torch.nn.functional as F
torch.set_num_threads(1)
sys.path.insert(0, __import__('os').path.dirname(__file__))
import worldpatch  # noqa: F401  (WP_ORDER / WP_UNIQUE world variants; a no-op without them)
from steerkit.models.organism import world as w, tokenizer as tk, train as T
from steerkit.tasks.schema import LETTERS
name = sys.argv[1]
kw = {k: json.loads(v) for k, v in (a.split("=", 1) for a in sys.argv[2:])}
tasks = kw.pop("tasks", {"Count": 1, "Relation": 1, "Attribute": 1, "Depth": 1})
other = kw.pop("other", {})
bw = kw.pop("bind_weight", 1.0)
blayer = kw.pop("bind_layer", 2)
RW = kw.pop("ret_weight", 0.0)
cfg = T.OrganismConfig(**kw)
random.seed(0); np.random.seed(0); torch.manual_seed(0)
t0 = time.time()
tok = tk.train_tokenizer(T._tokenizer_corpus(cfg.seed, 3000), cfg.vocab_size)
lm = T.make_text_lm(tok, cfg)
DOT = tok(" .", add_special_tokens=False)["input_ids"]; assert len(DOT) == 1; DOT = DOT[0]
NL = tok("\n", add_special_tokens=False)["input_ids"][-1]
SHOWS = tok(" shows", add_special_tokens=False)["input_ids"][-1]
COLS, SHP = list(w.COLOURS), list(w.SHAPES)
def labels(scene):
    return [(COLS.index(o.colour), SHP.index(o.shape), w.SIZES.index(o.size), o.row, o.col) for o in scene.objects]
def bind_targets(ids, scene):
    s = ids.index(SHOWS); e = ids.index(NL, s)
    dots = [i for i in range(s, e) if ids[i] == DOT]
    lab = labels(scene)
    return list(zip(dots, lab)) if len(dots) == len(lab) else []
n = cfg.text_steps * cfg.text_batch
rng = random.Random(0)
data = []
qa_share = 1 - sum(other.values()); tw = sum(tasks.values())
for task, wt in tasks.items():
    for q in w.scene_questions(task, int(n * qa_share * wt / tw), seed=0, split="train"):
        prompt = T._with_prefix(q.text_prompt(), rng, cfg.prefix_p)
        ex = T.encode_example(tok, tk.format_user(prompt, False), T._answer_form(LETTERS[q.answer_index], rng), cfg.prompt_weight, length_power=cfg.length_power)
        ex.cells = bind_targets(ex.ids, q.scene)
        ex.ret = []
        if RW > 0:
            nl = ex.ids.index(NL, ex.ids.index(SHOWS))
            for nm in dict(q.extra).get("objects", []):
                o = next(o for o in q.scene.objects if o.name == nm)
                nid = tok(" " + nm, add_special_tokens=False)["input_ids"]
                occ = [i + len(nid) - 1 for i in range(nl, len(ex.ids) - len(nid)) if ex.ids[i:i + len(nid)] == nid]
                if occ:
                    ex.ret.append((occ[-1], labels(w.Scene((o,)))[0]))
        data.append(ex)
for p in w.arithmetic_problems(int(n * other.get("arith", 0)), seed=0, split="train"):
    ex = T.encode_example(tok, tk.format_user(p["text_prompt"], False), " " + p["trace"], cfg.prompt_weight, length_power=cfg.length_power); ex.cells = []
    data.append(ex)
s = w.plain_text_stream(0)
for _ in range(int(n * other.get("plain", 0))):
    ex = T.encode_example(tok, "", next(s), 1.0, length_power=cfg.length_power); ex.cells = []; data.append(ex)
rng.shuffle(data)
batches = T.length_batches(data, cfg.text_batch, cfg.text_steps, 0)
head = torch.nn.Linear(cfg.hidden, 18)
head2 = torch.nn.Linear(cfg.hidden, 18)
opt = torch.optim.AdamW(list(lm.parameters()) + list(head.parameters()) + list(head2.parameters()), lr=cfg.text_lr, weight_decay=0.01, betas=(0.9, 0.98))
sched = T._schedule(opt, cfg.text_steps, cfg.warmup)
SPL = [5, 3, 2, 4, 4]
def ev():
    lm.eval(); res = {}
    with torch.no_grad():
        for task in tasks:
            items = w.world_items(task, 200, seed=12345, mode="text", split="test")
            res[task] = round(float(T.letter_scores(lm, tok, items)["correct"].mean()), 3)
    lm.train(); return res
lm.train()
EVERY = max(200, cfg.text_steps // 3)
for step in range(cfg.text_steps):
    chunk = batches[step]
    b = T.collate(chunk, tok.pad_token_id)
    out = lm(input_ids=b["input_ids"], attention_mask=b["attention_mask"], output_hidden_states=bw > 0)
    loss = T.weighted_lm_loss(out.logits, b["input_ids"], b["weights"])
    bl = torch.zeros(())
    if bw > 0:
        rows, cols, labs = [], [], []
        for i, ex in enumerate(chunk):
            for pos, lab in ex.cells:
                rows.append(i); cols.append(pos); labs.append(lab)
        if rows:
            h = out.hidden_states[blayer][torch.tensor(rows), torch.tensor(cols)]
            logits = head(h).split(SPL, -1)
            labs = torch.tensor(labs)
            bl = sum(F.cross_entropy(lg, labs[:, j]) for j, lg in enumerate(logits)) / 5
    rl = torch.zeros(())
    if RW > 0:
        rows, cols, labs = [], [], []
        for i, ex in enumerate(chunk):
            for pos, lab in getattr(ex, "ret", []):
                rows.append(i); cols.append(pos); labs.append(lab)
        if rows:
            h = out.hidden_states[3][torch.tensor(rows), torch.tensor(cols)]
            logits = head2(h).split(SPL, -1)
            labs = torch.tensor(labs)
            rl = sum(F.cross_entropy(lg, labs[:, j]) for j, lg in enumerate(logits)) / 5
    T._optimizer_step(lm, opt, sched, loss + bw * bl + RW * rl)
    if (step + 1) % EVERY == 0:
        print(name, step + 1, round(float(loss.detach()), 3), round(float(bl.detach()), 3), round(float(rl.detach()), 3), ev(), round(time.time() - t0), flush=True)
if other.get("arith", 0) > 0:
    lm.eval()
    print(name, "arith", float(T.solve_arithmetic(lm, tok, w.arithmetic_problems(100, seed=12345, split="test"), "text")["correct"].mean()))
print(name, "done", round(time.time() - t0), flush=True)
