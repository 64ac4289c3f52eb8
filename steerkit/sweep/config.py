"""Sweep configuration files (YAML) for ``steerkit sweep CONFIG.yaml`` and ``run_config``.

Example ``sweep.yaml``::

    model: steerkit/organism          # any load_model() name: a profile (steerkit/organism), tiny/llava, a hub id or folder
    dtype: float32                    # optional: bfloat16 on GPU
    device: cpu
    items:
      source: model                   # model (its profile's items) | a profile name (organism) | synth | cvbench | gap
                                      # | clevr (clevr_count_70k: hub id or local parquet in `path`) | superclevr
                                      #   (R1-V counting JSONL in `path`); clevr/superclevr: `n` = first n rows
      tasks: [Count, Relation]
      n: 40                           # per task
      seed: 0
      split: stratified               # none | paper | stratified (train/test for selection/confirmation)
      test_frac: 0.3                  # stratified: share of items per stratum held out for confirmation
                                      # source gap: the modality-gap problems as open items (see load_items):
                                      #   problems (organism | synthetic | gsm8k | auto | a profile's name), n,
                                      #   seed, problem_split (test), mode (instruction_image), path, render
    vectors:
      paths: []                       # saved SteeringVector folders, and/or:
      extract:
        text_model: steerkit/organism-text  # optional; default: the text LM of the model's profile
        corpus_dir: steerkit/data/concepts/organism  # optional; default: the shipped English corpora
        concepts: [counting, spatial_relation]
        methods: [mean_shift]
        n: 60                         # sentences per concept
      match_norm: mean_shift          # optional: rescale other methods' vectors per layer to this method's norms
    grid:
      layers: [1, 2, 3]
      alphas: [0.5, 1.0, 2.0]
      scopes: [image, both]
    out: outputs/sweeps               # results store root; the run folder is named by the config hash
    batch_size: 8
    prompt_baseline: true
    mode: auto
    autocast: null                    # bfloat16 autocast: null = on for float32 CUDA models | true | false | auto =
                                      #   on where the device has fast bf16 kernels (GPUs, AVX-512 CPUs; on an
                                      #   AVX2-only CPU bf16 is ~80x slower than float32: steerkit.precision)
    protocol: grid                    # grid: every cell on every item | select_confirm: grid on train, chosen cells on test
    pairs: {Count: [counting]}        # optional: steer each task only with its concepts' vectors
    report: true                      # also write best cells, heatmaps and report.md into the run folder
    answer: auto                      # how items are answered: auto (multiple-choice items by letter, items with an
                                      #   open form -- CLEVR/Super-CLEVR counting -- by generation) | letter |
                                      #   generate (multiple-choice items: generate, parse the letter) | both
    max_new_tokens: 16                # generation: new tokens per answer at most
    stop_strings: null                # generation: e.g. ["</answer>"]; a row ends after the token completing one
    when: prefill                     # generation: prefill (steer the prompt) | all (also each new token in scope)
    exclude_last_prompt_token: false  # true: text/both scopes leave each prompt's last token unsteered (the paper's
                                      #   evaluation masks)

Generated rows carry ``gen_text``, ``gen_pred``, ``gen_correct`` (and ``correct`` = ``gen_correct``, so the report
reads them unchanged); see :func:`steerkit.sweep.engine.sweep`.

Example:
    >>> cfg = SweepConfig.from_yaml("sweep.yaml")
    >>> df = run_config(cfg)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steerkit.errors import DataError
from steerkit.models.profiles import DEFAULT_MODEL, find_profile
from steerkit.precision import fast_bf16


PROTOCOLS = ("grid", "select_confirm")


@dataclass
class SweepConfig:
    """A sweep described by data (see the module docstring for the YAML form)."""

    model: str = DEFAULT_MODEL
    items: dict[str, Any] = field(default_factory=lambda: {"source": "model", "tasks": ["Count"], "n": 20})
    vectors: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, Any] = field(default_factory=lambda: {"layers": [1], "alphas": [1.0], "scopes": ["image"]})
    out: str = "outputs/sweeps"
    dtype: str | None = None
    device: str = "cpu"
    batch_size: int = 8
    max_rows: int = 256
    prompt_baseline: bool = True
    mode: str = "auto"
    autocast: bool | str | None = None
    protocol: str = "grid"
    pairs: dict[str, list[str]] | None = None
    report: bool = True
    run_name: str | None = None
    answer: str = "auto"
    max_new_tokens: int = 16
    stop_strings: list[str] | None = None
    when: str = "prefill"
    exclude_last_prompt_token: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepConfig:
        """Build from a mapping; unknown keys raise :class:`DataError` naming the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DataError(f"unknown sweep config keys {unknown}; known keys: {sorted(known)}")
        cfg = cls(**data)
        for key in ("layers", "alphas"):
            if not cfg.grid.get(key):
                raise DataError(f"grid.{key} is empty; give at least one value (e.g. grid: {{{key}: [1]}})")
        if cfg.protocol not in PROTOCOLS:
            raise DataError(f"protocol={cfg.protocol!r}: use one of {list(PROTOCOLS)}")
        if cfg.protocol == "select_confirm" and cfg.items.get("split", "none") in (None, "none"):
            raise DataError("protocol select_confirm selects on train and confirms on test: set items.split "
                            "(stratified or paper)")
        from steerkit.sweep.plan import ANSWERS, WHENS

        if cfg.answer not in ANSWERS:
            raise DataError(f"answer={cfg.answer!r}: use one of {list(ANSWERS)}")
        if cfg.when not in WHENS:
            raise DataError(f"when={cfg.when!r}: use one of {list(WHENS)}")
        if isinstance(cfg.stop_strings, str):
            cfg.stop_strings = [cfg.stop_strings]
        if cfg.autocast not in (None, True, False, "auto"):
            raise DataError(f"autocast={cfg.autocast!r}: use null, true, false or auto")
        return cfg

    @classmethod
    def from_yaml(cls, path: str | Path) -> SweepConfig:
        """Read a YAML file."""
        import yaml

        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise DataError(f"{path}: the top level of a sweep config must be a mapping")
        return cls.from_dict(data)


