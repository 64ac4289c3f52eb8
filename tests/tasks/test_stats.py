"""Statistics against known cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

from steerkit.tasks.stats import (accuracy_table, bootstrap_ci, compare_conditions, holm, mcnemar_exact,
                                  paired_bootstrap_diff)


def test_bootstrap_ci_degenerate_and_normal_approximation():
    ones = bootstrap_ci([1] * 50)
    assert (ones.value, ones.lo, ones.hi, ones.n) == (1.0, 1.0, 1.0, 50)
    half = bootstrap_ci([1, 0] * 200, n_boot=4000, seed=1)
    se = math.sqrt(0.25 / 400)
    assert half.value == 0.5
    assert half.lo == pytest.approx(0.5 - 1.96 * se, abs=0.008)
    assert half.hi == pytest.approx(0.5 + 1.96 * se, abs=0.008)
    assert bootstrap_ci([1, 0] * 200, seed=3) == bootstrap_ci([1, 0] * 200, seed=3)  # seeded
    with pytest.raises(ValueError):
        bootstrap_ci([])


def test_stratified_bootstrap_keeps_stratum_sizes():
    # stratum a all correct, b all wrong: any within-stratum resample has exactly the same mean
    iv = bootstrap_ci([1] * 30 + [0] * 10, strata=["a"] * 30 + ["b"] * 10, n_boot=500)
    assert iv.lo == iv.hi == iv.value == 0.75


def test_paired_difference_known_cases():
    a = np.array([1, 0, 1, 0] * 50)
    same = paired_bootstrap_diff(a, a)
    assert (same.value, same.lo, same.hi) == (0.0, 0.0, 0.0)
    b = a.copy()
    b[np.flatnonzero(a == 0)[:20]] = 1  # 20 of 200 items fixed, none broken
    d = paired_bootstrap_diff(a, b, n_boot=3000)
    assert d.value == pytest.approx(0.1)
    assert 0 < d.lo < 0.1 < d.hi  # strictly positive: every discordant pair favours b
    # pairing matters: an unpaired view of the same accuracies would be far wider
    assert d.hi - d.lo < (bootstrap_ci(b).hi - bootstrap_ci(b).lo)
    with pytest.raises(ValueError, match="equal lengths"):
        paired_bootstrap_diff([1, 0], [1])


def test_mcnemar_exact_matches_the_binomial():
    r = mcnemar_exact([1] * 9 + [0], [0] * 9 + [1])
    assert (r.only_a, r.only_b) == (9, 1)
    assert r.pvalue == pytest.approx(2 * (1 + 10) / 2**10)
    # concordant items do not change the p-value
    r2 = mcnemar_exact([1] * 9 + [0] + [1] * 50 + [0] * 40, [0] * 9 + [1] + [1] * 50 + [0] * 40)
    assert r2.pvalue == r.pvalue
    # 3 vs 12 discordant pairs, checked against a direct binomial sum
    a = [1] * 3 + [0] * 12
    b = [0] * 3 + [1] * 12
    assert mcnemar_exact(a, b).pvalue == pytest.approx(min(1.0, 2 * binom.cdf(3, 15, 0.5)))
    assert mcnemar_exact([1, 0, 1], [1, 0, 1]).pvalue == 1.0


def test_tables_over_an_evaluation_frame():
    rng = np.random.default_rng(0)
    n = 120
    base = rng.random(n) < 0.5
    steered = base | (rng.random(n) < 0.3)
    df = pd.DataFrame({
        "id": [f"i{k}" for k in range(n)] * 2,
        "task": (["Count", "Relation"] * (n // 2)) * 2,
        "condition": ["baseline"] * n + ["steered"] * n,
        "correct": np.concatenate([base, steered]),
    })
    acc = accuracy_table(df, by=["condition"], n_boot=500)
    assert list(acc["condition"]) == ["baseline", "steered"]
    assert acc.loc[0, "accuracy"] == pytest.approx(base.mean())
    assert (acc["lo"] <= acc["accuracy"]).all() and (acc["accuracy"] <= acc["hi"]).all()
    cmp = compare_conditions(df, "baseline", "steered", by=["task"], n_boot=500)
    assert list(cmp["task"]) == ["Count", "Relation"]
    for _, row in cmp.iterrows():
        sub = df[df["task"] == row["task"]]
        assert row["diff"] == pytest.approx(sub[sub.condition == "steered"].correct.mean()
                                            - sub[sub.condition == "baseline"].correct.mean())
        assert row["only_a"] == 0 and row["only_b"] > 0 and row["pvalue"] < 0.05
    with pytest.raises(ValueError, match="must both be in results"):
        compare_conditions(df, "baseline", "nope")


def test_holm_matches_the_step_down_rule_and_keeps_input_order():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.02, 0.03, 0.06, 0.06
    np.testing.assert_allclose(holm([0.04, 0.005, 0.03, 0.01]), [0.06, 0.02, 0.06, 0.03])
    assert holm([0.5, 0.9]).tolist() == [1.0, 1.0]  # capped at 1
    assert holm([0.2]).tolist() == [0.2]  # one test: unchanged
