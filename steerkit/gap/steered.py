"""Steering inside the modality-gap harness: does a text-derived vector close part of the gap?

A :class:`GapSteer` is one steering condition (vector, layer, strength, token scope, prefill or every step).
``run_gap(..., steer=GapSteer(...))`` applies it through :func:`steerkit.steer.steer` around every model generation
of every mode (both passes of ``ocr_2p``; for ``ocr_external`` the model's text pass, the OCR engine is no model);
:func:`run_gap_steered` runs the unsteered baseline and each condition on the same problems, and
:func:`gap_effects` says per (condition, mode) how accuracy moved against the unsteered run and whether the gap
(text minus image-mode accuracy) narrowed, each with a paired bootstrap CI.

Scope ``"image"`` steers the image-token positions, so a generation without an image (``text`` mode, the second
pass of ``ocr_2p``, ``ocr_external``) has nothing to steer and runs unsteered; the row column ``steer_applied``
says whether any of a row's model passes was steered.

Example:
    >>> v = SteeringVector.load("outputs/vectors/counting/mean_shift")
    >>> conds = [GapSteer(v, layer=2, alpha=a, scope="image") for a in (0.5, 1.0)]
    >>> df = run_gap_steered(model, processor, problem_set("organism", 100), conds,
    ...                      modes=["text", "instruction_image"])
    >>> gap_effects(df)[["condition", "mode", "delta", "gap", "gap_change", "gap_change_lo", "gap_change_hi"]]
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from steerkit.errors import GapError, SteeringError
from steerkit.gap.modes import ALL_MODES, MODES, run_gap
from steerkit.gap.problems import TextProblem

UNSTEERED = "unsteered"
"""The ``condition`` label of the unsteered baseline rows."""
STEER_COLUMNS: tuple[str, ...] = ("steer_name", "steer_layer", "steer_alpha", "steer_scope", "steer_when",
                                  "steer_applied")
"""The columns :func:`~steerkit.gap.modes.run_gap` adds to each row (None/NA/NaN/False when unsteered)."""

Scope = Literal["both", "image", "text"]
When = Literal["prefill", "all"]


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensors elementwise has no single truth value
class GapSteer:
    """One steering condition of the gap harness.

    Attributes:
        vector: ``{layer: Tensor[d]}`` (a :class:`~steerkit.vectors.SteeringVector` is one) or one ``Tensor[d]``.
        layer: the 0-based decoder layer to steer (must be a key of a mapping ``vector``).
        alpha: strength; the layer's output becomes ``h + alpha * v`` on the scoped positions.
        scope: ``"both"`` (image and text tokens), ``"image"`` or ``"text"`` (as :func:`steerkit.steer.steer`'s
            ``tokens``).
        when: ``"prefill"`` (prompt passes only, the textual-steering paper's protocol) or ``"all"`` (also every
            decode step).
        name: the condition's label in results; default from the vector's concept/method, layer, alpha and scope,
            e.g. ``"counting/mean_shift@L2x0.5/image"``.

    Example:
        >>> GapSteer(torch.zeros(128), layer=1, alpha=2.0).label
        'vector@L1x2/both'
    """

    vector: Mapping[int, torch.Tensor] | torch.Tensor
    layer: int
    alpha: float
    scope: Scope = "both"
    when: When = "prefill"
    name: str | None = None

    def __post_init__(self) -> None:
        if self.scope not in ("both", "image", "text"):
            raise SteeringError(f"scope={self.scope!r}: use 'both', 'image' or 'text'")
        if self.when not in ("prefill", "all"):
            raise SteeringError(f"when={self.when!r}: use 'prefill' or 'all'")
        if isinstance(self.layer, bool) or not isinstance(self.layer, (int, np.integer)) or self.layer < 0:
            raise SteeringError(f"layer={self.layer!r}: give one 0-based decoder layer index (an int >= 0)")
        if not isinstance(self.alpha, (int, float, np.number)) or not math.isfinite(float(self.alpha)):
            raise SteeringError(f"alpha={self.alpha!r}: give a finite number (one condition has one strength; "
                                "run one GapSteer per strength)")
        if isinstance(self.vector, torch.Tensor):
            if self.vector.ndim != 1:
                raise SteeringError(f"a tensor vector must be 1-D [hidden], got shape {tuple(self.vector.shape)}")
        elif isinstance(self.vector, Mapping):
            if int(self.layer) not in self.vector:
                raise SteeringError(f"the vector has no entry for layer {self.layer}; it has "
                                    f"{sorted(self.vector.keys())}: pick one of those layers")
        else:
            raise SteeringError(f"vector must be a Tensor or a Mapping[int, Tensor] (e.g. a SteeringVector), got "
                                f"{type(self.vector).__name__}")
        if self.name is not None and (not isinstance(self.name, str) or not self.name):
            raise GapError(f"name={self.name!r}: give a non-empty string, or None for the default label")
        if self.name == UNSTEERED:
            raise GapError(f"{UNSTEERED!r} labels the unsteered baseline; give the condition another name")

    @property
    def label(self) -> str:
        """The condition's name: ``name`` when given, else ``<concept/method or 'vector'>@L<layer>x<alpha>/<scope>``
        (``+all`` appended when every decode step is steered)."""
        if self.name is not None:
            return self.name
        concept, method = getattr(self.vector, "concept", None), getattr(self.vector, "method", None)
        base = "/".join(str(x) for x in (concept, method) if x) or "vector"
        return f"{base}@L{int(self.layer)}x{float(self.alpha):g}/{self.scope}" + ("+all" if self.when == "all" else "")

    def applies(self, has_images: bool) -> bool:
        """Whether a generation whose inputs do (``has_images``) or do not carry images is steered: always, except
        scope ``"image"`` on text-only inputs, which have no image positions."""
        return has_images or self.scope != "image"

    @contextmanager
    def applied(self, model: Any, has_images: bool) -> Iterator[Any]:
        """Context in which ``model`` is steered for one generation (a no-op where :meth:`applies` is False).

        The hooks are :func:`steerkit.steer.steer`'s, so they are removed on every exit path, exceptions included.
        """
        if not self.applies(has_images):
            yield None
            return
        from steerkit.steer import steer

        with steer(model, self.vector, layers=[int(self.layer)], alpha=float(self.alpha), tokens=self.scope,
                   when=self.when) as handle:
            yield handle

    def columns(self, applied: bool) -> dict[str, Any]:
        """The ``steer_*`` row values of this condition."""
        return dict(steer_name=self.label, steer_layer=int(self.layer), steer_alpha=float(self.alpha),
                    steer_scope=self.scope, steer_when=self.when, steer_applied=bool(applied))


def unsteered_columns() -> dict[str, Any]:
    """The ``steer_*`` row values of an unsteered run."""
    return dict(steer_name=None, steer_layer=pd.NA, steer_alpha=float("nan"), steer_scope=None, steer_when=None,
                steer_applied=False)


def steer_dtypes(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its ``steer_*`` columns in fixed dtypes (nullable Int64 layer, float alpha, bool applied), so
    frames of unsteered and steered runs concatenate without object columns."""
    if "steer_layer" in df:
        df["steer_layer"] = df["steer_layer"].astype("Int64")
    if "steer_alpha" in df:
        df["steer_alpha"] = df["steer_alpha"].astype(float)
    if "steer_applied" in df:
        df["steer_applied"] = df["steer_applied"].astype(bool)
    return df