def _split(items: list[Any], how: str | None, seed: int, test_frac: float = 0.3) -> list[Any]:
    from steerkit.tasks.splits import paper_split, stratified_split

    if how in (None, "none"):
        return items
    if how == "paper":
        return paper_split(items)
    if how == "stratified":
        return stratified_split(items, seed=seed, test_frac=test_frac)
    raise DataError(f"items.split={how!r}: use none, paper or stratified")


def _profile_of(model: str | None, what: str) -> Any:
    """The profile of ``model``, or a :class:`DataError` saying which config key to set instead."""
    profile = find_profile(model)
    if profile is None:
        raise DataError(f"{model!r} has no model profile, so the config must name {what} explicitly")
    return profile


def load_items(spec: dict[str, Any], model: str | None = None) -> list[Any]:
    """The items a config's ``items`` section describes.

    ``source``: ``"model"`` (default; the items of ``model``'s profile), a profile name (e.g. ``"organism"``),
    ``"synth"`` (:func:`steerkit.tasks.synth.generate`), ``"cvbench"`` (a hub id or local ``path``), ``"gap"``
    (below), ``"clevr"`` (:func:`steerkit.tasks.loaders.load_clevr_count`: hub id or local parquet in ``path``) or
    ``"superclevr"`` (:func:`steerkit.tasks.loaders.load_superclevr_count`: the JSONL or its folder in ``path``); for
    these two, ``n`` is the number of rows read.
    CLEVR items carry their open form (answered by generation under ``answer: auto``); ``open_auto: both`` also
    scores their multiple-choice form.

    ``"gap"``: the modality-gap problems (:func:`steerkit.gap.problem_set`) as open-only items answered by
    generation, asked in one of the gap's single-pass modes (:func:`_gap_items`).
    """
    source = spec.get("source", "model")
    if source == "gap":
        return _split(_gap_items(spec, model), _gap_split_key(spec), int(spec.get("seed", 0)),
                      float(spec.get("test_frac", 0.3)))
    tasks = spec.get("tasks") or ["Count"]
    n, seed = int(spec.get("n", 20)), int(spec.get("seed", 0))
    if source == "synth":
        from steerkit.tasks.synth import generate

        items = generate(tasks, n_per_task=n, seed=seed, size=int(spec.get("size", 224)))
    elif source == "cvbench":
        from steerkit.tasks.loaders import load_cvbench

        items = list(load_cvbench(spec.get("path", "nyu-visionx/CV-Bench"), tasks=tasks, on_error="skip"))
    elif source in ("clevr", "superclevr"):
        from steerkit.tasks.loaders import load_clevr_count, load_superclevr_count

        kw = dict(seed=seed, limit=n, open_auto=spec.get("open_auto", "generate"))
        if source == "clevr":
            items = list(load_clevr_count(spec.get("path", "BUAADreamer/clevr_count_70k"), **kw))
        elif spec.get("path"):
            items = list(load_superclevr_count(spec["path"], **kw))
        else:
            raise DataError("items.source superclevr needs items.path: the R1-V counting JSONL (or its folder)")
    else:
        profile = _profile_of(model, "items.source (synth or cvbench)") if source == "model" else find_profile(source)
        if profile is None:
            raise DataError(f"items.source={source!r}: use model, synth, cvbench, clevr, superclevr, gap or a "
                            "model profile's name")
        # Drawn from the model's held-out content; ``split`` below divides them for selection/confirmation.
        items = profile.make_items(tasks, n, seed=seed, mode=spec.get("mode", "image"), split="test")
    return _split(items, spec.get("split"), seed, float(spec.get("test_frac", 0.3)))


