"""Research prototype: teach the SmolLM2 organism two-digit addition (text and image) and transcription.

Stages (one resumable process; state in OUT/state.pt after every curve point):
  0. baseline: zero-shot text-mode arithmetic (n_eval test problems) and scene curve point (n=40 per task/mode).
  T. LoRA continuation, tower frozen: text-mode arithmetic traces (loss on trace tokens) + scene replay.
  G. digit grounding of tower + projector (LM frozen): a character cell's first patch token -> the character's
     token embedding, its other three -> " ."; mixed with the build's scene grid-sentence targets (replay).
  I. LoRA, tower frozen: image arithmetic (image prompt -> trace), transcription (OCR prompt ->
     <transcript>q</transcript>), text arithmetic and scene replay.
  F. final: text / image (train font + unseen fonts) / transcription / scene, saved adapter + vision.

Usage: OMP_NUM_THREADS=1 python benchmarks/research/organism_smol_arith.py --build steerkit/data/organism-smol --out OUT [--t-steps ...]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from steerkit.models.adapters import adapter_for
from steerkit.models.organism import world as w
from steerkit.models.organism.loop import image_features, pixel_values
from steerkit.tasks.scoring import PAPER_PREFIX, letter_token_ids

OCR_PROMPT = "Transcribe the problem in the image as <transcript>...</transcript>."
IM_END = "<|im_end|>"
FONTS = (w.TRAIN_FONT, *w.UNSEEN_FONTS)


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


# ------------------------------------------------------------------------------------------------ model
def load_trainable(build: Path) -> tuple[Any, Any, Any]:
    """(peft_model, processor, cfg): base + the build's vision weights + its LoRA loaded as trainable."""
    from peft import PeftModel
    from safetensors.torch import load_file

    from steerkit.models.organism_smol import construct
    from steerkit.models.organism_smol.config import SmolOrganismConfig
    from steerkit.models.textlm import load_smollm2
    import dataclasses

    fields = {f.name for f in dataclasses.fields(SmolOrganismConfig)}
    cfg = SmolOrganismConfig(**{k: v for k, v in json.loads((build / "config.json").read_text()).items()
                                if k in fields})
    lm, tok = load_smollm2()
    processor = construct.make_processor(tok, cfg)
    model = construct.make_mllm(lm, processor, cfg)
    del lm
    model.load_state_dict({k: v.float() for k, v in load_file(build / "vision.safetensors").items()}, strict=False)
    for p in model.parameters():
        p.requires_grad_(False)
    peft_model = PeftModel.from_pretrained(model, build / "lora", is_trainable=True)
    for n, p in peft_model.named_parameters():
        if "lora_" in n:
            p.data = p.data.float()
    construct.retie(peft_model.base_model.model)
    return peft_model, processor, cfg


def lora_params(peft_model: Any) -> list[torch.nn.Parameter]:
    return [p for n, p in peft_model.named_parameters() if "lora_" in n]


def vision_params(model: Any) -> list[torch.nn.Parameter]:
    return [p for m in adapter_for(model).vision_modules(model) for p in m.parameters()]


# ------------------------------------------------------------------------------------------------ data
def arith_sample(r: dict[str, Any], kind: str, rng: random.Random) -> tuple[str, Any, str]:
    """(prompt, image or None, target text) of one training problem in ``kind``: text, image or ocr."""
    if kind == "text":
        return r["text_prompt"], None, r["trace"] + IM_END
    img = w.render_arithmetic(r["question"], font=w.TRAIN_FONT, seed=f"{r['id']}-{rng.random()}",
                              jitter=rng.choice((0, 1)))
    if kind == "image":
        return r["image_prompt"], img, r["trace"] + IM_END
    return OCR_PROMPT, img, f"<transcript>{r['question']}</transcript>" + IM_END


