"""Statistics the toolkit reports: rank correlations with bootstrap intervals, top-k
precision, and pairwise strategy tests with effect sizes.

Everything is a thin, tested layer over ``scipy.stats``; the point of this module is to
fix *which* estimator, interval and effect size are reported, and to behave sensibly on
the small samples a NAS study produces (ties, constant groups, a handful of seeds).
"""
from __future__ import annotations

import itertools
import logging
import math
import warnings
from dataclasses import asdict, dataclass
from typing import Literal, Mapping, Sequence

import numpy as np
from scipy import stats

log = logging.getLogger(__name__)

Method = Literal["spearman", "kendall", "pearson"]
METHODS: tuple[Method, ...] = ("spearman", "kendall", "pearson")
PAPER_SPEARMAN = 0.46  # Chen et al. 2018: proxy vs full task on their top 50 cells, the yardstick here


# -- correlation -------------------------------------------------------------------------
@dataclass(frozen=True)
class Correlation:
    """A correlation estimate with a bootstrap confidence interval (pairs resampled)."""

    method: str
    estimate: float
    low: float
    high: float
    pvalue: float
    n: int
    confidence: float = 0.95
    interval: str = "BCa"  # "BCa", or "percentile" where BCa is undefined (a degenerate bootstrap)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        mark = "" if self.interval == "BCa" else " (percentile)"
        return f"{self.estimate:+.3f} [{self.low:+.3f}, {self.high:+.3f}]{mark}"