GAP_MODES = ("text", "image", "instruction_image", "ocr_1p")
"""The gap modes a sweep item can be asked in: one model pass each (``image`` sends the rendered problem with the
style's image prompt, often empty); ``ocr_2p`` needs two passes, ``ocr_external`` an OCR engine
between them: run those with :func:`steerkit.gap.run_gap_steered`)."""


def _gap_split_key(spec: dict[str, Any]) -> str | None:
    """``items.split`` of a gap source, which keeps its meaning (none | paper | stratified) beside ``problem_split``."""
    how = spec.get("split")
    if how in ("train", "test"):
        raise DataError(f"items.split={how!r} divides the swept items for selection/confirmation (none, paper or "
                        f"stratified); the gap problems' own held-out split is items.problem_split: {how}")
    return how


def _gap_items(spec: dict[str, Any], model: str | None) -> list[Any]:
    """Open items from gap problems: each asked as :func:`steerkit.gap.mode_input` builds ``mode`` in the problems'
    prompt style (:func:`steerkit.gap.style_for`), read by the ``answer_tag`` parser as ``run_gap`` reads it.

    Keys: ``problems`` (``problem_set`` source: organism, synthetic, gsm8k, auto = ``model``'s profile's problems,
    or a profile's name; default auto), ``n``, ``seed``, ``problem_split`` (the problems' held-out split, default
    test), ``path`` (gsm8k: a local parquet), ``mode`` (:data:`GAP_MODES`, default instruction_image), ``render``
    (:class:`~steerkit.render.RenderConfig` fields) and ``task`` (default ``gap/<mode>``). Item ids are the problem
    ids, so rows join ``run_gap``'s ``item_id``.
    """
    from steerkit.gap import mode_input, problem_set, style_for
    from steerkit.render.text_image import RenderConfig
    from steerkit.tasks.open_answer import open_item

    unknown = sorted(set(spec) - {"source", "problems", "n", "seed", "problem_split", "path", "mode", "render",
                                  "task", "split", "test_frac"})
    if unknown:
        raise DataError(f"items keys {unknown} do not apply to source gap; it takes problems, n, seed, "
                        "problem_split, path, mode, render, task, split, test_frac")
    mode = spec.get("mode", "instruction_image")
    if mode not in GAP_MODES:
        raise DataError(f"items.mode={mode!r}: a sweep asks one model pass per item, so use one of {list(GAP_MODES)}"
                        " (ocr_2p and ocr_external run through steerkit.gap.run_gap_steered)")
    render = {k: tuple(v) if isinstance(v, list) else v for k, v in (spec.get("render") or {}).items()}
    try:
        cfg = RenderConfig(**render)
    except TypeError as exc:
        raise DataError(f"items.render: {exc}; give steerkit.render.RenderConfig fields (font, size, scale, ...)") \
            from exc
    problems = problem_set(spec.get("problems", "auto"), int(spec.get("n", 20)), seed=int(spec.get("seed", 0)),
                           split=spec.get("problem_split", "test"), model=model, path=spec.get("path"))
    if not problems:
        raise DataError(f"items: problem source {spec.get('problems', 'auto')!r} gave no problems; raise items.n or "
                        "check items.path")
    style = style_for(problems)
    task = spec.get("task") or f"gap/{mode}"
    items = []
    for p in problems:
        x = mode_input(p, mode, style, cfg)  # GapError when the style cannot express the mode
        item = open_item(p.id, x.prompt, p.answer, parser="answer_tag", image=x.image, task=task, source=p.source,
                         extra={"mode": mode, "style": style.name})
        items.append(dataclasses.replace(item, question=p.question))  # the problem itself, for displays
    return items