class Batcher:
    """Builds left-padded (prompt + target) batches with labels on the target tokens only."""

    def __init__(self, processor: Any):
        self.processor = processor
        self.tok = processor.tokenizer
        self.adapter = None
        self.letters = {L: ids[0] for L, ids in letter_token_ids(self.tok).items()}

    def encode(self, model: Any, samples: list[tuple[str, Any, Any]]) -> dict[str, torch.Tensor]:
        """``samples``: (prompt, image|None, target) with target a string or a list of token ids. One group
        (all with or all without images)."""
        adapter = adapter_for(model)
        seqs, tlens, pix = [], [], []
        for prompt, image, target in samples:
            inp = adapter.build_inputs(self.processor, [prompt], [image] if image is not None else None)
            ids = inp["input_ids"][0].tolist()
            tgt = target if isinstance(target, list) else self.tok.encode(target, add_special_tokens=False)
            seqs.append(ids + tgt)
            tlens.append(len(tgt))
            if image is not None:
                pix.append(inp["pixel_values"][0])
        T = max(map(len, seqs))
        T += (-T) % 16
        pad = self.tok.pad_token_id
        ids = torch.full((len(seqs), T), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), T), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, T - len(s):] = torch.tensor(s)
            mask[i, T - len(s):] = 1
        out = dict(input_ids=ids, attention_mask=mask, tlens=torch.tensor(tlens))
        if pix:
            out["pixel_values"] = torch.stack(pix)
        return out

    def scene(self, q: Any, mode: str) -> tuple[str, Any, list[int]]:
        it = q.item(mode)
        return PAPER_PREFIX + it.prompt, it.image if mode == "image" else None, [self.letters[it.answer]]


