"""What a sweep will do, decided before any forward: the request, the vectors, this process's item batches, units.

A sweep is ``plan -> executor -> scorer -> sink``:

* :class:`SweepRequest` (this module): the grid, batch sizes, prompt prefix, baselines, mode, autocast, shard and
  where rows go -- one frozen value instead of a long parameter list.
* :class:`SweepPlan` (:func:`make_plan`): the ``(method, concept)`` vector table, the concepts that get a
  prompting baseline, this process's item batches and the configuration whose hash names the run folder.
  A *unit* is one item under one condition, ``(item_id, method, concept, layer)``; a batch holds
  ``1 + len(hinted) + len(table) * len(layers)`` unit groups (baseline, prompting baselines, steered cells), and
  items answered the same way ("letter", "generate" or "both"), so no forward or generation is wasted.
* :class:`~steerkit.sweep.executor.Executor`: the forwards (capture, replay or full).
* :class:`~steerkit.tasks.scoring.LetterScorer`: logits -> answers; for items answered by generation
  (:attr:`SweepRequest.answer`, :meth:`SweepRequest.answered_by`), :func:`steerkit.sweep.generate.steered_generate`
  and :func:`steerkit.tasks.open_answer.score_generation`.
* :class:`~steerkit.sweep.store.RowSink`: rows -> the resumable :class:`~steerkit.sweep.store.RunStore`.

Example:
    >>> request = SweepRequest(layers=(1, 2), alphas=(0.5, 1.0), scopes=("image",), batch_size=4)
    >>> plan = make_plan(items, vectors, request)
    >>> [len(b.items) for b in plan.batches], plan.units_per_batch   # 1 baseline + hints + vectors x layers
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from steerkit.errors import SteeringError
from steerkit.sweep.fingerprint import items_fingerprint, vector_fingerprint
from steerkit.tasks.open_answer import generation_prompt
from steerkit.tasks.schema import Item
from steerkit.tasks.scoring import PAPER_PREFIX

BASELINE = "none"  # method of the unsteered rows
PROMPTING = "prompt"  # method of the prompting-baseline rows (a concept hint prepended)
NO_LAYER = -1
ENGINE_VERSION = 1  # bump when the rows a configuration produces change meaning
SCOPES = ("image", "text", "both")
MODES = ("auto", "replay", "replay_vision", "full")
ANSWERS = ("auto", "letter", "generate", "both")
WHENS = ("prefill", "all")

VectorTable = dict[tuple[str, str], Mapping[int, torch.Tensor]]


def shard_of_process() -> tuple[int, int]:
    """(rank, world size) of this process: accelerate's PartialState under ``accelerate launch``/torchrun
    (``WORLD_SIZE`` > 1), else (0, 1).

    Example:
        >>> shard_of_process()
        (0, 1)
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState

        # without CUDA, accelerate only recognises a multi-process CPU launch when told cpu=True (gloo backend)
        state = PartialState(cpu=not torch.cuda.is_available())
        return int(state.process_index), int(state.num_processes)
    return 0, 1


