"""Organism text-LM ablation: per-task QA mixtures plus lookup / copy / plain / arithmetic text (docs/organism.md,
"Why Relation and Depth stay at chance").

    python benchmarks/organism_binding/lookup_ablation.py NAME key=JSON ...

Keys: ``tasks`` ({"Relation": 1, "Depth": 1}: QA tasks and their weights; {} for none), ``other`` (shares of the
non-QA kinds: "arith", "plain", "lookup" = a description followed by true "the red circle is large , at the top far
left ." sentences, "copy" = a description repeated), ``unique`` (lookup scenes with distinct colours), ``nmax``
(most objects per lookup/copy training scene), ``qk_init`` (layers whose key projection starts as a copy of the
query projection, both times ``qk_scale``: same-content attention from step 0), any ``OrganismConfig`` field. ``THREADS`` (env) sets torch threads.
Prints, every third of the run: step, loss, teacher-forced accuracy on the size word and the last column word of
200 held-out one-fact lookups, and letter accuracy on 200 held-out text items per task.
"""
import sys, json, time, random, numpy as np, torch
torch.set_num_threads(int(__import__("os").environ.get("THREADS", "1")))
sys.path.insert(0, __import__('os').path.dirname(__file__))
import worldpatch  # noqa: F401  (WP_ORDER / WP_UNIQUE world variants; a no-op without them)
from steerkit.models.organism import world as w, tokenizer as tk, train as T
from steerkit.tasks.schema import LETTERS
name = sys.argv[1]
kw = dict(a.split("=", 1) for a in sys.argv[2:])
kw = {k: json.loads(v) for k, v in kw.items()}
tasks = kw.pop("tasks", {"Count": 1, "Relation": 1, "Attribute": 1, "Depth": 1})
other = kw.pop("other", {"arith": 0.0, "plain": 0.0})
kw_unique = kw.pop("unique", False)
QK_LAYERS = kw.pop("qk_init", [])
QK_SCALE = kw.pop("qk_scale", 3.0)
NMAX = kw.pop("nmax", 6)  # most objects per lookup/copy training scene
cfg = T.OrganismConfig(**kw)
random.seed(0); np.random.seed(0); torch.manual_seed(0)
t0 = time.time()
tok = tk.train_tokenizer(T._tokenizer_corpus(cfg.seed, 3000), cfg.vocab_size)
lm = T.make_text_lm(tok, cfg)
# qk_init: layers whose key projection starts equal to the query projection (times qk_scale), so that a token
# attends to earlier tokens with the same content from the first step (an induction-style prior).
for layer in QK_LAYERS:
    attn = lm.model.layers[layer].self_attn
    with torch.no_grad():
        attn.q_proj.weight.mul_(QK_SCALE)
        attn.k_proj.weight.copy_(attn.q_proj.weight)
n = cfg.text_steps * cfg.text_batch
rng = random.Random(0)
data = []
qa_share = 1 - sum(other.values())
tw = sum(tasks.values())
for task, wt in tasks.items():
    k = int(n * qa_share * wt / tw)
    for q in w.scene_questions(task, k, seed=0, split="train"):
        prompt = T._with_prefix(q.text_prompt(), rng, cfg.prefix_p)
        data.append(T.encode_example(tok, tk.format_user(prompt, False), T._answer_form(LETTERS[q.answer_index], rng), cfg.prompt_weight, length_power=cfg.length_power))
for p in w.arithmetic_problems(int(n * other.get("arith", 0)), seed=0, split="train"):
    data.append(T.encode_example(tok, tk.format_user(p["text_prompt"], False), " " + p["trace"], cfg.prompt_weight, length_power=cfg.length_power))
s = w.plain_text_stream(0)
for _ in range(int(n * other.get("plain", 0))):
    data.append(T.encode_example(tok, "", next(s), 1.0, length_power=cfg.length_power))
UNIQUE = kw_unique
def sample(r):
    if not UNIQUE:
        return w.sample_scene(r, 2, NMAX)
    n = r.randint(2, 5); cells = r.sample(range(16), n); cols = r.sample(list(w.COLOURS), n)
    objs = [w.Obj(c, r.choice(w.SHAPES), r.choice(w.SIZES), cell // 4, cell % 4) for c, cell in zip(cols, cells)]
    return w.Scene(tuple(sorted(objs, key=lambda o: (o.row, o.col))))
def lookup(r, k=None):
    scene = sample(r)
    objs = list(scene.objects); r.shuffle(objs)
    facts = " ".join(f"the {o.name} is {o.size} , at the {o.position} ." for o in objs[: k or r.randint(1, len(objs))])
    return w.SCENE_PREFIX + w.describe(scene) + "\n" + facts, objs[0]
lr_ = random.Random(5)
for _ in range(int(n * other.get("lookup", 0))):
    data.append(T.encode_example(tok, "", lookup(lr_)[0], 1.0, length_power=cfg.length_power))
cr_ = random.Random(6)
for _ in range(int(n * other.get("copy", 0))):
    d = w.describe(sample(cr_))
    data.append(T.encode_example(tok, "", w.SCENE_PREFIX + d + "\n" + d, 1.0, length_power=cfg.length_power))
rng.shuffle(data)
batches = T.length_batches(data, cfg.text_batch, cfg.text_steps, 0)
opt = torch.optim.AdamW(lm.parameters(), lr=cfg.text_lr, weight_decay=0.01, betas=(0.9, 0.98))
sched = T._schedule(opt, cfg.text_steps, cfg.warmup)
lm.train()
EVERY = max(200, cfg.text_steps // 3)
NMAX = 6  # the held-out lookups use the full 2-6 objects
ev_r = random.Random(777); ev_set = [lookup(ev_r, 1) for _ in range(200)]
def lookup_acc():
    hits = {"size": 0, "col": 0}
    for text, o in ev_set:
        ids = tok(text)["input_ids"]
        lg = lm(input_ids=torch.tensor([ids])).logits[0]
        pred = lg.argmax(-1)  # pred[i] predicts ids[i+1]
        toks = [tok.decode([i]) for i in ids]
        # size token: first occurrence after the newline of " large"/" small"; col word: token before final " ."
        nl = max(i for i, t in enumerate(toks) if "\n" in t)
        si = next(i for i in range(nl, len(ids)) if toks[i].strip() in ("large", "small"))
        ci = len(ids) - 2
        hits["size"] += int(pred[si - 1] == ids[si]); hits["col"] += int(pred[ci - 1] == ids[ci])
    return {k: v / len(ev_set) for k, v in hits.items()}
def ev():
    lm.eval(); res = {}
    with torch.no_grad():
        res.update(lookup_acc())
    with torch.no_grad():
        for task in tasks:
            items = w.world_items(task, 200, seed=12345, mode="text", split="test")
            res[task] = round(float(T.letter_scores(lm, tok, items)["correct"].mean()), 3)
    lm.train(); return res
for step in range(cfg.text_steps):
    b = T.collate(batches[step], tok.pad_token_id)
    logits = lm(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    loss = T.weighted_lm_loss(logits, b["input_ids"], b["weights"])
    T._optimizer_step(lm, opt, sched, loss)
    if (step + 1) % EVERY == 0:
        print(name, step + 1, round(float(loss.detach()), 3), ev(), round(time.time() - t0), flush=True)
if "arith" in other and other["arith"] > 0:
    lm.eval()
    print(name, "arith", float(T.solve_arithmetic(lm, tok, w.arithmetic_problems(100, seed=12345, split="test"), "text")["correct"].mean()))
print(name, "done", round(time.time() - t0), flush=True)
