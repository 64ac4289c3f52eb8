"""The sweep engine: every item x (method, concept, layer, strength, scope) cell, plus the two baselines.

A sweep is ``plan -> executor -> scorer -> sink``:

1. **plan** (:mod:`steerkit.sweep.plan`): a :class:`~steerkit.sweep.plan.SweepRequest` (grid, batch sizes, prompt
   prefix, baselines, mode, autocast, shard, output) and :func:`~steerkit.sweep.plan.make_plan`: the vector table,
   the concepts with a prompting baseline, this process's item batches.
2. **executor** (:mod:`steerkit.sweep.executor`): per item batch one unsteered forward gives the baseline and
   records what a replay needs (:mod:`steerkit.sweep.replay`); per vector and layer, one forward per group of
   strengths and scopes whose rows repeat the items (per-row ``alpha`` and steered positions), recomputing only
   layers l.. .
3. **scorer** (:class:`steerkit.tasks.scoring.LetterScorer`): answer-letter log-likelihood at the last prompt
   position, and the greedy first token parsed as a letter, so the 1-token lower bound of the paper's protocol
   (generate one token greedily, parse the letter; the paper generates up to 20) is reproduced without generating.
   Items answered by generation (``answer="generate"``, or ``"auto"`` for items with an open form such as CLEVR
   counting; :meth:`~steerkit.sweep.plan.SweepRequest.answered_by`): per (vector, layer) unit group, one
   :func:`~steerkit.sweep.generate.steered_generate` call over its items x strengths x scopes; the baselines are the
   unsteered (or hinted) greedy generations; :func:`~steerkit.tasks.open_answer.score_generation` parses each.
4. **sink** (:class:`steerkit.sweep.store.RowSink`): finished units go to a :class:`~steerkit.sweep.store.RunStore`
   as they finish, so a killed sweep resumes where it stopped.

Example:
    >>> df = sweep(model, processor, items, vectors, layers=[1, 2], alphas=[0.5, 1.0], scopes=["image", "both"],
    ...            out_dir="outputs/sweeps", model_name="steerkit/organism")
    >>> df.groupby(["method", "layer", "alpha", "scope"]).correct.mean()
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from steerkit.errors import SteeringError
from steerkit.models.adapters import adapter_for
from steerkit.sweep import replay as rp
from steerkit.sweep.executor import Executor
from steerkit.sweep.fingerprint import model_fingerprint
from steerkit.sweep.generate import steered_generate, verified_generation_mode
from steerkit.sweep.plan import BASELINE, NO_LAYER, PROMPTING, Batch, SweepPlan, SweepRequest, make_plan
from steerkit.sweep.store import RowSink
from steerkit.tasks.open_answer import gold_answer, score_generation
from steerkit.tasks.schema import Item
from steerkit.tasks.scoring import PAPER_PREFIX, LetterScorer, item_image, item_inputs, parse_letter

Callback = Callable[["Progress"], None]
# the letter scorer's columns, in its order (generated-only rows hold None there, except ``correct``)
LETTER_COLUMNS = ("pred", "correct", "logprobs", "greedy_text", "greedy_pred", "greedy_correct")
# what rows of a sweep that generates add
GENERATION_COLUMNS = ("answered_by", "letter_correct", "gen_answer", "gen_text", "gen_pred", "gen_correct")


@dataclass
class Progress:
    """What a sweep callback sees after each finished unit group (one vector x layer x item batch)."""

    units_done: int
    units_total: int
    rows: int
    mode: str


def sweep(
    model: torch.nn.Module,
    processor: Any,
    items: Sequence[Item],
    vectors: Any,
    layers: Sequence[int],
    alphas: Sequence[float],
    scopes: Sequence[str] = ("image",),
    *,
    callback: Callback | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Score every item under every cell and the baselines; return one tidy row per item x cell.

    Args:
        model, processor: an MLLM (or text LM) and its processor, e.g. from :func:`steerkit.load_model`.
        items: :class:`~steerkit.tasks.schema.Item` s (each batch all with images, or all without): multiple-choice,
            and/or with an open form (``item.open``) answered by generation.
        vectors: ``{(method, concept): {layer: Tensor[d]}}``, ``{name: SteeringVector}`` or a list of vectors.
        layers, alphas, scopes: the grid (scopes among "image", "text", "both").
        callback: called with a :class:`Progress` after each finished unit group; raising from it stops the sweep
            after flushing finished units (used to test resuming).
        **options: the other fields of :class:`~steerkit.sweep.plan.SweepRequest`: ``out_dir`` (root of the
            results store; rows are persisted under ``out_dir/<run>-<hash>/`` as units finish and a rerun resumes;
            None keeps them in memory), ``model_name``, ``run_name``, ``batch_size`` (items per capture forward),
            ``max_rows`` (rows per replay forward), ``prompt_prefix``, ``prompt_baseline`` (also score each item
            with every concept's hint prepended, method "prompt"), ``hints``, ``mode`` ("auto", "replay",
            "replay_vision", "full"), ``autocast``, ``rank``/``world_size`` (default: accelerate's PartialState
            under ``accelerate launch``, else 0 of 1; every rank writes into the same store), ``flush_every``,
            ``progress``, ``pairs``, ``cells``; and for generation ``answer`` ("auto" (default), "letter",
            "generate", "both"; see :attr:`~steerkit.sweep.plan.SweepRequest.answer`), ``max_new_tokens``,
            ``stop_strings``, ``when`` ("prefill" or "all"); ``exclude_last_prompt_token`` (the paper's text/both
            masks).

    Returns:
        Columns ``item_id, item_index, task, source, split, answer, n_choices, method, concept, layer, alpha, scope,
        pred, correct, logprobs, greedy_text, greedy_pred, greedy_correct``. Baseline rows: method "none"; prompting
        rows: method "prompt" with the hinted concept; both have layer -1, alpha 0. When some item is generated,
        every row also has ``answered_by`` ("letter", "generate" or "both"), ``letter_correct`` (the letter
        scorer's verdict, None if not letter-scored), ``gen_answer`` (the gold answer generation is scored against:
        the open answer, else the letter), ``gen_text`` (the greedy generation), ``gen_pred`` (its parsed answer, ""
        when none) and ``gen_correct`` (None where not generated); for generated rows ``correct`` is
        ``gen_correct`` (so reports read it unchanged), and rows generated only hold None in the letter columns.
        ``df.attrs["mode"]`` is the executor mode used (``df.attrs["generation_mode"]`` the generation's),
        ``df.attrs["run_dir"]`` the run folder (with ``out_dir``).

    Example:
        >>> df = sweep(model, processor, items, {("meanshift", "counting"): vec}, layers=[2], alphas=[0.5, 1.0])
    """
    request = SweepRequest(layers=tuple(layers), alphas=tuple(alphas), scopes=tuple(scopes), **options)
    return run_sweep(model, processor, items, vectors, request, callback=callback)