@dataclass(frozen=True)
class SweepRequest:
    """Everything that describes one sweep except the model, items and vectors (see :func:`steerkit.sweep.sweep`).

    Attributes:
        layers, alphas, scopes: the grid (scopes among "image", "text", "both").
        batch_size: items per capture forward; ``max_rows``: rows (items x strengths x scopes) per replay forward.
        prompt_prefix: text before every item's prompt.
        prompt_baseline: also score each item with the hint of every concept prepended (method "prompt").
        hints: concept -> hint text (default :data:`steerkit.tasks.splits.CONCEPT_HINTS`).
        mode: "auto", "replay", "replay_vision" or "full" (see :mod:`steerkit.sweep.executor`).
        autocast: bfloat16 autocast (None: on for CUDA models kept in float32).
        rank, world_size: this process's shard of the items (None: :func:`shard_of_process`).
        out_dir: root of the results store (None: rows kept in memory); ``model_name``: the name recorded in the
            configuration (default ``model.name_or_path``); ``run_name``: the run folder's prefix.
        flush_every: write a part file after this many steered unit groups (and after every item batch).
        progress: show a tqdm bar.
        pairs: ``{task: concepts}``: steer each task's items only with the vectors of its concepts (the diagonal of
            the paper's task x concept table, at a fraction of the cost); None steers every item with every vector.
            Item batches are then cut at task boundaries, so no forward computes rows that are not wanted, and a
            task's prompting baseline uses only its concepts' hints.
        cells: ``{task: [(method, concept, layer, scope, alpha), ...]}``: score each task's items only under these
            cells instead of the grid (how :func:`steerkit.sweep.confirm.select_and_confirm` measures the cells
            chosen on train on the test items: one capture and one row per chosen cell per item). The pairs become
            the concepts of each task's cells; ``layers``/``alphas``/``scopes`` must cover the cells.
        answer: how items are answered (:meth:`answered_by`): "letter" (answer-letter log-likelihood), "generate"
            (greedy generation, parsed), "both", or "auto" (default): per item, "letter" for multiple-choice items
            and ``item.open.auto`` ("generate" or "both") for items with an open form
            (:mod:`steerkit.tasks.open_answer`; e.g. CLEVR counting). A generated item is prompted with its open
            form (else ``prompt_prefix`` + its multiple-choice prompt) and read by its parser (else as a letter).
        max_new_tokens, stop_strings: generation length and strings that end a row early (as ``generate``'s).
        when: "prefill" steers the prompt pass only; "all" also every generated token in the row's scope.
        exclude_last_prompt_token: leave each prompt's last non-special token out of the "text" and "both" scopes,
            as the textual-steering paper's evaluation masks do (``steer(..., exclude_last_prompt_token=True)``).

    Example:
        >>> SweepRequest(layers=[2], alphas=[0.5, 1.0]).combos
        (('image', 0.5), ('image', 1.0))
    """

    layers: tuple[int, ...]
    alphas: tuple[float, ...]
    scopes: tuple[str, ...] = ("image",)
    batch_size: int = 8
    max_rows: int = 256
    prompt_prefix: str = PAPER_PREFIX
    prompt_baseline: bool = True
    hints: Mapping[str, str] | None = None
    mode: str = "auto"
    autocast: bool | None = None
    rank: int | None = None
    world_size: int | None = None
    out_dir: str | os.PathLike[str] | None = None
    model_name: str | None = None
    run_name: str | None = None
    flush_every: int = 64
    progress: bool = True
    pairs: Mapping[str, Sequence[str]] | None = None
    cells: Mapping[str, Sequence[tuple[str, str, int, str, float]]] | None = None
    answer: str = "auto"
    max_new_tokens: int = 16
    stop_strings: tuple[str, ...] | None = None
    when: str = "prefill"
    exclude_last_prompt_token: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise SteeringError(f"mode={self.mode!r}: use 'auto', 'replay', 'replay_vision' or 'full'")
        if self.answer not in ANSWERS:
            raise SteeringError(f"answer={self.answer!r}: use one of {list(ANSWERS)}")
        if self.when not in WHENS:
            raise SteeringError(f"when={self.when!r}: use 'prefill' (steer the prompt) or 'all' (also new tokens)")
        if int(self.max_new_tokens) < 1:
            raise SteeringError(f"max_new_tokens={self.max_new_tokens}: generate at least 1 token")
        object.__setattr__(self, "max_new_tokens", int(self.max_new_tokens))
        if isinstance(self.stop_strings, str):
            raise SteeringError(f"stop_strings={self.stop_strings!r}: give a list of strings")
        object.__setattr__(self, "stop_strings", tuple(str(x) for x in self.stop_strings or ()) or None)
        bad = [s for s in self.scopes if s not in SCOPES]
        if bad:
            raise SteeringError(f"scopes {bad} unknown: use 'image', 'text' or 'both'")
        # normalised once, so every later step (and the configuration hash) sees plain ints, floats and tuples
        object.__setattr__(self, "layers", tuple(int(l) for l in self.layers))
        object.__setattr__(self, "alphas", tuple(float(a) for a in self.alphas))
        object.__setattr__(self, "scopes", tuple(self.scopes))
        if self.cells is not None:
            cells = {str(t): tuple(sorted({(str(m), str(c), int(l), str(s), float(a)) for m, c, l, s, a in cs}))
                     for t, cs in sorted(self.cells.items())}
            outside = sorted({cell for cs in cells.values() for cell in cs if cell[2] not in self.layers
                              or cell[3] not in self.scopes or cell[4] not in self.alphas})
            if outside:
                raise SteeringError(f"cells {outside[:3]} lie outside the grid (layers {self.layers}, alphas "
                                    f"{self.alphas}, scopes {self.scopes}); widen the grid to cover them")
            object.__setattr__(self, "cells", cells)
            object.__setattr__(self, "pairs", {t: sorted({c for _, c, *_ in cs}) for t, cs in cells.items()})
        if self.pairs is not None:
            object.__setattr__(self, "pairs", {str(t): tuple(sorted(str(c) for c in cs))
                                               for t, cs in sorted(self.pairs.items())})

    def answered_by(self, item: Item) -> str:
        """How ``item`` is answered under this request: "letter", "generate" or "both" (see :attr:`answer`).

        Raises :class:`SteeringError` for an item without choices asked to be scored by letter.
        """
        how = self.answer
        if how == "auto":
            how = "letter" if item.open is None else item.open.auto
        if how != "generate" and not item.choices:
            raise SteeringError(f"item {item.id!r} has no choices, so it cannot be scored by letter (answer="
                                f"{self.answer!r}); sweep it with answer 'generate' or 'auto'")
        return how

    def steers(self, task: str, concept: str) -> bool:
        """Whether items of ``task`` are steered with vectors of ``concept`` (always, without :attr:`pairs`)."""
        return self.pairs is None or concept in self.pairs.get(task, ())

    def combos_for(self, task: str, method: str, concept: str, layer: int) -> tuple[tuple[str, float], ...]:
        """The (scope, strength) rows of one steered unit of ``task``: the grid's, or the task's :attr:`cells`."""
        if self.cells is None:
            return self.combos
        return tuple((s, a) for m, c, l, s, a in self.cells.get(task, ()) if (m, c, l) == (method, concept, layer))

    def groups_for(self, task: str, method: str, concept: str, layer: int) -> list[tuple[tuple[str, float], ...]]:
        """:meth:`combos_for` split into the groups of one forward each."""
        combos, n = self.combos_for(task, method, concept, layer), self.combos_per_forward
        return [combos[g: g + n] for g in range(0, len(combos), n)]

    def shard(self) -> tuple[int, int]:
        """(rank, world size): the requested ones, else :func:`shard_of_process`."""
        if self.rank is None or self.world_size is None:
            return shard_of_process()
        return int(self.rank), int(self.world_size)

    @property
    def combos(self) -> tuple[tuple[str, float], ...]:
        """Every (scope, strength) of the grid, scope-major: the rows one steered unit holds per item."""
        return tuple((s, a) for s in self.scopes for a in self.alphas)

    @property
    def combos_per_forward(self) -> int:
        """How many (scope, strength) combinations one replay forward tiles (``max_rows`` // ``batch_size``)."""
        return max(1, self.max_rows // max(1, self.batch_size))


def as_vector_table(vectors: Any) -> VectorTable:
    """``{(method, concept): {layer: tensor}}`` from the accepted forms of ``vectors``.

    Accepted: such a mapping; ``{name: vector}`` (method from ``vector.method`` or "vector", concept from
    ``vector.concept`` or the name); or a sequence of ``SteeringVector``-like objects with ``method`` and
    ``concept`` attributes.
    """
    table: VectorTable = {}
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


def hint_text(concept: str, hints: Mapping[str, str], hint_for: Callable[..., str]) -> str:
    """The hint of a concept; vector concepts are snake_case ("spatial_relation"), hint keys are phrases
    ("spatial relationship"): try the name, then with spaces, then the one key it begins."""
    found = hint_for(concept, hints) or hint_for(concept.replace("_", " "), hints)
    if found:
        return found
    keys = [k for k in hints if k.startswith(concept.replace("_", " "))]
    return hints[keys[0]] if len(keys) == 1 else ""


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
    pairs: Mapping[str, Sequence[str]] | None = None,
    cells: Mapping[str, Sequence[tuple[Any, ...]]] | None = None,
    generation: Mapping[str, Any] | None = None,
    exclude_last_prompt_token: bool = False,
) -> dict[str, Any]:
    """The dictionary whose hash names a run folder: everything that changes the rows, nothing that does not.

    ``generation`` (:func:`generation_config`) is present only when some item is generated, so a letter sweep keeps
    the run folder it had before generation existed.
    """
    extra: dict[str, Any] = {} if pairs is None else {"pairs": {t: list(cs) for t, cs in sorted(pairs.items())}}
    if cells is not None:
        extra["cells"] = {t: [list(c) for c in cs] for t, cs in sorted(cells.items())}
    if generation is not None:
        extra["generation"] = dict(generation)
    if exclude_last_prompt_token:  # only when set: runs without it keep their folders
        extra["exclude_last_prompt_token"] = True
    return extra | {
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


def generation_config(items: Sequence[Item], request: SweepRequest) -> dict[str, Any] | None:
    """What changes generated rows: the generation settings and, per item, how it is answered and its generation
    prompt, gold answer and parser (the item fingerprint covers the multiple-choice form only); None when no item
    is generated."""
    hows = [request.answered_by(it) for it in items]
    if all(h == "letter" for h in hows):
        return None
    h = hashlib.sha256()
    for it, how in zip(items, hows):
        spec = (it.open.prompt, it.open.answer, it.open.parser) if it.open is not None else None
        h.update(repr((it.id, how, spec)).encode())
    return {"max_new_tokens": request.max_new_tokens, "when": request.when,
            "stop_strings": list(request.stop_strings or ()), "items": h.hexdigest()}


@dataclass(frozen=True)
class Batch:
    """One item batch of this process: the items, their indices in the full item list, and how they are answered
    ("letter", "generate" or "both"; one way per batch)."""

    indices: tuple[int, ...]
    items: tuple[Item, ...]
    answered_by: str = "letter"

    @property
    def letters(self) -> bool:
        """Whether the batch's items are scored by the letter scorer."""
        return self.answered_by != "generate"

    @property
    def generates(self) -> bool:
        """Whether the batch's items are answered by generation."""
        return self.answered_by != "letter"

    def generation_prompts(self, prefix: str, hint: str = "") -> list[str]:
        """The prompts generation sees (:func:`steerkit.tasks.open_answer.generation_prompt`), optionally hinted."""
        return [generation_prompt(it, prefix, hint) for it in self.items]

    def meta(self, b: int) -> dict[str, Any]:
        """The item columns of every row of item ``b`` of the batch."""
        it = self.items[b]
        return {"item_id": it.id, "item_index": self.indices[b], "task": it.task, "source": it.source,
                "split": it.split, "answer": it.answer, "n_choices": len(it.choices)}

    def missing(self, done: set[tuple[Any, ...]], method: str, concept: str, layer: int) -> list[int]:
        """Positions in the batch of the items whose unit ``(item, method, concept, layer)`` is not ``done``."""
        return [b for b, it in enumerate(self.items) if (it.id, method, concept, layer) not in done]


@dataclass(frozen=True)
class SweepPlan:
    """The work of one process: vectors, hinted concepts, item batches (see the module docstring)."""

    request: SweepRequest
    table: VectorTable
    hints: dict[str, str]
    hinted: tuple[str, ...]
    batches: tuple[Batch, ...]
    rank: int
    world_size: int
    generation: dict[str, Any] | None = None

    @property
    def generates(self) -> bool:
        """Whether any item of the sweep (any rank) is answered by generation: its rows then carry the generation
        columns (see :func:`steerkit.sweep.engine.sweep`)."""
        return self.generation is not None

    def vectors_for(self, batch: Batch) -> list[tuple[str, str]]:
        """The ``(method, concept)`` vectors that steer this batch's items (a batch holds one task under
        :attr:`SweepRequest.pairs`)."""
        task = batch.items[0].task
        return [(m, c) for (m, c) in self.table if self.request.steers(task, c)]

    def hinted_for(self, batch: Batch) -> list[str]:
        """The concepts whose hint is a prompting baseline of this batch's items."""
        task = batch.items[0].task
        return [c for c in self.hinted if self.request.steers(task, c)]

    def layers_for(self, batch: Batch, method: str, concept: str) -> list[int]:
        """The layers a vector steers this batch at: the grid's, or those of the task's cells."""
        task = batch.items[0].task
        return [l for l in self.request.layers if self.request.combos_for(task, method, concept, l)]

    def units_of(self, batch: Batch) -> int:
        """Unit groups of one batch: the baseline, one per hinted concept, one per steering vector x layer."""
        return 1 + len(self.hinted_for(batch)) + sum(len(self.layers_for(batch, m, c)) for m, c in
                                                       self.vectors_for(batch))

    @property
    def units_per_batch(self) -> int:
        """Unit groups of a batch steered by every vector (the most a batch holds)."""
        return 1 + len(self.hinted) + len(self.table) * len(self.request.layers)

    @property
    def units_total(self) -> int:
        """Unit groups of this process (what progress counts)."""
        return sum(self.units_of(b) for b in self.batches)

    def steered_todo(self, batch: Batch, done: set[tuple[Any, ...]]) -> dict[tuple[str, str, int], list[int]]:
        """``{(method, concept, layer): batch positions}`` of the steered units still to compute."""
        todo = {(m, c, l): batch.missing(done, m, c, l) for (m, c) in self.vectors_for(batch)
                for l in self.layers_for(batch, m, c)}
        return {k: v for k, v in todo.items() if v}

    def config(self, model_fp: Mapping[str, Any], items: Sequence[Item]) -> dict[str, Any]:
        """The configuration whose hash names the run folder (:func:`sweep_config`)."""
        r = self.request
        return sweep_config(model_fp=model_fp, items=items, table=self.table, layers=r.layers, alphas=r.alphas,
                            scopes=r.scopes, prompt_prefix=r.prompt_prefix, hints=self.hints,
                            prompt_baseline=r.prompt_baseline, pairs=r.pairs, cells=r.cells,
                            generation=self.generation, exclude_last_prompt_token=r.exclude_last_prompt_token)


def make_plan(items: Sequence[Item], vectors: Any, request: SweepRequest) -> SweepPlan:
    """Check the request against the items and vectors, and cut this process's shard of items into batches.

    Raises :class:`SteeringError` with what to do when there are no items or a vector lacks a requested layer.
    """
    from steerkit.tasks.splits import CONCEPT_HINTS, hint_for

    if not items:
        raise SteeringError("no items to sweep")
    table = as_vector_table(vectors)
    for (m, c), vec in table.items():
        missing = [l for l in request.layers if l not in vec]
        if missing:
            raise SteeringError(f"vector {m}/{c} has no entry for layers {missing}; extract it at those layers")
    hint_table = dict(request.hints) if request.hints is not None else dict(CONCEPT_HINTS)
    concepts = sorted({c for _, c in table})
    hints = {c: hint_text(c, hint_table, hint_for) for c in concepts}
    # concepts without a hint get no prompting baseline (it would equal the plain baseline)
    hinted = tuple(c for c in concepts if hints[c]) if request.prompt_baseline else ()
    if request.pairs is not None:
        unknown = sorted({c for cs in request.pairs.values() for c in cs} - set(concepts))
        if unknown:
            raise SteeringError(f"pairs name concepts {unknown} that no vector has; the vectors' concepts are "
                                f"{concepts}")
        unpaired = sorted({it.task for it in items} - set(request.pairs))
        if unpaired and request.cells is not None:
            raise SteeringError(f"cells has no entry for tasks {unpaired}; give each task its cells, or drop its items")
        if unpaired:
            raise SteeringError(f"pairs has no entry for tasks {unpaired}; give each task its concepts (an empty "
                                "list sweeps only its baselines)")
    generation = generation_config(items, request)  # also checks every item can be answered as asked
    rank, world_size = request.shard()
    indexed = list(enumerate(items))[rank::world_size]
    size = request.batch_size
    # with pairs, a batch holds one task, so its steered forwards compute only rows that are wanted; a batch holds
    # items answered one way, so a letter forward or a generation never runs for items that do not want it
    runs: list[list[tuple[int, Item]]] = []
    for pair in indexed:
        last = runs[-1][-1][1] if runs else None
        if (last is not None and len(runs[-1]) < size and (request.pairs is None or last.task == pair[1].task)
                and request.answered_by(last) == request.answered_by(pair[1])):
            runs[-1].append(pair)
        else:
            runs.append([pair])
    batches = tuple(Batch(tuple(i for i, _ in run), tuple(it for _, it in run), request.answered_by(run[0][1]))
                    for run in runs)
    return SweepPlan(request, table, hints, hinted, batches, rank, world_size, generation)


__all__ = ["SweepRequest", "SweepPlan", "Batch", "make_plan", "as_vector_table", "sweep_config", "generation_config",
           "hint_text", "shard_of_process", "BASELINE", "PROMPTING", "NO_LAYER", "ENGINE_VERSION", "SCOPES", "MODES",
           "ANSWERS", "WHENS"]
