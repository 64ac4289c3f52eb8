"""Uncertainty for accuracies and for differences between conditions on the same items.

Every comparison in steerkit goes through these: a percentile bootstrap CI for an accuracy (optionally stratified,
for metrics such as CV-Bench's mean of per-source accuracies), a paired bootstrap CI for the difference between two
conditions scored on the same items, and McNemar's exact test on the discordant pairs.

Example:
    >>> acc = bootstrap_ci([1, 0, 1, 1])
    >>> diff = paired_bootstrap_diff(baseline_correct, steered_correct)
    >>> mcnemar_exact(baseline_correct, steered_correct).pvalue
    >>> holm([p_cell_1, p_cell_2, p_cell_3])                # family-wise adjusted p-values
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import binomtest

ArrayLike = Sequence[float] | np.ndarray | pd.Series


@dataclass(frozen=True)
class Interval:
    """A point estimate with a confidence interval: ``value`` in [``lo``, ``hi``] at ``level``, from ``n`` items."""

    value: float
    lo: float
    hi: float
    n: int
    level: float = 0.95

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.lo:.3f}, {self.hi:.3f}] (n={self.n})"

    def pct(self, signed: bool = False) -> str:
        """As percentage points, e.g. "+7.3 [+2.1, +12.0]" (``signed`` for differences)."""
        f = "{:+.1f}" if signed else "{:.1f}"
        return f"{f.format(100 * self.value)} [{f.format(100 * self.lo)}, {f.format(100 * self.hi)}]"


@dataclass(frozen=True)
class McNemar:
    """McNemar's exact test: ``only_a`` items right only under A, ``only_b`` right only under B, two-sided p."""

    only_a: int
    only_b: int
    pvalue: float


def _as_array(x: ArrayLike) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if a.ndim != 1:
        raise ValueError(f"expected a 1-D array of per-item scores, got shape {a.shape}")
    if np.isnan(a).any():
        raise ValueError("per-item scores contain NaN; drop or score those items first")
    return a


def _resample_index(rng: np.random.Generator, n_boot: int, strata: np.ndarray | None, n: int) -> np.ndarray:
    """(n_boot, n) indices drawn with replacement, within each stratum when ``strata`` is given."""
    if strata is None:
        return rng.integers(0, n, size=(n_boot, n))
    idx = np.empty((n_boot, n), dtype=np.int64)
    col = 0
    for s in pd.unique(strata):
        members = np.flatnonzero(strata == s)
        draw = rng.integers(0, len(members), size=(n_boot, len(members)))
        idx[:, col:col + len(members)] = members[draw]
        col += len(members)
    return idx


def bootstrap_stat(
    n: int,
    statistic: Callable[[np.ndarray], np.ndarray],
    *,
    n_boot: int = 10_000,
    level: float = 0.95,
    seed: int = 0,
    strata: ArrayLike | None = None,
    chunk: int = 1000,
) -> Interval:
    """Percentile bootstrap of ``statistic`` over ``n`` items.

    ``statistic`` maps an index array of shape (b, n) (resampled item indices; ``np.arange(n)[None]`` for the point
    estimate) to b values. ``strata`` (one label per item) resamples within each stratum, keeping stratum sizes.
    """
    if n == 0:
        raise ValueError("cannot bootstrap an empty set of items")
    rng = np.random.default_rng(seed)
    s = None if strata is None else np.asarray(strata)
    if s is not None and len(s) != n:
        raise ValueError(f"strata has {len(s)} labels for {n} items")
    point = float(statistic(np.arange(n)[None, :])[0])
    vals = []
    for start in range(0, n_boot, chunk):
        vals.append(statistic(_resample_index(rng, min(chunk, n_boot - start), s, n)))
    boots = np.concatenate(vals)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(boots, [alpha, 1 - alpha])
    return Interval(point, float(lo), float(hi), n, level)


def bootstrap_ci(correct: ArrayLike, *, n_boot: int = 10_000, level: float = 0.95, seed: int = 0,
                 strata: ArrayLike | None = None) -> Interval:
    """Accuracy (mean of 0/1 ``correct``) with a percentile bootstrap CI.

    Example:
        >>> bootstrap_ci([1, 1, 0, 1]).value
        0.75
    """
    a = _as_array(correct)
    return bootstrap_stat(len(a), lambda idx: a[idx].mean(axis=1), n_boot=n_boot, level=level, seed=seed,
                          strata=strata)


def paired_bootstrap_diff(a: ArrayLike, b: ArrayLike, *, n_boot: int = 10_000, level: float = 0.95, seed: int = 0,
                          strata: ArrayLike | None = None) -> Interval:
    """Mean of ``b - a`` (e.g. steered minus baseline accuracy) on the same items, resampling items jointly.

    Example:
        >>> paired_bootstrap_diff([0, 0, 1, 1], [1, 0, 1, 1]).value
        0.25
    """
    x, y = _as_array(a), _as_array(b)
    if len(x) != len(y):
        raise ValueError(f"paired scores need equal lengths, got {len(x)} and {len(y)}")
    d = y - x
    return bootstrap_stat(len(d), lambda idx: d[idx].mean(axis=1), n_boot=n_boot, level=level, seed=seed,
                          strata=strata)


