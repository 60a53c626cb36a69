"""analysis.stats against known values: scipy on fixed data, perfect and reversed rankings."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from analysis.stats import (
    METHODS,
    cliffs_delta,
    correlation,
    correlations,
    holm,
    mann_whitney,
    pairwise_tests,
    summarize,
    top_k_precision,
    wilcoxon_paired,
)

RNG = np.random.default_rng(7)
X = RNG.normal(size=40)
Y = 0.6 * X + RNG.normal(scale=0.8, size=40)


@pytest.mark.parametrize("method,fn", [("spearman", stats.spearmanr), ("kendall", stats.kendalltau), ("pearson", stats.pearsonr)])
def test_estimates_equal_scipy_and_ci_brackets_them(method, fn):
    c = correlation(X, Y, method=method, n_resamples=999)
    ref = fn(X, Y)
    assert c.estimate == pytest.approx(ref.statistic, abs=1e-12)
    assert c.pvalue == pytest.approx(ref.pvalue, rel=1e-9)
    assert c.n == 40
    assert -1 <= c.low < c.estimate < c.high <= 1
    assert c.high - c.low < 0.8
    assert c.interval == "BCa" and "percentile" not in str(c)


def test_vectorised_statistic_matches_scipy_with_ties():
    """The bootstrap's own statistic equals scipy's on tied data (resamples are full of ties)."""
    from analysis.stats import _kendall_along, _spearman_along

    a = np.array([1, 2, 2, 3, 3, 3, 5, 0.5])
    b = np.array([2, 2, 1, 4, 3, 3, 9, 0.0])
    assert _spearman_along(a, b) == pytest.approx(stats.spearmanr(a, b).statistic)
    assert _kendall_along(a, b) == pytest.approx(stats.kendalltau(a, b).statistic)
    batch = np.vstack([a, b[::-1]])
    assert _kendall_along(batch, np.vstack([b, a])) == pytest.approx(
        [stats.kendalltau(a, b).statistic, stats.kendalltau(b[::-1], a).statistic])


def test_perfectly_monotone_pair_is_one_with_tight_ci():
    x = np.arange(20.0)
    for method in ("spearman", "kendall"):
        c = correlation(x, np.exp(x / 5), method=method, n_resamples=500)
        assert c.estimate == pytest.approx(1.0)
        assert 0.9 <= c.low <= c.high <= 1.0 + 1e-12
        assert c.interval == "percentile" and str(c).endswith("(percentile)")  # BCa undefined: said, not hidden
    c = correlation(x, 3 * x + 1, method="pearson", n_resamples=500)
    assert c.estimate == pytest.approx(1.0) and c.low >= 0.9


def test_anti_correlated_is_minus_one():
    x = np.arange(15.0)
    for y in (-x**3, 1 - 2 * x):  # monotone decreasing; linear decreasing (Pearson -1 too)
        for method, c in correlations(x, y, n_resamples=500).items():
            if method == "pearson" and y[0] == 0:
                assert -1 < c.estimate < -0.9
                continue
            assert c.estimate == pytest.approx(-1.0), method
            assert -1.0 - 1e-12 <= c.low <= c.high <= -0.9, method


def test_degenerate_inputs_give_nan_not_errors():
    c = correlation([1, 2, 3, 4], [5, 5, 5, 5])
    assert math.isnan(c.estimate) and math.isnan(c.low)
    c = correlation([1, 2], [1, 2])
    assert c.n == 2 and math.isnan(c.low)
    c = correlation([1, 2, np.nan, 4, 5], [2, 1, 3, 5, 4])  # NaN pairs dropped
    assert c.n == 4
    with pytest.raises(ValueError, match="unknown correlation method"):
        correlation(X, Y, method="foo")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="equal length"):
        correlation([1, 2, 3], [1, 2])


def test_bootstrap_is_seeded():
    assert correlation(X, Y, seed=3, n_resamples=300) == correlation(X, Y, seed=3, n_resamples=300)


def test_top_k_precision():
    assert top_k_precision([1, 2, 3, 4, 5], [10, 20, 30, 40, 50], 2) == 1.0
    assert top_k_precision([1, 2, 3, 4, 5], [50, 40, 30, 20, 10], 2) == 0.0
    # proxy top-3 = {4, 3, 2}; full top-3 = {4, 2, 0}: overlap {4, 2}
    assert top_k_precision([0.1, 0.0, 0.5, 0.6, 0.9], [0.8, 0.1, 0.7, 0.2, 0.9], 3) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        top_k_precision([1, 2], [1, 2], 3)


def test_mann_whitney_and_effect_sizes():
    a, b = [3.1, 4.2, 5.0, 6.3, 7.7], [1.0, 2.2, 3.5, 4.0]
    mw = mann_whitney(a, b)
    ref = stats.mannwhitneyu(a, b, alternative="two-sided")
    assert mw.u == ref.statistic and mw.pvalue == pytest.approx(ref.pvalue)
    # pairs a > b: 3.1>{1,2.2}; 4.2,5,6.3,7.7 > all 4 -> 2 + 16 = 18 of 20; a < b: 3.1<{3.5,4} -> 2
    assert mw.cliffs_delta == pytest.approx((18 - 2) / 20)
    assert mw.rank_biserial == pytest.approx(mw.cliffs_delta)
    assert cliffs_delta([5, 6], [1, 2]) == 1.0 and cliffs_delta([1, 2], [5, 6]) == -1.0
    assert cliffs_delta([1, 2], [1, 2]) == 0.0


def test_wilcoxon_paired_by_seed():
    a = {0: 0.50, 1: 0.61, 2: 0.55, 3: 0.70, 4: 0.64, 5: 0.58, 9: 0.9}
    b = {0: 0.45, 1: 0.60, 2: 0.57, 3: 0.62, 4: 0.60, 5: 0.50}  # seed 9 unpaired: ignored
    w = wilcoxon_paired(a, b)
    d = [a[s] - b[s] for s in range(6)]
    ref = stats.wilcoxon(d)
    assert w.n_pairs == 6 and w.statistic == ref.statistic and w.pvalue == pytest.approx(ref.pvalue)
    # |d| ranks: .05->4, .01->1, .02->2, .08->5.5, .04->3, .08->5.5; only seed 2 negative (rank 2)
    assert w.rank_biserial == pytest.approx((19 - 2) / 21)
    same = wilcoxon_paired({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0})
    assert same.pvalue == 1.0 and same.rank_biserial == 0.0
    assert wilcoxon_paired({0: 1.0, 1: 2.0, 2: 3.0}, {0: 0.0, 1: 0.0, 2: 0.0}).rank_biserial == 1.0


def test_holm():
    # sorted 0.01, 0.03, 0.04 -> 3*0.01, max(.03, 2*.03), max(.06, .04)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    out = holm([0.02, float("nan")])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1])


def test_pairwise_table_and_summary():
    final = {
        "random": {s: 0.50 + 0.01 * s for s in range(6)},
        "tpe": {s: 0.60 + 0.01 * s for s in range(6)},
        "local": {s: 0.50 + 0.01 * s for s in range(6)},
    }
    rows = {(r.a, r.b): r for r in pairwise_tests(final)}
    assert set(rows) == {("random", "tpe"), ("random", "local"), ("tpe", "local")}
    r = rows[("random", "tpe")]
    assert r.cliffs_delta == -1.0 and r.median_a == pytest.approx(0.525) and r.median_b == pytest.approx(0.625)
    assert r.wilcoxon_r == -1.0 and r.wilcoxon_pairs == 6
    assert r.mw_p_holm >= r.mw_p and r.wilcoxon_p_holm >= r.wilcoxon_p
    assert rows[("random", "local")].wilcoxon_p == 1.0 and rows[("random", "local")].cliffs_delta == 0.0
    s = summarize([1.0, 2.0, 3.0, 4.0, float("nan")])
    assert (s.n, s.mean, s.median, s.q25, s.q75, s.best) == (4, 2.5, 2.5, 1.75, 3.25, 4.0)
    assert s.std == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    assert summarize([]).n == 0


def test_methods_constant():
    assert METHODS == ("spearman", "kendall", "pearson")