def run_gap_steered(
    model: Any,
    processor: Any,
    problems: Sequence[TextProblem],
    conditions: Sequence[GapSteer],
    *,
    modes: Sequence[str] = MODES,
    include_baseline: bool = True,
    **kwargs: Any,
) -> pd.DataFrame:
    """The gap harness unsteered and under each steering condition, on the same problems: one frame.

    Every row is a :func:`~steerkit.gap.modes.run_gap` row plus ``condition`` (:data:`UNSTEERED` for the baseline,
    else the condition's :attr:`GapSteer.label`). ``kwargs`` go to ``run_gap`` (style, render, max_new_tokens,
    temperature, seed, batch_size, skip_unsupported, ocr_engine, ...). Feed the result to :func:`gap_effects`.

    Raises:
        GapError: on two conditions with one label (give each a distinct ``name=``), or no conditions and no
            baseline.

    Example:
        >>> df = run_gap_steered(model, processor, problem_set("organism", 50),
        ...                      [GapSteer(v, 2, 1.0, scope="image"), GapSteer(v, 2, 1.0, scope="both")],
        ...                      modes=["text", "image", "instruction_image"])
    """
    if "steer" in kwargs:
        raise GapError("run_gap_steered takes its steering as conditions=[GapSteer(...)], not steer=")
    conditions = list(conditions)
    bad = [c for c in conditions if not isinstance(c, GapSteer)]
    if bad:
        raise GapError(f"conditions must be GapSteer objects, got {type(bad[0]).__name__}; wrap each vector as "
                       "GapSteer(vector, layer, alpha, scope=...)")
    labels = [c.label for c in conditions]
    dupes = sorted({l for l in labels if labels.count(l) > 1})
    if dupes:
        raise GapError(f"conditions {dupes} appear more than once; give each GapSteer a distinct name=")
    if not conditions and not include_baseline:
        raise GapError("nothing to run: give conditions or include_baseline=True")
    runs: list[GapSteer | None] = ([None] if include_baseline else []) + conditions
    parts = []
    for cond in tqdm(runs, desc="steering conditions"):
        df = run_gap(model, processor, problems, modes=modes, steer=cond, **kwargs)
        parts.append(df.assign(condition=UNSTEERED if cond is None else cond.label))
    return steer_dtypes(pd.concat(parts, ignore_index=True))