def _pearson_along(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r along the last axis; NaN where either side is constant."""
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    den = np.sqrt((xc * xc).sum(axis=-1) * (yc * yc).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc * yc).sum(axis=-1) / den
    r = np.where(den > 0, r, np.nan)
    return np.clip(r, -1.0, 1.0)


def _spearman_along(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _pearson_along(stats.rankdata(x, axis=-1), stats.rankdata(y, axis=-1))


def _kendall_along(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall tau-b along the last axis (as scipy.stats.kendalltau), O(n^2) per row."""
    x2 = np.atleast_2d(x).reshape(-1, np.shape(x)[-1])
    y2 = np.atleast_2d(y).reshape(-1, np.shape(y)[-1])
    n = x2.shape[-1]
    iu = np.triu_indices(n, k=1)
    out = np.empty(x2.shape[0])
    for i, (a, b) in enumerate(zip(x2, y2)):
        sa = np.sign(a[:, None] - a[None, :])[iu]
        sb = np.sign(b[:, None] - b[None, :])[iu]
        den = math.sqrt(float(np.count_nonzero(sa)) * float(np.count_nonzero(sb)))
        out[i] = float((sa * sb).sum()) / den if den > 0 else np.nan
    return out.reshape(np.shape(x)[:-1]) if np.ndim(x) > 1 else out[0]


_ALONG = {"spearman": _spearman_along, "kendall": _kendall_along, "pearson": _pearson_along}


def _point(method: Method, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """scipy's estimate and p-value; NaN for a constant input instead of a warning."""
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan
    fn = {"spearman": stats.spearmanr, "kendall": stats.kendalltau, "pearson": stats.pearsonr}[method]
    res = fn(x, y)
    return float(res.statistic), float(res.pvalue)


def correlation(
    x: Sequence[float],
    y: Sequence[float],
    method: Method = "spearman",
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Correlation:
    """Correlation of paired samples with a bootstrap interval from ``scipy.stats.bootstrap``.

    Pairs are resampled together (``paired=True``). BCa is used; when it is undefined
    (a degenerate bootstrap distribution, e.g. a perfectly monotone pair whose every
    resample has rho = 1, or resamples with a constant side) the percentile interval of
    the finite resampled values is reported instead, and ``interval`` says "percentile".
    """
    if method not in _ALONG:
        raise ValueError(f"unknown correlation method {method!r}; known: {', '.join(METHODS)}")
    xa = np.asarray(x, dtype=float)
    ya = np.asarray(y, dtype=float)
    if xa.shape != ya.shape or xa.ndim != 1:
        raise ValueError(f"x and y must be 1-d and of equal length, got {xa.shape} and {ya.shape}")
    keep = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[keep], ya[keep]
    n = len(xa)
    estimate, pvalue = _point(method, xa, ya)
    if n < 3 or not math.isfinite(estimate):
        return Correlation(method, estimate, math.nan, math.nan, pvalue, n, confidence)
    along = _ALONG[method]

    def statistic(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return along(np.moveaxis(a, axis, -1), np.moveaxis(b, axis, -1))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DegenerateDataWarning / nan warnings: handled below
        res = stats.bootstrap(
            (xa, ya), statistic, paired=True, vectorized=True, n_resamples=n_resamples,
            confidence_level=confidence, method="BCa", rng=np.random.default_rng(seed),
        )
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    interval = "BCa"
    if not (math.isfinite(low) and math.isfinite(high)):
        interval = "percentile"
        dist = np.asarray(res.bootstrap_distribution, dtype=float)
        dist = dist[np.isfinite(dist)]
        alpha = (1 - confidence) / 2
        low, high = (float(v) for v in np.quantile(dist, [alpha, 1 - alpha])) if len(dist) else (math.nan, math.nan)
    return Correlation(method, estimate, low, high, pvalue, n, confidence, interval)


def correlations(x: Sequence[float], y: Sequence[float], **kwargs) -> dict[str, Correlation]:
    """Spearman, Kendall and Pearson with bootstrap intervals, keyed by method."""
    return {m: correlation(x, y, method=m, **kwargs) for m in METHODS}


def top_k_precision(proxy: Sequence[float], full: Sequence[float], k: int) -> float:
    """Fraction of the k best cells by the proxy that are among the k best by the full task.

    Ties are broken by position (a stable sort), so the result is deterministic.
    """
    p = np.asarray(proxy, dtype=float)
    f = np.asarray(full, dtype=float)
    if p.shape != f.shape:
        raise ValueError("proxy and full must have the same length")
    if not 1 <= k <= len(p):
        raise ValueError(f"k must be in 1..{len(p)}, got {k}")
    top_p = set(np.argsort(-p, kind="stable")[:k].tolist())
    top_f = set(np.argsort(-f, kind="stable")[:k].tolist())
    return len(top_p & top_f) / k


# -- comparing strategies ------------------------------------------------------------------
@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float
    median: float
    q25: float
    q75: float
    best: float

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(values: Sequence[float]) -> Summary:
    """Mean +- std (ddof 1) and quartiles of the finite values."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return Summary(0, *(math.nan,) * 6)
    q25, med, q75 = np.percentile(v, [25, 50, 75])
    std = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return Summary(len(v), float(v.mean()), std, float(med), float(q25), float(q75), float(v.max()))


def cliffs_delta(a: Sequence[float], b: Sequence[float]) -> float:
    """P(A > B) - P(A < B) over all pairs: +1 when every a beats every b."""
    x = np.asarray(a, dtype=float)[:, None]
    y = np.asarray(b, dtype=float)[None, :]
    if x.size == 0 or y.size == 0:
        return math.nan
    return float(np.mean(np.sign(x - y)))


@dataclass(frozen=True)
class MannWhitney:
    u: float
    pvalue: float
    rank_biserial: float  # 2 U / (n_a n_b) - 1, equal to Cliff's delta
    cliffs_delta: float


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> MannWhitney:
    """Two-sided Mann-Whitney U of a vs b with the rank-biserial correlation as effect size."""
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if len(x) == 0 or len(y) == 0:
        return MannWhitney(math.nan, math.nan, math.nan, math.nan)
    res = stats.mannwhitneyu(x, y, alternative="two-sided")
    u = float(res.statistic)
    return MannWhitney(u, float(res.pvalue), 2 * u / (len(x) * len(y)) - 1, cliffs_delta(x, y))


@dataclass(frozen=True)
class WilcoxonPaired:
    n_pairs: int
    statistic: float
    pvalue: float
    rank_biserial: float  # (W+ - W-) / (W+ + W-): +1 when a beats b on every seed


def wilcoxon_paired(a: Mapping[int, float], b: Mapping[int, float]) -> WilcoxonPaired:
    """Wilcoxon signed-rank test on the seeds both strategies ran, paired by seed.

    Effect size is the matched-pairs rank-biserial correlation (zero differences dropped,
    as scipy's default ``zero_method="wilcox"``). All-equal pairs give p = 1, r = 0.
    """
    seeds = sorted(set(a) & set(b))
    d = np.array([a[s] - b[s] for s in seeds], dtype=float)
    d = d[np.isfinite(d)]
    if len(d) == 0:
        return WilcoxonPaired(0, math.nan, math.nan, math.nan)
    nz = d[d != 0]
    if len(nz) == 0:
        return WilcoxonPaired(len(d), 0.0, 1.0, 0.0)
    ranks = stats.rankdata(np.abs(nz))
    w_plus, w_minus = float(ranks[nz > 0].sum()), float(ranks[nz < 0].sum())
    res = stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
    return WilcoxonPaired(len(d), float(res.statistic), float(res.pvalue), (w_plus - w_minus) / (w_plus + w_minus))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaNs are kept and not counted)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), np.nan)
    idx = [i for i in np.argsort(p, kind="stable") if math.isfinite(p[i])]
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


@dataclass(frozen=True)
class PairwiseTest:
    a: str
    b: str
    n_a: int
    n_b: int
    median_a: float
    median_b: float
    mw_u: float
    mw_p: float
    mw_p_holm: float
    cliffs_delta: float
    wilcoxon_pairs: int
    wilcoxon_stat: float
    wilcoxon_p: float
    wilcoxon_p_holm: float
    wilcoxon_r: float

    def to_dict(self) -> dict:
        return asdict(self)


def pairwise_tests(final: Mapping[str, Mapping[int, float]],
                   pairs: Sequence[tuple[str, str]] | None = None) -> list[PairwiseTest]:
    """Every pair of strategies (or the ``pairs`` given), on the final best value per seed.

    ``final[strategy][seed]`` is the incumbent's value at the budget. Mann-Whitney U
    treats the seeds as independent samples; Wilcoxon pairs them by seed (same seed,
    same first random draws for several strategies). Holm's correction is applied within
    each test family over all pairs.
    """
    rows = []
    for sa, sb in (pairs if pairs is not None else itertools.combinations(list(final), 2)):
        va, vb = list(final[sa].values()), list(final[sb].values())
        mw = mann_whitney(va, vb)
        wx = wilcoxon_paired(final[sa], final[sb])
        rows.append(dict(
            a=sa, b=sb, n_a=len(va), n_b=len(vb),
            median_a=float(np.median(va)) if va else math.nan, median_b=float(np.median(vb)) if vb else math.nan,
            mw_u=mw.u, mw_p=mw.pvalue, cliffs_delta=mw.cliffs_delta,
            wilcoxon_pairs=wx.n_pairs, wilcoxon_stat=wx.statistic, wilcoxon_p=wx.pvalue, wilcoxon_r=wx.rank_biserial,
        ))
    mw_holm = holm([r["mw_p"] for r in rows])
    wx_holm = holm([r["wilcoxon_p"] for r in rows])
    return [PairwiseTest(**r, mw_p_holm=mh, wilcoxon_p_holm=wh) for r, mh, wh in zip(rows, mw_holm, wx_holm)]


def pruner_effects(final: Mapping[str, Mapping[int, float]]) -> list[PairwiseTest]:
    """Each pruned arm (``evolution+median``) against its strategy without a pruner, by seed: the
    question "does this pruner help this strategy" as its own test family (Holm within it)."""
    pairs = [(arm, arm.partition("+")[0]) for arm in final if "+" in arm and arm.partition("+")[0] in final]
    return pairwise_tests(final, pairs) if pairs else []
