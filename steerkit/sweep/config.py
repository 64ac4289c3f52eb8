"""Sweep configuration files (YAML) for ``steerkit sweep CONFIG.yaml`` and ``run_config``.

Example ``sweep.yaml``::

    model: steerkit/organism          # any load_model() name: a profile (steerkit/organism), tiny/llava, a hub id or folder
    dtype: float32                    # optional: bfloat16 on GPU
    device: cpu
    items:
      source: model                   # model (its profile's items) | a profile name (organism) | synth | cvbench
      tasks: [Count, Relation]
      n: 40                           # per task
      seed: 0
      split: stratified               # none | paper | stratified (train/test for selection/confirmation)
    vectors:
      paths: []                       # saved SteeringVector folders, and/or:
      extract:
        text_model: steerkit/organism-text  # optional; default: the text LM of the model's profile
        corpus_dir: steerkit/data/concepts/organism  # optional; default: the shipped English corpora
        concepts: [counting, spatial_relation]
        methods: [mean_shift]
        n: 60                         # sentences per concept
    grid:
      layers: [1, 2, 3]
      alphas: [0.5, 1.0, 2.0]
      scopes: [image, both]
    out: outputs/sweeps               # results store root; the run folder is named by the config hash
    batch_size: 8
    prompt_baseline: true
    mode: auto
    report: true                      # also write best cells, heatmaps and report.md into the run folder

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
    report: bool = True
    run_name: str | None = None

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
        return cfg

    @classmethod
    def from_yaml(cls, path: str | Path) -> SweepConfig:
        """Read a YAML file."""
        import yaml

        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise DataError(f"{path}: the top level of a sweep config must be a mapping")
        return cls.from_dict(data)


def _split(items: list[Any], how: str | None, seed: int) -> list[Any]:
    from steerkit.tasks.splits import paper_split, stratified_split

    if how in (None, "none"):
        return items
    if how == "paper":
        return paper_split(items)
    if how == "stratified":
        return stratified_split(items, seed=seed)
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
    ``"synth"`` (:func:`steerkit.tasks.synth.generate`) or ``"cvbench"`` (a hub id or local ``path``).
    """
    source = spec.get("source", "model")
    tasks = spec.get("tasks") or ["Count"]
    n, seed = int(spec.get("n", 20)), int(spec.get("seed", 0))
    if source == "synth":
        from steerkit.tasks.synth import generate

        items = generate(tasks, n_per_task=n, seed=seed, size=int(spec.get("size", 224)))
    elif source == "cvbench":
        from steerkit.tasks.loaders import load_cvbench

        items = list(load_cvbench(spec.get("path", "nyu-visionx/CV-Bench"), tasks=tasks, on_error="skip"))
    else:
        profile = _profile_of(model, "items.source (synth or cvbench)") if source == "model" else find_profile(source)
        if profile is None:
            raise DataError(f"items.source={source!r}: use model, synth, cvbench or a model profile's name")
        # Drawn from the model's held-out content; ``split`` below divides them for selection/confirmation.
        items = profile.make_items(tasks, n, seed=seed, mode=spec.get("mode", "image"), split="test")
    return _split(items, spec.get("split"), seed)


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
    return out


def run_config(cfg: SweepConfig, *, rank: int | None = None, world_size: int | None = None,
               progress: bool = True) -> Any:
    """Load model, items and vectors, run :func:`steerkit.sweep.sweep` into ``cfg.out``, optionally write the report.

    Returns the results DataFrame (``df.attrs["run_dir"]`` is the run folder).
    """
    from steerkit.models.loading import load_model
    from steerkit.sweep.engine import sweep

    import os

    device = cfg.device
    if device == "cuda" and (world_size or 1) > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank or 0))}"  # one GPU per process
    model, processor = load_model(cfg.model, dtype=cfg.dtype, device=device)
    items = load_items(cfg.items, cfg.model)
    vectors = load_vectors(cfg.vectors, cfg.model)
    df = sweep(model, processor, items, vectors, cfg.grid["layers"], cfg.grid["alphas"],
               cfg.grid.get("scopes", ["image"]), out_dir=cfg.out, model_name=cfg.model,
               run_name=cfg.run_name or cfg.model.replace("/", "-"), batch_size=cfg.batch_size, max_rows=cfg.max_rows,
               prompt_baseline=cfg.prompt_baseline, mode=cfg.mode, rank=rank, world_size=world_size,
               progress=progress)
    return df