def _condition_labels(df: pd.DataFrame) -> pd.Series:
    if "condition" in df:
        return df["condition"].fillna(UNSTEERED).astype(str)
    if "steer_name" in df:
        return df["steer_name"].fillna(UNSTEERED).astype(str)
    raise GapError("the frame has neither a 'condition' nor a 'steer_name' column; use run_gap_steered's result, "
                   "or concatenate run_gap(..., steer=...) frames")


def _first(part: pd.DataFrame, col: str) -> Any:
    return part[col].iloc[0] if col in part and len(part) else None


def gap_effects(df: pd.DataFrame, *, text_mode: str = "text", baseline: str = UNSTEERED, n_boot: int = 2000,
                seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Per (condition, mode): accuracy, its change against the unsteered run, and how the modality gap moved.

    Conditions come from ``condition`` (:func:`run_gap_steered`) or else ``steer_name`` (None = unsteered). Items
    are paired by ``item_id``. Columns:

    - condition, steer_layer, steer_alpha, steer_scope, mode, n, accuracy, acc_lo, acc_hi;
    - delta, delta_lo, delta_hi, n_paired, mcnemar_p: this condition minus ``baseline`` on the same items in this
      mode (paired bootstrap CI, McNemar's exact p; NaN on the baseline's own rows);
    - gap: ``text_mode`` minus this mode's accuracy under this condition (on the items both ran);
      gap_unsteered: the same under ``baseline``;
    - gap_change, gap_change_lo, gap_change_hi: the paired bootstrap of gap minus gap_unsteered over the items
      present in all four cells (negative = steering narrowed the gap); gap_narrowed: its CI lies below 0;
      gap_closed: the share of the unsteered gap closed, ``-gap_change / gap_unsteered`` (NaN when that gap is 0);
      text_delta: the ``text_mode`` row's delta under this condition, repeated on each row, because a gap also
      narrows when steering breaks text (negative text_delta) rather than helping the image mode (positive delta).

    Raises:
        GapError: without baseline rows, or when an item appears twice in one (condition, mode) cell (e.g. a
            render sweep: filter one configuration first).

    Example:
        >>> eff = gap_effects(run_gap_steered(model, processor, probs, conds, modes=["text", "image"]))
        >>> eff[eff["mode"] == "image"][["condition", "delta", "gap", "gap_unsteered", "gap_change"]]
    """
    from steerkit.gap.report import mode_label
    from steerkit.tasks.stats import bootstrap_ci, mcnemar_exact, paired_bootstrap_diff

    if df.empty:
        raise GapError("no results: the frame is empty")
    df = df.assign(condition=_condition_labels(df))
    conditions = list(pd.unique(df["condition"]))
    if baseline not in conditions:
        raise GapError(f"no {baseline!r} rows to compare against; run run_gap_steered(..., include_baseline=True) "
                       "or add a run_gap(..., steer=None) frame")
    conditions = [baseline] + [c for c in conditions if c != baseline]
    dup = df.duplicated(["condition", "mode", "item_id"])
    if dup.any():
        first = df[dup].iloc[0]
        raise GapError(f"item {first['item_id']!r} appears more than once under condition {first['condition']!r}, "
                       f"mode {first['mode']!r}; keep one run per (condition, mode), e.g. one render configuration")
    present = set(df["mode"])
    modes = [m for m in ALL_MODES if m in present] + sorted(present - set(ALL_MODES))
    cells = {key: g.set_index("item_id")["correct"].astype(float)
             for key, g in df.groupby(["condition", "mode"], sort=False)}

    def boot(a: pd.Series, b: pd.Series) -> Any:
        return paired_bootstrap_diff(a.to_numpy(), b.to_numpy(), n_boot=n_boot, seed=seed, level=level)

    def gap_of(cond: str, mode: str) -> float:
        t, m = cells.get((cond, text_mode)), cells.get((cond, mode))
        if t is None or m is None or mode == text_mode:
            return float("nan")
        common = t.index.intersection(m.index)
        return float(t.loc[common].mean() - m.loc[common].mean()) if len(common) else float("nan")

    nan = float("nan")
    rows = []
    for cond in conditions:
        meta = df[df["condition"] == cond]
        for mode in modes:
            x = cells.get((cond, mode))
            if x is None:
                continue
            acc = bootstrap_ci(x.to_numpy(), n_boot=n_boot, seed=seed, level=level)
            row: dict[str, Any] = dict(
                condition=cond, steer_layer=_first(meta, "steer_layer"), steer_alpha=_first(meta, "steer_alpha"),
                steer_scope=_first(meta, "steer_scope"), mode=mode, label=mode_label(mode), n=len(x),
                accuracy=acc.value, acc_lo=acc.lo, acc_hi=acc.hi, delta=nan, delta_lo=nan, delta_hi=nan,
                n_paired=0, mcnemar_p=nan, gap=gap_of(cond, mode), gap_unsteered=gap_of(baseline, mode),
                gap_change=nan, gap_change_lo=nan, gap_change_hi=nan, gap_narrowed=False, gap_closed=nan)
            base = cells.get((baseline, mode))
            if cond != baseline and base is not None:
                common = base.index.intersection(x.index)
                if len(common):
                    d = boot(base.loc[common], x.loc[common])
                    row.update(delta=d.value, delta_lo=d.lo, delta_hi=d.hi, n_paired=len(common),
                               mcnemar_p=mcnemar_exact(base.loc[common].to_numpy(), x.loc[common].to_numpy()).pvalue)
            t0, tc = cells.get((baseline, text_mode)), cells.get((cond, text_mode))
            if cond != baseline and mode != text_mode and all(s is not None for s in (base, t0, tc)):
                common = t0.index.intersection(base.index).intersection(tc.index).intersection(x.index)
                if len(common):
                    # Per item: (text - mode) under the condition vs unsteered; their mean difference is the change
                    # of the gap, and resampling items jointly keeps all four cells paired.
                    g = boot(t0.loc[common] - base.loc[common], tc.loc[common] - x.loc[common])
                    g0 = row["gap_unsteered"]
                    row.update(gap_change=g.value, gap_change_lo=g.lo, gap_change_hi=g.hi,
                               gap_narrowed=bool(g.hi < 0),
                               gap_closed=(0.0 - g.value) / g0 if g0 == g0 and g0 != 0 else nan)
            rows.append(row)
    out = pd.DataFrame(rows)
    out["n_paired"] = out["n_paired"].astype(int)
    text_rows = out[out["mode"] == text_mode].set_index("condition")["delta"]
    out["text_delta"] = out["condition"].map(text_rows).astype(float)
    return out