def run_sweep(model: torch.nn.Module, processor: Any, items: Sequence[Item], vectors: Any, request: SweepRequest,
              *, callback: Callback | None = None) -> pd.DataFrame:
    """:func:`sweep` for a ready :class:`~steerkit.sweep.plan.SweepRequest`: plan, then per batch execute, score
    and emit into the sink.

    Example:
        >>> df = run_sweep(model, processor, items, vectors, SweepRequest(layers=(2,), alphas=(1.0,)))
    """
    plan = make_plan(items, vectors, request)
    executor = Executor(model, processor, request)
    fp = model_fingerprint(model, request.model_name)
    sink = RowSink.open(request.out_dir, plan.config(fp, items), name=request.run_name or fp["name"],
                        rank=plan.rank, flush_every=request.flush_every)
    lettered = [it for it in items if request.answered_by(it) != "generate"]
    # built for every letter-scored item of the sweep (not only this rank's), so every rank reads letters alike;
    # a sweep that only generates needs no single-token letters from the tokenizer
    scorer = LetterScorer.for_items(processor, lettered) if lettered else None
    gen = _Generation(model, processor, request, executor) if plan.generates else None
    counter = _Counter(plan, sink, executor, callback,
                       tqdm(total=plan.units_total, desc=f"sweep r{plan.rank}", disable=not request.progress))
    try:
        for batch in plan.batches:
            _sweep_batch(plan, batch, executor, scorer, gen, sink, counter)
            sink.flush()
    finally:
        counter.bar.close()
        sink.flush()  # finished units survive an exception (or KeyboardInterrupt) raised mid-sweep
    df = sink.result()
    df.attrs["mode"] = executor.mode
    if gen is not None:
        df.attrs["generation_mode"] = gen.mode
    return df


@dataclass
class _Counter:
    """Progress bookkeeping of one sweep: the bar, the unit count, the callback."""

    plan: SweepPlan
    sink: RowSink
    executor: Executor
    callback: Callback | None
    bar: Any
    units_done: int = 0

    def step(self, report: bool = False) -> None:
        self.units_done += 1
        self.bar.update(1)
        if report and self.callback is not None:
            self.callback(Progress(self.units_done, self.plan.units_total, self.sink.rows, self.executor.mode))