def group_loss(peft_model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean over samples of the mean token cross-entropy on each sample's target tokens."""
    tlens = batch["tlens"]
    keep = int(tlens.max()) + 1
    kwargs = {k: v for k, v in batch.items() if k != "tlens"}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = peft_model(**kwargs, use_cache=False, logits_to_keep=keep).logits.float()
    ids = batch["input_ids"][:, -keep:]
    losses = []
    for i, L in enumerate(tlens.tolist()):
        pred = logits[i, keep - L - 1: keep - 1]
        losses.append(F.cross_entropy(pred, ids[i, keep - L:]))
    return torch.stack(losses)


# ------------------------------------------------------------------------------------------------ evals
@torch.no_grad()
def gen(model: Any, processor: Any, prompts: list[str], images: list[Any] | None, max_new: int,
        stop: str) -> list[str]:
    from steerkit.models.generation import generate_text

    with torch.autocast("cpu", dtype=torch.bfloat16):
        return generate_text(model, processor, prompts, images, max_new_tokens=max_new, batch_size=25,
                             stop_strings=[stop])


def eval_arith(model: Any, processor: Any, probs: list[dict[str, Any]], mode: str, font: str = w.TRAIN_FONT,
               show: int = 2) -> dict[str, Any]:
    """Greedy accuracy on ``probs``: mode text (text_prompt), image (image_prompt + render in ``font``), or ocr
    (transcription exact match)."""
    from steerkit.gap.parse import parse_number, parse_transcript

    model.eval()
    t0 = time.time()
    if mode == "text":
        resp = gen(model, processor, [r["text_prompt"] for r in probs], None, 48, "</answer>")
    else:
        imgs = [w.render_arithmetic(r["question"], font=font, seed=r["id"]) for r in probs]
        if mode == "image":
            resp = gen(model, processor, [r["image_prompt"] for r in probs], imgs, 48, "</answer>")
        else:
            resp = gen(model, processor, [OCR_PROMPT] * len(probs), imgs, 20, "</transcript>")
    if mode == "ocr":
        got = [parse_transcript(x) for x in resp]
        correct = [g == r["question"] for g, r in zip(got, probs)]
        fmt = [g is not None for g in got]
    else:
        parsed = [parse_number(x) for x in resp]
        correct = [p.value == r["answer"] for p, r in zip(parsed, probs)]
        fmt = [p.format_ok for p in parsed]
    return dict(acc=sum(correct) / len(probs), format_ok=sum(fmt) / len(probs), n=len(probs),
                seconds=round(time.time() - t0, 1), examples=[(r["question"], x) for r, x in zip(probs, resp)][:show])


@torch.no_grad()
def eval_scene(model: Any, processor: Any, n: int) -> dict[str, float]:
    from steerkit.models.organism.evaluation import EVAL_SEED
    from steerkit.models.organism_smol.evaluation import curve_point, held_out_items

    model.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return curve_point(model, processor, held_out_items(n, seed=EVAL_SEED + 1))


# ------------------------------------------------------------------------------------------------ grounding
class CharTargets:
    """Targets of the digit grounding: cell i of a rendered question -> slot 0 = its character's embedding."""

    def __init__(self, tok: Any, embeddings: torch.Tensor, grid: Any):
        self.grid = grid
        chars = "0123456789+"
        self.vec = {c: embeddings[tok.encode(c, add_special_tokens=False)[0]] for c in chars}
        self.empty = grid.vectors["."]
        self.names = list(chars) + ["."]
        self.vocab = F.normalize(torch.stack([*self.vec.values(), self.empty]), dim=-1)

    def words(self, q: str) -> list[str]:
        out = ["."] * self.grid.n_tokens
        for i, ch in enumerate(q):
            r, c = divmod(i, w.GRID)
            out[self.grid.index(r, c, 0)] = ch
        return out

    def targets(self, qs: list[str]) -> torch.Tensor:
        return torch.stack([torch.stack([self.vec.get(x, self.empty) for x in self.words(q)]) for q in qs])

    @torch.no_grad()
    def decode(self, model: Any, processor: Any, qs: list[str], imgs: list[Any]) -> dict[str, float]:
        """Char accuracy (slot-0 tokens of occupied cells, nearest of 0-9 + '.' by cosine), empty accuracy and
        whole-question exact match."""
        feats = F.normalize(image_features(model, pixel_values(processor, imgs)).float(), dim=-1)
        best = (feats @ self.vocab.T).argmax(-1)
        ch = [0, 0]
        em = [0, 0]
        exact = 0
        for q, b in zip(qs, best):
            words = self.words(q)
            ok = True
            for i, x in enumerate(words):
                hit = self.names[int(b[i])] == x
                if x != ".":
                    ch[0] += hit
                    ch[1] += 1
                    ok &= hit
                else:
                    em[0] += hit
                    em[1] += 1
            exact += ok
        return dict(char=round(ch[0] / ch[1], 3), empty=round(em[0] / em[1], 3), exact=round(exact / len(qs), 3))


def train_grounding(model: Any, processor: Any, tok: Any, cfg: Any, steps: int, lr: float, state: dict,
                    save: Any) -> None:
    from steerkit.models.organism_smol import grounding

    embeds = model.get_input_embeddings().weight.detach().float()
    grid = grounding.GridSentence(tok, embeds, cfg.patch)
    chars = CharTargets(tok, embeds, grid)
    params = vision_params(model)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    train = w.arithmetic_problems(4000, seed=0, split="train")
    test = w.arithmetic_problems(100, seed=99, split="test")
    held_scenes = [q.scene for t in w.TASKS for q in w.scene_questions(t, 25, seed=cfg.seed + 7, split="test")]
    held_pix = pixel_values(processor, [w.render_scene(s, seed=f"ground-test-{i}") for i, s in enumerate(held_scenes)])
    rng = random.Random(1)

    def evaluate(step: int) -> None:
        point: dict[str, Any] = dict(step=step, scene=grounding.decode_accuracy(model, grid, held_scenes, held_pix))
        for font in FONTS:
            point[font] = chars.decode(model, processor, [r["question"] for r in test],
                                       [w.render_arithmetic(r["question"], font=font, seed=r["id"]) for r in test])
        state["ground_curve"].append(point)
        log(f"grounding step {step}: {point}")

    state.setdefault("ground_curve", [])
    evaluate(0)
    t0 = time.time()
    for step in range(steps):
        scenes = [w.sample_split_scene(rng, "train") for _ in range(16)]
        qs = [train[rng.randrange(len(train))]["question"] for _ in range(16)]
        images = [w.render_scene(s, seed=f"g2-{step}-{i}") for i, s in enumerate(scenes)]
        images += [w.render_arithmetic(q, font=w.TRAIN_FONT, seed=f"g2a-{step}-{i}", jitter=rng.choice((0, 1)))
                   for i, q in enumerate(qs)]
        target = torch.cat([grid.targets(scenes), chars.targets(qs)])
        feats = image_features(model, pixel_values(processor, images))
        loss = ((feats - target) ** 2).sum(-1).mean() / (target ** 2).sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if (step + 1) % 100 == 0 or step + 1 == steps:
            log(f"grounding step {step + 1} loss {float(loss.detach()):.4f} ({(time.time() - t0) / (step + 1):.2f} s/step)")
            evaluate(step + 1)
    state["ground_s_per_step"] = (time.time() - t0) / max(steps, 1)
    for p in params:
        p.requires_grad_(False)


# ------------------------------------------------------------------------------------------------ LoRA stages
def train_stage(name: str, peft_model: Any, processor: Any, batcher: Batcher, mix: dict[str, int], steps: int,
                lr: float, state: dict, save: Any, eval_every: int, evals: Any, deadline: float,
                initial: dict[str, Any] | None = None) -> None:
    """LoRA steps with a per-step batch ``mix`` {text, image, ocr, scene_image, scene_text: count}."""
    base = peft_model.base_model.model
    params = lora_params(peft_model)
    for p in params:
        p.requires_grad_(True)
    train = w.arithmetic_problems(4000, seed=0, split="train")
    scenes = [q for t in w.TASKS for q in w.scene_questions(t, 2000, seed=0, split="train")]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    warm = 10
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))))
    st = state.setdefault(name, dict(step=0, curve=[], losses=[], seconds=0.0))
    if st["step"] and "opt" in st:
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
    rng = random.Random(f"{name}-{st['step']}")
    if not st["curve"]:
        st["curve"].append(dict(step=0, **(initial if initial is not None else evals())))
        save()
    t_start = time.time() - st["seconds"]
    while st["step"] < steps and time.time() < deadline:
        t0 = time.time()
        base.train()
        groups: dict[bool, list] = {False: [], True: []}
        for kind, k in mix.items():
            for _ in range(k):
                if kind.startswith("scene"):
                    mode = kind.split("_")[1]
                    s = batcher.scene(scenes[rng.randrange(len(scenes))], mode)
                else:
                    s = arith_sample(train[rng.randrange(len(train))], kind, rng)
                groups[s[1] is not None].append((kind, s))
        opt.zero_grad(set_to_none=True)
        total = sum(len(g) for g in groups.values())
        parts: dict[str, list[float]] = {}
        for g in groups.values():
            if not g:
                continue
            losses = group_loss(peft_model, batcher.encode(base, [s for _, s in g]))
            (losses.sum() / total).backward()
            for (kind, _), l in zip(g, losses.tolist()):
                parts.setdefault(kind, []).append(l)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        st["step"] += 1
        st["losses"].append({k: round(sum(v) / len(v), 4) for k, v in parts.items()} | dict(s=round(time.time() - t0, 2)))
        if st["step"] % 10 == 0:
            recent = st["losses"][-10:]
            log(f"{name} step {st['step']}: " + " ".join(
                f"{k}={sum(r.get(k, 0) for r in recent) / max(1, sum(k in r for r in recent)):.3f}"
                for k in [*mix, "s"]))
        if st["step"] % eval_every == 0 or st["step"] == steps or time.time() >= deadline:
            st["seconds"] = time.time() - t_start
            point = dict(step=st["step"], seconds=round(st["seconds"]), **evals())
            st["curve"].append(point)
            log(f"{name} curve {point}")
            st["opt"], st["sched"] = opt.state_dict(), sched.state_dict()
            save()
    base.eval()
    for p in params:
        p.requires_grad_(False)


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", type=Path, default=Path("steerkit/data/organism-smol"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n-eval", type=int, default=100)
    ap.add_argument("--curve-n", type=int, default=100)
    ap.add_argument("--scene-n", type=int, default=40)
    ap.add_argument("--t-steps", type=int, default=150)
    ap.add_argument("--t-lr", type=float, default=8e-4)
    ap.add_argument("--t-mix", default="text=6,scene_image=1,scene_text=1")
    ap.add_argument("--t-eval-every", type=int, default=50)
    ap.add_argument("--g-steps", type=int, default=300)
    ap.add_argument("--g-lr", type=float, default=2e-3)
    ap.add_argument("--i-steps", type=int, default=200)
    ap.add_argument("--i-lr", type=float, default=8e-4)
    ap.add_argument("--i-mix", default="image=2,ocr=2,text=2,scene_image=1,scene_text=1")
    ap.add_argument("--i-eval-every", type=int, default=50)
    ap.add_argument("--i-curve-n", type=int, default=50)
    ap.add_argument("--deadline", default="19:05", help="HH:MM (UTC, today): training stops, final eval runs")
    ap.add_argument("--final-reserve", type=float, default=600, help="seconds kept for the final evaluation")
    ap.add_argument("--skip-baseline-scene", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="2 steps of every stage, n=4 evals (checks the code)")
    args = ap.parse_args()
    if args.smoke:
        args.n_eval = args.curve_n = 4
        args.scene_n = 1
        args.t_steps = args.g_steps = args.i_steps = 2
        args.t_eval_every = args.i_eval_every = 2
    torch.set_num_threads(1)
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    hh, mm = map(int, args.deadline.split(":"))
    now = time.gmtime()
    end = time.time() + ((hh * 60 + mm) - (now.tm_hour * 60 + now.tm_min)) * 60 - now.tm_sec
    train_deadline = end - args.final_reserve
    log(f"deadline {args.deadline} UTC: training until {time.strftime('%H:%M:%S', time.gmtime(train_deadline))}")

    t0 = time.time()
    peft_model, processor, cfg = load_trainable(args.build)
    base = peft_model.base_model.model
    log(f"loaded in {time.time() - t0:.0f} s")
    state_path = args.out / "state.pt"
    state: dict[str, Any] = {}
    if state_path.exists():
        state = torch.load(state_path, weights_only=False)
        for p, v in zip(lora_params(peft_model), state["lora"]):
            p.data.copy_(v)
        base.load_state_dict(state["vision"], strict=False)
        log(f"resumed: {[k for k in state if k not in ('lora', 'vision')]}")

    from steerkit.models.organism_smol import construct

    def save() -> None:
        state["lora"] = [p.detach().clone() for p in lora_params(peft_model)]
        state["vision"] = construct.vision_state(base)
        tmp = state_path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, state_path)
        summary = {k: v for k, v in state.items() if k not in ("lora", "vision")}
        (args.out / "summary.json").write_text(json.dumps(
            {k: ({kk: vv for kk, vv in v.items() if kk not in ("opt", "sched")} if isinstance(v, dict) else v)
             for k, v in summary.items()}, indent=1, default=str))

    test = w.arithmetic_problems(args.n_eval, seed=0, split="test")
    curve_set = test[:args.curve_n]
    batcher = Batcher(processor)
    tok = processor.tokenizer

    if "baseline" not in state:
        b: dict[str, Any] = dict(text=eval_arith(base, processor, test, "text", show=4))
        log(f"baseline text {b['text']}")
        if not args.skip_baseline_scene:
            t1 = time.time()
            b["scene"] = eval_scene(base, processor, args.scene_n)
            b["scene_s"] = round(time.time() - t1)
            log(f"baseline scene {b['scene']} ({b['scene_s']} s)")
        state["baseline"] = b
        save()

    def parse_mix(s: str) -> dict[str, int]:
        return {k: int(v) for k, v in (x.split("=") for x in s.split(","))}

    if args.t_steps:
        train_stage("T", peft_model, processor, batcher, parse_mix(args.t_mix), args.t_steps, args.t_lr, state, save,
                    args.t_eval_every, lambda: dict(text=eval_arith(base, processor, curve_set, "text")),
                    train_deadline, initial=dict(text=state["baseline"]["text"]) if args.curve_n == args.n_eval else None)
        if "after_T_scene" not in state and args.scene_n:
            state["after_T_scene"] = eval_scene(base, processor, args.scene_n)
            log(f"after T scene {state['after_T_scene']}")
            save()
    if args.g_steps and "ground_curve" not in state and time.time() < train_deadline:
        train_grounding(base, processor, tok, cfg, args.g_steps, args.g_lr, state, save)
        save()
    if args.i_steps and time.time() < train_deadline:
        small = curve_set[:args.i_curve_n]
        train_stage("I", peft_model, processor, batcher, parse_mix(args.i_mix), args.i_steps, args.i_lr, state, save,
                    args.i_eval_every, lambda: dict(text=eval_arith(base, processor, small, "text"),
                                                    image=eval_arith(base, processor, small, "image"),
                                                    ocr=eval_arith(base, processor, small, "ocr")),
                    train_deadline)

    # the trained parts first, so that a kill during the final evaluation still leaves them
    peft_model.save_pretrained(args.out / "lora")
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in construct.vision_state(base).items()}, args.out / "vision.safetensors")
    (args.out / "config.json").write_text((args.build / "config.json").read_text())
    fin = state.setdefault("final", {})
    todo: list[tuple[str, Any]] = [("text", lambda: eval_arith(base, processor, test, "text", show=3))]
    if "I" in state:
        todo += [("image/" + w.TRAIN_FONT, lambda: eval_arith(base, processor, test, "image", w.TRAIN_FONT, show=3)),
                 ("ocr/" + w.TRAIN_FONT, lambda: eval_arith(base, processor, test, "ocr", w.TRAIN_FONT, show=3))]
    if args.scene_n:
        todo.append(("scene", lambda: eval_scene(base, processor, args.scene_n)))
    if "I" in state:
        for font in w.UNSEEN_FONTS:
            todo += [(f"image/{font}", lambda f=font: eval_arith(base, processor, test, "image", f, show=3)),
                     (f"ocr/{font}", lambda f=font: eval_arith(base, processor, test, "ocr", f, show=3))]
    for key, fn in todo:
        if key not in fin:  # resumable: every finished measurement is saved at once
            fin[key] = fn()
            log(f"final {key} {fin[key]}")
            save()
    log("done")


if __name__ == "__main__":
    main()