def detectable_effect(n: int, discordant: float, *, level: float = 0.95, power: float = 0.8) -> float:
    """The smallest paired accuracy difference that ``n`` items detect with ``power`` at a two-sided ``level`` test.

    For per-item differences in {-1, 0, 1} whose discordant share (items whose outcome changes) is ``discordant``,
    the standard error of the mean difference is ``sqrt(discordant / n)``, so the detectable effect is
    ``(z_level + z_power) * sqrt(discordant / n)``. A net change of ``d`` flips at least ``d`` of the items, so
    the result is never below the effect detectable when every flip goes one way, ``(z_level + z_power)^2 / n``.
    Pass the discordance a condition showed on the items (or a planning guess) to say how large an effect a split
    of this size could have confirmed.

    Example:
        >>> round(detectable_effect(200, 0.10), 3)   # 10% of 200 items change their outcome
        0.063
    """
    from scipy.stats import norm

    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    z = float(norm.ppf(1 - (1 - level) / 2) + norm.ppf(power))
    return float(max(z * np.sqrt(max(discordant, 0.0) / n), z * z / n))


def mcnemar_exact(a: ArrayLike, b: ArrayLike) -> McNemar:
    """McNemar's exact (binomial) test of paired 0/1 outcomes ``a`` and ``b`` on the same items.

    Under H0 the ``only_a + only_b`` discordant items split 50/50; p is the two-sided binomial p-value
    (1.0 when there are no discordant items).

    Example:
        >>> mcnemar_exact([1] * 9 + [0], [0] * 9 + [1]).pvalue   # 9 vs 1 discordant: 2 * 11 / 1024
        0.021484375
    """
    x, y = _as_array(a).astype(bool), _as_array(b).astype(bool)
    if len(x) != len(y):
        raise ValueError(f"paired outcomes need equal lengths, got {len(x)} and {len(y)}")
    only_a = int(np.sum(x & ~y))
    only_b = int(np.sum(~x & y))
    if only_a + only_b == 0:
        return McNemar(0, 0, 1.0)
    p = binomtest(only_b, only_a + only_b, 0.5, alternative="two-sided").pvalue
    return McNemar(only_a, only_b, float(p))


def holm(pvalues: ArrayLike) -> np.ndarray:
    """Holm's step-down adjustment of ``pvalues`` (family-wise error over all of them), in their input order.

    Example:
        >>> holm([0.01, 0.04, 0.03]).round(2).tolist()   # sorted 0.01, 0.03, 0.04 times 3, 2, 1, kept monotone
        [0.03, 0.06, 0.06]
    """
    p = _as_array(pvalues)
    order = np.argsort(p, kind="stable")
    scaled = np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p))))
    out = np.empty_like(p)
    out[order] = np.minimum(scaled, 1.0)
    return out


def accuracy_table(results: pd.DataFrame, by: Sequence[str] = ("condition", "task"), *, n_boot: int = 2000,
                   level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Accuracy with a bootstrap CI per group of an :func:`steerkit.tasks.evaluate` result.

    Returns columns ``*by, n, accuracy, lo, hi``.
    """
    rows = []
    for key, g in results.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        iv = bootstrap_ci(g["correct"].astype(float).to_numpy(), n_boot=n_boot, level=level, seed=seed)
        rows.append({**dict(zip(by, key)), "n": iv.n, "accuracy": iv.value, "lo": iv.lo, "hi": iv.hi})
    return pd.DataFrame(rows)


def compare_conditions(results: pd.DataFrame, a: str, b: str, *, by: Sequence[str] = ("task",),
                       n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Condition ``b`` minus condition ``a`` on the items both scored: paired bootstrap CI and McNemar p per group.

    Items are paired by ``id``; returns columns ``*by, n, acc_a, acc_b, diff, lo, hi, only_a, only_b, pvalue``.
    """
    left = results[results["condition"] == a].set_index("id")
    right = results[results["condition"] == b].set_index("id")
    if left.empty or right.empty:
        raise ValueError(f"conditions {a!r} and {b!r} must both be in results (have "
                         f"{sorted(results['condition'].unique())})")
    common = left.index.intersection(right.index)
    joined = left.loc[common, list(by) + ["correct"]].join(
        right.loc[common, ["correct"]].rename(columns={"correct": "correct_b"}))
    rows = []
    groups = joined.groupby(list(by), sort=True) if by else [((), joined)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        xa, xb = g["correct"].astype(float).to_numpy(), g["correct_b"].astype(float).to_numpy()
        iv = paired_bootstrap_diff(xa, xb, n_boot=n_boot, level=level, seed=seed)
        mc = mcnemar_exact(xa, xb)
        rows.append({**dict(zip(by, key)), "n": len(g), "acc_a": xa.mean(), "acc_b": xb.mean(), "diff": iv.value,
                     "lo": iv.lo, "hi": iv.hi, "only_a": mc.only_a, "only_b": mc.only_b, "pvalue": mc.pvalue})
    return pd.DataFrame(rows)