Generated = dict[tuple[int, int], dict[str, Any]]
"""``{(k, b): score_generation(...)}``: item ``b`` of the batch under ``group[k]``."""


class _Generation:
    """The generated answers of one sweep: unsteered or hinted (baselines) and steered (one batch per unit group)."""

    def __init__(self, model: torch.nn.Module, processor: Any, request: SweepRequest, executor: Executor):
        self.model, self.processor, self.request = model, processor, request
        # "auto" becomes "replay" or "full" on the first steered group (verified_generation_mode)
        self.mode = request.mode
        self.key = ("generate", str(executor.device), str(next(model.parameters()).dtype), executor.use_autocast)

    def _images(self, batch: Batch) -> list[Any] | None:
        images = [item_image(it) for it in batch.items]
        if all(im is None for im in images):
            return None
        if any(im is None for im in images):
            raise SteeringError("an item batch mixes items with and without images; sweep them separately")
        return images

    def plain(self, batch: Batch, positions: Sequence[int], hint: str = "") -> Generated:
        """The greedy generation of the items at ``positions`` without steering (with ``hint``: the prompting
        baseline), in one ``generate`` batch."""
        from steerkit.models.generation import generate_text

        prompts = batch.generation_prompts(self.request.prompt_prefix, hint)
        images = self._images(batch)
        texts = generate_text(self.model, self.processor, [prompts[b] for b in positions],
                              None if images is None else [images[b] for b in positions],
                              max_new_tokens=self.request.max_new_tokens, temperature=0.0,
                              batch_size=max(1, len(positions)), stop_strings=self.request.stop_strings)
        return {(0, b): score_generation(batch.items[b], t) for b, t in zip(positions, texts)}

    def steered(self, batch: Batch, positions: Sequence[int], vector: Any, layer: int,
                group: Sequence[tuple[str, float]]) -> Generated:
        """Every (scope, strength) of ``group`` for the items at ``positions``, in one
        :func:`~steerkit.sweep.generate.steered_generate` call."""
        r = self.request
        rows = [(b, a, scope) for scope, a in group for b in positions]

        def run(mode: str) -> list[str]:
            return steered_generate(self.model, self.processor, batch.generation_prompts(r.prompt_prefix),
                                    self._images(batch), vector, layer, rows, max_new_tokens=r.max_new_tokens,
                                    when=r.when, stop_strings=r.stop_strings,  # type: ignore[arg-type]
                                    batch_size=len(rows), mode=mode,  # type: ignore[arg-type]
                                    exclude_last_prompt_token=r.exclude_last_prompt_token)

        if self.mode == "auto":
            self.mode, texts = verified_generation_mode(self.model, run, self.key)
        else:
            texts = run(self.mode)
        per = len(positions)
        return {(k // per, b): score_generation(batch.items[b], t) for k, ((b, _, _), t) in enumerate(zip(rows, texts))}


def _rows(plan: SweepPlan, batch: Batch, positions: Sequence[int], method: str, concept: str, layer: int,
          group: Sequence[tuple[str, float]], letter: Sequence[dict[str, Any]] | None,
          generated: Generated | None) -> list[dict[str, Any]]:
    """The rows of the items at ``positions`` under each (scope, strength) of ``group``: ``letter[k * B + b]`` scores
    item ``b`` under ``group[k]`` by letter, ``generated[(k, b)]`` by generation (None: not answered that way)."""
    n = len(batch.items)
    out = []
    for k, (scope, a) in enumerate(group):
        for b in positions:
            row = {**batch.meta(b), "method": method, "concept": concept, "layer": layer, "alpha": a, "scope": scope}
            if not plan.generates:  # a letter-only sweep: the rows it always had
                out.append({**row, **letter[k * n + b]})  # type: ignore[index]
                continue
            scored = letter[k * n + b] if letter is not None else dict.fromkeys(LETTER_COLUMNS)
            row.update({c: scored[c] for c in LETTER_COLUMNS})
            gen = generated[(k, b)] if generated is not None else dict.fromkeys(("gen_text", "gen_pred", "gen_correct"))
            row.update(answered_by=batch.answered_by, letter_correct=scored["correct"],
                       gen_answer=gold_answer(batch.items[b]) if generated is not None else None, **gen)
            if generated is not None:
                row["correct"] = gen["gen_correct"]
            out.append(row)
    return out


def _sweep_batch(plan: SweepPlan, batch: Batch, executor: Executor, scorer: LetterScorer | None,
                 gen: _Generation | None, sink: RowSink, counter: _Counter) -> None:
    """Every unit group of one item batch: the baseline, the prompting baselines, each vector x layer; each scored
    by letter (one forward), by generation (one batch), or both, as the batch's items are answered."""
    request = plan.request
    items = list(batch.items)
    todo = plan.steered_todo(batch, sink.done)
    need_base = batch.missing(sink.done, BASELINE, "", NO_LAYER)
    letters = scorer if batch.letters else None
    generate = gen if batch.generates else None
    with torch.no_grad(), executor.autocast():
        cap = inputs = masks = None
        if letters is not None:
            inputs = executor.inputs(items)
            masks = executor.masks(inputs, items, check=bool(plan.table))
            if todo or need_base:
                cap = executor.capture(inputs, sorted({l for (_, _, l) in todo}))
        if need_base:
            scored = letters.score(cap.logits, items) if letters is not None and cap is not None else None
            sink.emit(_rows(plan, batch, need_base, BASELINE, "", NO_LAYER, [("none", 0.0)], scored,
                            generate.plain(batch, need_base) if generate is not None else None))
        counter.step()
        for concept in plan.hinted_for(batch):
            need = batch.missing(sink.done, PROMPTING, concept, NO_LAYER)
            if need:
                hint = plan.hints[concept]
                scored = letters.score(executor.hinted_logits(items, hint), items) if letters is not None else None
                sink.emit(_rows(plan, batch, need, PROMPTING, concept, NO_LAYER, [("prompt", 0.0)], scored,
                                generate.plain(batch, need, hint) if generate is not None else None))
            counter.step()
        task = items[0].task
        for method, concept in plan.vectors_for(batch):
            vec = plan.table[(method, concept)]
            for layer in plan.layers_for(batch, method, concept):
                need = todo.get((method, concept, layer))
                if need:
                    rows: list[dict[str, Any]] = []
                    for group in request.groups_for(task, method, concept, layer):
                        scored = None
                        if letters is not None:  # the letter scorer's forward, then the generation
                            logits = executor.steered_logits(inputs, cap, layer, vec[layer], group, masks)
                            scored = letters.score(logits, items, len(group))
                        generated = generate.steered(batch, need, vec, layer, group) if generate is not None else None
                        rows += _rows(plan, batch, need, method, concept, layer, group, scored, generated)
                    # a unit (item x condition) is emitted whole: every scope x strength at once
                    rows.sort(key=lambda row: (row["item_index"], request.scopes.index(row["scope"]), row["alpha"]))
                    sink.emit(rows)
                    sink.unit_finished()
                counter.step(report=True)
                sink.flush_if_due()
        del cap


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
    exclude_last_prompt_token: bool = False,
) -> list[dict[str, Any]]:
    """The 1-token lower bound of the paper's protocol for one cell: per item (batch 1), steer the prefill,
    generate one token greedily, parse the letter. Also returns the letter-log-likelihood answer of a plain full
    forward, for comparisons.

    This is the reference the engine is tested against. The paper's full loop (processor per item, 20 new tokens
    stopping at EOS, strict parsing, its text/both masks) is the baseline of ``benchmarks/sweep_bench.py``.
    """
    from steerkit.steer import steer

    adapter = adapter_for(model)
    scorer = LetterScorer.for_items(processor, items)
    tok = scorer.tokenizer
    device = next(model.parameters()).device
    out = []
    for it in items:
        inputs = item_inputs(adapter, processor, [it], prompt_prefix, device)
        ctx = (steer(model, {layer: vector[layer]}, alpha=alpha, tokens=scope, when="prefill",  # type: ignore[arg-type]
                     exclude_last_prompt_token=exclude_last_prompt_token)
               if vector is not None else contextlib.nullcontext())
        with ctx:
            gen = model.generate(**inputs, max_new_tokens=1, do_sample=False, pad_token_id=tok.pad_token_id)
            logits = rp.last_logits(model, inputs)
        text = tok.decode(gen[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        g = parse_letter(text, it.choices) or ""
        row = scorer.score(logits, [it], 1)[0]
        out.append({"item_id": it.id, "greedy_text": text, "greedy_pred": g, "greedy_correct": g == it.answer,
                    "pred": row["pred"], "correct": row["correct"], "logprobs": row["logprobs"]})
    return out


__all__ = ["sweep", "run_sweep", "naive_protocol", "Progress", "SweepRequest", "BASELINE", "PROMPTING", "NO_LAYER",
           "LETTER_COLUMNS", "GENERATION_COLUMNS"]
