"""The sweep engine: every item x (method, concept, layer, strength, scope) cell, plus the two baselines.

For each batch of items the engine runs one unsteered forward that gives the baseline row and records what a
replay needs (:mod:`steerkit.sweep.replay`); then, for each vector and layer, one forward per group of strengths
and scopes whose rows repeat the items (per-row ``alpha`` and per-row steered positions), recomputing only layers
l.. . Answers are scored by answer-letter log-likelihood at the last prompt position in the same pass
(:func:`steerkit.tasks.scoring.letter_token_ids`); the greedy first token is recorded too, so the paper's protocol
(generate one token greedily, parse the letter) is reproduced without generating. Finished units go to a
:class:`~steerkit.sweep.store.RunStore` as they finish, so a killed sweep resumes where it stopped.

Example:
    >>> df = sweep(model, processor, items, vectors, layers=[1, 2], alphas=[0.5, 1.0], scopes=["image", "both"],
    ...            out_dir="outputs/sweeps", model_name="steerkit/organism")
    >>> df.groupby(["method", "layer", "alpha", "scope"]).correct.mean()
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from steerkit.errors import SteeringError
from steerkit.models.adapters import adapter_for
from steerkit.steer import token_masks
from steerkit.sweep import replay as rp
from steerkit.sweep.store import UNIT_COLUMNS, RunStore
from steerkit.tasks.schema import LETTERS, Item
from steerkit.tasks.scoring import PAPER_PREFIX, build_prompt, item_image, letter_token_ids, parse_answer

BASELINE = "none"  # method of the unsteered rows
PROMPTING = "prompt"  # method of the prompting-baseline rows (a concept hint prepended)
NO_LAYER = -1
ENGINE_VERSION = 1  # bump when the rows a configuration produces change meaning

Callback = Callable[["Progress"], None]


@dataclass
class Progress:
    """What a sweep callback sees after each finished unit group (one vector x layer x item batch)."""

    units_done: int
    units_total: int
    rows: int
    mode: str


def _shard() -> tuple[int, int]:
    """(rank, world size) from accelerate when launched by ``accelerate launch``/torchrun, else (0, 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState

        # without CUDA, accelerate only recognises a multi-process CPU launch when told cpu=True (gloo backend)
        state = PartialState(cpu=not torch.cuda.is_available())
        return int(state.process_index), int(state.num_processes)
    return 0, 1


# ------------------------------------------------------------------------------------------- fingerprints
# Config keys that save_pretrained fills in on the live model; the weights hash already covers every dtype, so a
# model keeps its identity after being saved or reloaded and its sweeps resume in the same run folder.
_CONFIG_BOOKKEEPING = ("architectures", "dtype", "torch_dtype")


def _without_bookkeeping(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _without_bookkeeping(v) for k, v in d.items() if k not in _CONFIG_BOOKKEEPING}
    return d


def model_fingerprint(model: torch.nn.Module, name: str | None = None) -> dict[str, Any]:
    """A cheap identity of a model's weights: name, config, parameter count and per-tensor sums."""
    h = hashlib.sha256()
    n = 0
    with torch.no_grad():
        for pname, p in model.named_parameters():
            n += p.numel()
            s = p.detach().float()
            h.update(f"{pname}:{tuple(p.shape)}:{p.dtype}:{s.sum().item():.6e}:{s.abs().sum().item():.6e}".encode())
    cfg = (json.dumps(_without_bookkeeping(model.config.to_dict()), sort_keys=True, default=str)
           if hasattr(model.config, "to_dict") else repr(model.config))
    return {"name": name or getattr(model, "name_or_path", "") or type(model).__name__, "n_params": n,
            "weights": h.hexdigest()[:16], "config": hashlib.sha256(cfg.encode()).hexdigest()[:16]}


def items_fingerprint(items: Sequence[Item]) -> str:
    """sha256 over every item's id, prompt, choices, answer, task, split and image bytes."""
    h = hashlib.sha256()
    for it in items:
        h.update(repr((it.id, it.prompt, list(it.choices), it.answer, it.task, it.source, it.split)).encode())
        if it.image is not None:
            h.update(f"{it.image.mode}{it.image.size}".encode())
            h.update(it.image.tobytes())
    return h.hexdigest()


def vector_fingerprint(vector: Mapping[int, torch.Tensor], layers: Iterable[int]) -> str:
    """sha256 of the vector's tensors at ``layers`` (float32 bytes)."""
    h = hashlib.sha256()
    for layer in sorted(layers):
        v = vector[layer].detach().to(torch.float32).cpu().contiguous()
        h.update(f"{layer}:{tuple(v.shape)}".encode())
        h.update(v.numpy().tobytes())
    return h.hexdigest()


def as_vector_table(vectors: Any) -> dict[tuple[str, str], Mapping[int, torch.Tensor]]:
    """``{(method, concept): {layer: tensor}}`` from the accepted forms of ``vectors``.

    Accepted: such a mapping; ``{name: vector}`` (method from ``vector.method`` or "vector", concept from
    ``vector.concept`` or the name); or a sequence of ``SteeringVector``-like objects with ``method`` and
    ``concept`` attributes.
    """
    table: dict[tuple[str, str], Mapping[int, torch.Tensor]] = {}
    if isinstance(vectors, Mapping):
        for key, vec in vectors.items():
            if isinstance(key, tuple):
                method, concept = key
            else:
                method = getattr(vec, "method", None) or "vector"
                concept = getattr(vec, "concept", None) or str(key)
            table[(str(method), str(concept))] = vec
    else:
        for vec in vectors:
            method, concept = getattr(vec, "method", None), getattr(vec, "concept", None)
            if not method or not concept:
                raise SteeringError("a vector in the list has no method/concept attributes; pass a mapping "
                                    "{(method, concept): vector} instead")
            table[(str(method), str(concept))] = vec
    if len(table) != len(vectors):
        raise SteeringError("two vectors share a (method, concept) pair; give each a distinct concept or method")
    return table


def sweep_config(
    *,
    model_fp: Mapping[str, Any],
    items: Sequence[Item],
    table: Mapping[tuple[str, str], Mapping[int, torch.Tensor]],
    layers: Sequence[int],
    alphas: Sequence[float],
    scopes: Sequence[str],
    prompt_prefix: str,
    hints: Mapping[str, str] | None,
    prompt_baseline: bool,
) -> dict[str, Any]:
    """The dictionary whose hash names a run folder: everything that changes the rows, nothing that does not."""
    return {
        "engine_version": ENGINE_VERSION,
        "model": dict(model_fp),
        "items": {"n": len(items), "sha256": items_fingerprint(items)},
        "vectors": {f"{m}/{c}": vector_fingerprint(v, layers) for (m, c), v in sorted(table.items())},
        "layers": [int(l) for l in layers],
        "alphas": [float(a) for a in alphas],
        "scopes": list(scopes),
        "prompt_prefix": prompt_prefix,
        "prompt_baseline": bool(prompt_baseline),
        "hints": dict(sorted((hints or {}).items())),
    }


# ------------------------------------------------------------------------------------------------ scoring
class _Scorer:
    """Turns last-position logits into rows: per-letter log-probs, argmax letter, greedy first-token answer."""

    def __init__(self, processor: Any, items: Sequence[Item]):
        self.tok = adapter_for_tokenizer(processor)
        n_max = max(len(it.choices) for it in items)
        self.letters = list(LETTERS[:n_max])
        ids = letter_token_ids(self.tok, self.letters)
        self.ids = [torch.tensor(ids[L]) for L in self.letters]
        self._decoded: dict[int, str] = {}

    def decode(self, token: int) -> str:
        if token not in self._decoded:
            self._decoded[token] = self.tok.decode([token], skip_special_tokens=True)
        return self._decoded[token]

    def score(self, logits: torch.Tensor, chunk: Sequence[Item], repeats: int) -> list[dict[str, Any]]:
        """One dict per row of ``logits`` [B * repeats, V] (row r * B + b is item b)."""
        logp = torch.log_softmax(logits.float(), dim=-1)
        per_letter = torch.stack([torch.logsumexp(logp[:, i.to(logp.device)], dim=-1) for i in self.ids], dim=-1)
        per_letter = per_letter.cpu().numpy()
        greedy = logits.argmax(dim=-1).tolist()
        out = []
        b = len(chunk)
        for row in range(b * repeats):
            it = chunk[row % b]
            lp = per_letter[row, : len(it.choices)]
            pred = LETTERS[int(np.argmax(lp))]
            text = self.decode(int(greedy[row]))
            g = parse_answer(text, it.choices) or ""
            out.append({"pred": pred, "correct": pred == it.answer, "logprobs": [float(x) for x in lp],
                        "greedy_text": text, "greedy_pred": g, "greedy_correct": g == it.answer})
        return out


def adapter_for_tokenizer(processor: Any) -> Any:
    """The tokenizer inside a processor (or the tokenizer itself)."""
    return getattr(processor, "tokenizer", processor)


# -------------------------------------------------------------------------------------------------- sweep
def _verified_mode(model: torch.nn.Module, inputs: Any, cap: rp.Capture, layer: int, v: torch.Tensor,
                   alpha: torch.Tensor, pos: torch.Tensor, atol: float, b: int) -> str:
    """The exact replay mode for this model, checked once per model object on two tiled strengths."""
    key = (atol, str(next(model.parameters()).dtype))
    cached = getattr(model, "_steerkit_replay_mode", {})
    if key not in cached:
        r = min(2, alpha.shape[0] // b)
        cached[key] = rp.self_check(model, inputs, cap, layer, r, v, alpha[: r * b], pos[: r * b], atol)
        model._steerkit_replay_mode = cached  # type: ignore[assignment]
        if cached[key] != "replay":
            warnings.warn(f"prefix replay is not exact on {type(model).__name__}; sweeping in mode "
                          f"{cached[key]!r} (slower, same results)", stacklevel=3)
    return cached[key]


def _hint(concept: str, hints: Mapping[str, str], hint_for: Callable[..., str]) -> str:
    """The hint of a concept; vector concepts are snake_case ("spatial_relation"), hint keys are phrases
    ("spatial relationship"): try the name, then with spaces, then the one key it begins."""
    found = hint_for(concept, hints) or hint_for(concept.replace("_", " "), hints)
    if found:
        return found
    keys = [k for k in hints if k.startswith(concept.replace("_", " "))]
    return hints[keys[0]] if len(keys) == 1 else ""


def _chunks(seq: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [seq[i: i + size] for i in range(0, len(seq), size)]


def _item_meta(it: Item, index: int) -> dict[str, Any]:
    return {"item_id": it.id, "item_index": index, "task": it.task, "source": it.source, "split": it.split,
            "answer": it.answer, "n_choices": len(it.choices)}


def _inputs(adapter: Any, processor: Any, chunk: Sequence[Item], prefix: str, device: torch.device) -> Any:
    images = [item_image(it) for it in chunk]
    has = [im is not None for im in images]
    if any(has) and not all(has):
        raise SteeringError("an item batch mixes items with and without images; sweep them separately")
    return adapter.build_inputs(processor, [build_prompt(it, prefix) for it in chunk], images if all(has) else None,
                                device=device)


def sweep(
    model: torch.nn.Module,
    processor: Any,
    items: Sequence[Item],
    vectors: Any,
    layers: Sequence[int],
    alphas: Sequence[float],
    scopes: Sequence[str] = ("image",),
    *,
    out_dir: str | os.PathLike[str] | None = None,
    model_name: str | None = None,
    run_name: str | None = None,
    batch_size: int = 8,
    max_rows: int = 256,
    prompt_prefix: str = PAPER_PREFIX,
    prompt_baseline: bool = True,
    hints: Mapping[str, str] | None = None,
    mode: str = "auto",
    autocast: bool | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    callback: Callback | None = None,
    progress: bool = True,
    flush_every: int = 64,
) -> pd.DataFrame:
    """Score every item under every cell and the baselines; return one tidy row per item x cell.

    Args:
        model, processor: an MLLM (or text LM) and its processor, e.g. from :func:`steerkit.load_model`.
        items: multiple-choice :class:`~steerkit.tasks.schema.Item` s (all with images, or all without).
        vectors: ``{(method, concept): {layer: Tensor[d]}}``, ``{name: SteeringVector}`` or a list of vectors.
        layers, alphas, scopes: the grid (scopes among "image", "text", "both").
        out_dir: root of the results store; rows are persisted under ``out_dir/<run>-<hash>/`` as units finish and
            a rerun resumes. ``None`` keeps results in memory only.
        model_name: the name recorded in the configuration (default: ``model.name_or_path``).
        batch_size: items per capture forward; ``max_rows``: rows (items x strengths x scopes) per replay forward.
        prompt_baseline: also score each item with the concept hint of every concept prepended (method "prompt").
        hints: concept -> hint text (default :data:`steerkit.tasks.splits.CONCEPT_HINTS` via ``hint_for``).
        mode: "auto" (prefix replay, verified against a full forward on the first batch, falling back when not
            exact), "replay", "replay_vision" (recompute the vision tower), or "full" (a fresh forward per cell).
        autocast: bfloat16 autocast (default: on for CUDA models kept in float32).
        rank, world_size: this process's shard of the items (default: accelerate's PartialState under
            ``accelerate launch``, else 0 of 1). Every rank writes into the same store.
        callback: called with a :class:`Progress` after each finished unit group; raising from it stops the sweep
            after flushing finished units (used to test resuming).

    Returns:
        Columns ``item_id, item_index, task, source, split, answer, n_choices, method, concept, layer, alpha, scope,
        pred, correct, logprobs, greedy_text, greedy_pred, greedy_correct``. Baseline rows: method "none"; prompting
        rows: method "prompt" with the hinted concept; both have layer -1, alpha 0.

    Example:
        >>> df = sweep(model, processor, items, {("meanshift", "counting"): vec}, layers=[2], alphas=[0.5, 1.0])
    """
    from steerkit.tasks.splits import CONCEPT_HINTS, hint_for, with_hint

    if not items:
        raise SteeringError("no items to sweep")
    if mode not in ("auto", "replay", "replay_vision", "full"):
        raise SteeringError(f"mode={mode!r}: use 'auto', 'replay', 'replay_vision' or 'full'")
    bad = [s for s in scopes if s not in ("image", "text", "both")]
    if bad:
        raise SteeringError(f"scopes {bad} unknown: use 'image', 'text' or 'both'")
    layers = [int(l) for l in layers]
    alphas = [float(a) for a in alphas]
    table = as_vector_table(vectors)
    for (m, c), vec in table.items():
        missing = [l for l in layers if l not in vec]
        if missing:
            raise SteeringError(f"vector {m}/{c} has no entry for layers {missing}; extract it at those layers")
    hint_table = dict(hints) if hints is not None else dict(CONCEPT_HINTS)
    concepts = sorted({c for _, c in table})
    hint_texts = {c: _hint(c, hint_table, hint_for) for c in concepts}
    # concepts without a hint get no prompting baseline (it would equal the plain baseline)
    hinted_concepts = [c for c in concepts if hint_texts[c]] if prompt_baseline else []

    adapter = adapter_for(model)
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    if rank is None or world_size is None:
        rank, world_size = _shard()
    fp = model_fingerprint(model, model_name)
    config = sweep_config(model_fp=fp, items=items, table=table, layers=layers, alphas=alphas, scopes=scopes,
                          prompt_prefix=prompt_prefix, hints=hint_texts, prompt_baseline=prompt_baseline)
    store: RunStore | None = None
    if out_dir is not None:
        store = RunStore.open(out_dir, config, name=run_name or fp["name"], rank=rank)
        done = store.done_units()
    else:
        done = set()
    memory: list[dict[str, Any]] = []

    def emit(rows: list[dict[str, Any]]) -> None:
        for r in rows:
            done.add(tuple(r[c] for c in UNIT_COLUMNS))
        (store.add(rows) if store is not None else memory.extend(rows))

    indexed = list(enumerate(items))[rank::world_size]
    scorer = _Scorer(processor, items)
    combos = [(s, a) for s in scopes for a in alphas]
    per_fwd = max(1, max_rows // max(1, batch_size))  # strengths x scopes per replay forward
    image_id = adapter.image_token_id(model)
    specials = adapter.special_ids(None, model)
    use_autocast = (device.type == "cuda" and dtype == torch.float32) if autocast is None else autocast
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if use_autocast else contextlib.nullcontext()
    atol = 1e-4 if dtype == torch.float32 and not use_autocast else 0.1
    chosen = mode
    chunks = _chunks(indexed, batch_size)
    units_total = len(chunks) * (1 + len(hinted_concepts) + len(table) * len(layers))
    units_done = 0
    since_flush = 0
    bar = tqdm(total=units_total, desc=f"sweep r{rank}", disable=not progress)
    try:
        for chunk_ix in chunks:
            idx = [i for i, _ in chunk_ix]
            chunk = [it for _, it in chunk_ix]
            meta = [_item_meta(it, i) for i, it in chunk_ix]

            def missing(method: str, concept: str, layer: int) -> list[int]:
                return [b for b, it in enumerate(chunk) if (it.id, method, concept, layer) not in done]

            todo = {(m, c, l): missing(m, c, l) for (m, c) in table for l in layers}
            todo = {k: v for k, v in todo.items() if v}
            need_base = missing(BASELINE, "", NO_LAYER)
            with torch.no_grad(), amp:
                inputs = _inputs(adapter, processor, chunk, prompt_prefix, device)
                masks = token_masks(inputs["input_ids"], inputs.get("attention_mask"), image_id, specials)
                # the replay steers through explicit positions, which steer() does not check: refuse a scope that
                # selects nothing in an item here, or its rows would silently equal the baseline
                for scope in scopes if table else ():
                    empty = [chunk[r].id for r in (~masks[scope].any(dim=1)).nonzero().flatten().tolist()]
                    if empty:
                        raise SteeringError(f"scope {scope!r} selects no token of items {empty[:10]} (e.g. 'image' on "
                                            "items without images); sweep those items with scopes 'text'/'both'")
                cap = None
                if todo or need_base:
                    cap = rp.capture(model, inputs, sorted({l for (_, _, l) in todo}) if chosen != "full" else [])
                    scored = scorer.score(cap.logits, chunk, 1)
                    emit([{**meta[b], "method": BASELINE, "concept": "", "layer": NO_LAYER, "alpha": 0.0,
                           "scope": "none", **scored[b]} for b in need_base])
                units_done += 1
                bar.update(1)
                for concept in hinted_concepts:
                    need = missing(PROMPTING, concept, NO_LAYER)
                    if need:
                        hinted = with_hint(chunk, hint_texts[concept])
                        logits = rp.last_logits(model, _inputs(adapter, processor, hinted, prompt_prefix, device))
                        scored = scorer.score(logits, chunk, 1)
                        emit([{**meta[b], "method": PROMPTING, "concept": concept, "layer": NO_LAYER,
                               "alpha": 0.0, "scope": "prompt", **scored[b]} for b in need])
                    units_done += 1
                    bar.update(1)
                b = len(chunk)
                for (method, concept), vec in table.items():
                    for layer in layers:
                        need = todo.get((method, concept, layer))
                        if need:
                            v = vec[layer]
                            rows: list[dict[str, Any]] = []
                            for g in range(0, len(combos), per_fwd):
                                group = combos[g: g + per_fwd]
                                r = len(group)
                                alpha = torch.tensor([a for _, a in group for _ in range(b)], device=device)
                                pos = torch.cat([masks[s] for s, _ in group])
                                if chosen == "auto":
                                    chosen = _verified_mode(model, inputs, cap, layer, v, alpha, pos, atol, b)
                                if chosen == "full":
                                    logits = rp.full_logits(model, inputs, layer, r, v, alpha, pos)
                                else:
                                    logits = rp.replay_logits(model, inputs, cap, layer, r, v, alpha, pos,
                                                              stub_vision=chosen == "replay")
                                scored = scorer.score(logits, chunk, r)
                                for k, (scope, a) in enumerate(group):
                                    for bb in need:
                                        rows.append({**meta[bb], "method": method, "concept": concept, "layer": layer,
                                                     "alpha": a, "scope": scope, **scored[k * b + bb]})
                            # a unit (item x condition) is emitted whole: every scope x strength at once
                            rows.sort(key=lambda row: (row["item_index"], scopes.index(row["scope"]), row["alpha"]))
                            emit(rows)
                            since_flush += 1
                        units_done += 1
                        bar.update(1)
                        if callback is not None:
                            callback(Progress(units_done, units_total, len(memory) + (store.pending if store else 0),
                                              chosen))
                        if store is not None and since_flush >= flush_every:
                            store.flush()
                            since_flush = 0
                del cap
            if store is not None:
                store.flush()
                since_flush = 0
    finally:
        bar.close()
        if store is not None:
            store.flush()  # finished units survive an exception (or KeyboardInterrupt) raised mid-sweep
    if store is not None:
        df = store.load()
        df.attrs["run_dir"] = str(store.path)
        df.attrs["mode"] = chosen
        return df
    df = pd.DataFrame(memory)
    df = df.sort_values(["item_index", "method", "concept", "layer", "scope", "alpha"], kind="stable")
    df = df.reset_index(drop=True)
    df.attrs["mode"] = chosen
    return df


# ------------------------------------------------------------------------------------------ naive protocol
@torch.no_grad()
def naive_protocol(
    model: torch.nn.Module,
    processor: Any,
    items: Sequence[Item],
    vector: Mapping[int, torch.Tensor] | None,
    layer: int,
    alpha: float,
    scope: str,
    *,
    prompt_prefix: str = PAPER_PREFIX,
) -> list[dict[str, Any]]:
    """The paper's protocol for one cell: per item (batch 1), steer the prefill, generate one token greedily,
    parse the letter. Also returns the letter-log-likelihood answer of a plain full forward, for comparisons.

    This is the reference the engine is tested against and the baseline of ``benchmarks/sweep_bench.py``.
    """
    from steerkit.steer import steer

    adapter = adapter_for(model)
    tok = adapter_for_tokenizer(processor)
    device = next(model.parameters()).device
    scorer = _Scorer(processor, items)
    out = []
    for it in items:
        inputs = _inputs(adapter, processor, [it], prompt_prefix, device)
        ctx = (steer(model, {layer: vector[layer]}, alpha=alpha, tokens=scope, when="prefill")  # type: ignore[arg-type]
               if vector is not None else contextlib.nullcontext())
        with ctx:
            gen = model.generate(**inputs, max_new_tokens=1, do_sample=False, pad_token_id=tok.pad_token_id)
            logits = rp.last_logits(model, inputs)
        text = tok.decode(gen[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        g = parse_answer(text, it.choices) or ""
        row = scorer.score(logits, [it], 1)[0]
        out.append({"item_id": it.id, "greedy_text": text, "greedy_pred": g, "greedy_correct": g == it.answer,
                    "pred": row["pred"], "correct": row["correct"], "logprobs": row["logprobs"]})
    return out


__all__ = ["sweep", "naive_protocol", "Progress", "as_vector_table", "sweep_config", "model_fingerprint",
           "items_fingerprint", "vector_fingerprint", "BASELINE", "PROMPTING", "NO_LAYER"]