def load_vectors(spec: dict[str, Any], model: str | None = None) -> dict[tuple[str, str], Any]:
    """``{(method, concept): SteeringVector}`` from saved folders and/or an extraction from a text LM (by default
    the text LM of ``model``'s profile)."""
    from steerkit.vectors import SteeringVector

    out: dict[tuple[str, str], Any] = {}
    for path in spec.get("paths", []) or []:
        v = SteeringVector.load(path)
        out[(v.method, v.concept)] = v
    ex = spec.get("extract")
    if ex:
        from steerkit.models.loading import load_model
        from steerkit.vectors import extract_concepts

        text_model = ex.get("text_model") or _profile_of(model, "vectors.extract.text_model").text_name
        lm, tok = load_model(text_model, text_only=True)
        vecs, _ = extract_concepts(lm, tok, ex.get("concepts", ["counting"]), corpus_dir=ex.get("corpus_dir"),
                                   methods=ex.get("methods", ["mean_shift"]),
                                   n=ex.get("n"), out_dir=ex.get("out"), progress=False)
        out.update(vecs)  # extract_concepts keys by (method, concept), like the engine
    if not out:
        raise DataError("the config names no vectors: add vectors.paths or vectors.extract")
    if spec.get("match_norm"):
        from steerkit.vectors.vector import match_norms

        ref = spec["match_norm"]
        refs = {c: v for (m, c), v in out.items() if m == ref}
        missing = sorted({c for (m, c) in out if m != ref and c not in refs})
        if missing:
            raise DataError(f"vectors.match_norm={ref!r}, but concepts {missing} have no {ref} vector; add "
                            f"{ref!r} to vectors.extract.methods")
        out = {(m, c): v if m == ref else match_norms(v, refs[c]) for (m, c), v in out.items()}
    return out


def run_config(cfg: SweepConfig, *, rank: int | None = None, world_size: int | None = None,
               progress: bool = True) -> Any:
    """Load model, items and vectors, run :func:`steerkit.sweep.sweep` into ``cfg.out``, optionally write the report.

    Returns the results DataFrame (``df.attrs["run_dir"]`` is the run folder).
    """
    import os

    from steerkit.models.loading import load_model
    from steerkit.sweep.confirm import select_and_confirm
    from steerkit.sweep.engine import sweep

    device = cfg.device
    if cfg.protocol == "select_confirm" and (world_size or 1) > 1:
        raise DataError("protocol select_confirm chooses its test cells from every train row, so it runs in one "
                        "process; launch it without accelerate (or use protocol: grid to shard the items)")
    if device == "cuda" and (world_size or 1) > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank or 0))}"  # one GPU per process
    model, processor = load_model(cfg.model, dtype=cfg.dtype, device=device)
    items = load_items(cfg.items, cfg.model)
    vectors = load_vectors(cfg.vectors, cfg.model)
    run = sweep if cfg.protocol == "grid" else select_and_confirm
    df = run(model, processor, items, vectors, cfg.grid["layers"], cfg.grid["alphas"],
             cfg.grid.get("scopes", ["image"]), out_dir=cfg.out, model_name=cfg.model,
             run_name=cfg.run_name or cfg.model.replace("/", "-"), batch_size=cfg.batch_size, max_rows=cfg.max_rows,
             prompt_baseline=cfg.prompt_baseline, mode=cfg.mode, pairs=cfg.pairs,
             autocast=fast_bf16(device) if cfg.autocast == "auto" else cfg.autocast,
             rank=rank, world_size=world_size, progress=progress, answer=cfg.answer,
             max_new_tokens=cfg.max_new_tokens, stop_strings=tuple(cfg.stop_strings or ()) or None, when=cfg.when,
             exclude_last_prompt_token=bool(cfg.exclude_last_prompt_token))
    return df
