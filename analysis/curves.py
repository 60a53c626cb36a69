"""Best-so-far curves: the incumbent's value after n evaluations, or after t seconds.

The incumbent is chosen on the objective's own value (the proxy's validation mIOU for a
proxy search), as a practitioner would. Evaluations are counted in completion order
over the trials that spent budget (a failed evaluation spends budget but sets no
incumbent; a trial failed because its worker died or was interrupted does not, as the
worker loop re-runs it), so with parallel workers "after n evaluations" means after the
n-th result came back.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from .load import TrialRecord


def best_so_far(values: Sequence[float]) -> np.ndarray:
    """Running maximum, ignoring NaN (failures); NaN until the first finite value."""
    v = np.asarray(values, dtype=float)
    out = np.full(len(v), np.nan)
    best = -math.inf
    for i, x in enumerate(v):
        if math.isfinite(x) and x > best:
            best = x
        out[i] = best if best > -math.inf else np.nan
    return out


def completion_order(records: Iterable[TrialRecord]) -> list[TrialRecord]:
    """Trials that spent budget, in the order their results came back (number breaks ties)."""
    done = [r for r in records if r.spent]
    far = float("inf")
    return sorted(done, key=lambda r: (r.elapsed if r.elapsed is not None else far, r.number))


@dataclass(frozen=True)
class Run:
    """One (strategy, seed) study: its values in completion order and their times."""

    strategy: str
    seed: int
    values: np.ndarray  # objective per finished evaluation, NaN for failures
    elapsed: np.ndarray  # seconds since the study's first start, per evaluation
    simulated: bool = False  # elapsed is a replayed objective's simulated clock (analysis.load)
    compute: np.ndarray | None = None  # full-evaluation equivalents spent up to each evaluation (pruned trials: < 1 each)

    @property
    def curve(self) -> np.ndarray:
        return best_so_far(self.values)

    def final(self, budget: int | None = None) -> float:
        """Incumbent value after ``budget`` evaluations (all of them if None)."""
        c = self.curve[:budget] if budget is not None else self.curve
        return float(c[-1]) if len(c) else math.nan


STRATEGY_ORDER = ("random", "local", "evolution", "tpe")  # baseline first, in tables and legends


PRUNER_ORDER = ("none", "median", "asha", "hyperband")


def _strategy_key(name: str) -> tuple[int, int, str]:
    """Strategies in STRATEGY_ORDER, each followed by its pruner arms (``evolution+median``) in PRUNER_ORDER."""
    strategy, _, pruner = name.partition("+")
    pruner = pruner or "none"
    return (STRATEGY_ORDER.index(strategy) if strategy in STRATEGY_ORDER else len(STRATEGY_ORDER),
            PRUNER_ORDER.index(pruner) if pruner in PRUNER_ORDER else len(PRUNER_ORDER), name)


def runs_from_records(records: Iterable[TrialRecord]) -> dict[str, dict[int, Run]]:
    """Group trial records into runs: ``runs[strategy][seed]``.

    Records without a strategy (reference or correlation studies) are skipped.
    """
    by: dict[tuple[str, int], list[TrialRecord]] = defaultdict(list)
    for r in records:
        if r.strategy is not None and r.seed is not None:
            by[(r.strategy, r.seed)].append(r)
    out: dict[str, dict[int, Run]] = defaultdict(dict)
    for (strategy, seed), recs in sorted(by.items(), key=lambda kv: (_strategy_key(kv[0][0]), kv[0][1])):
        ordered = completion_order(recs)
        out[strategy][seed] = Run(
            strategy, seed,
            np.array([r.value for r in ordered], dtype=float),
            np.array([r.elapsed if r.elapsed is not None else np.nan for r in ordered], dtype=float),
            simulated=any(r.simulated for r in ordered),
            compute=np.cumsum([r.compute for r in ordered]) if ordered else np.zeros(0),
        )
    return dict(out)


@dataclass(frozen=True)
class Band:
    """Median and inter-quartile band of several runs' curves on a common x."""

    x: np.ndarray
    median: np.ndarray
    q25: np.ndarray
    q75: np.ndarray
    n_runs: np.ndarray  # runs with a value at each x

    def to_dict(self) -> dict:
        return {k: getattr(self, k).tolist() for k in ("x", "median", "q25", "q75", "n_runs")}


def _band(x: np.ndarray, curves: np.ndarray) -> Band:
    """Quantiles over runs (rows) where at least one run has a value."""
    n = np.isfinite(curves).sum(axis=0)
    med = np.full(curves.shape[1], np.nan)
    q25, q75 = med.copy(), med.copy()
    ok = n > 0
    if ok.any():
        q = np.nanpercentile(curves[:, ok], [25, 50, 75], axis=0)
        q25[ok], med[ok], q75[ok] = q
    return Band(x, med, q25, q75, n)


def band_by_evaluations(runs: Mapping[int, Run], budget: int | None = None) -> Band:
    """Best-so-far at evaluations 1..budget (default: the longest run).

    A run shorter than the budget (unfinished, or stopped) contributes only where it has
    data, so an unfinished run never looks better or worse than it was.
    """
    curves = [r.curve for r in runs.values()]
    length = budget if budget is not None else max((len(c) for c in curves), default=0)
    mat = np.full((len(curves), length), np.nan)
    for i, c in enumerate(curves):
        m = min(len(c), length)
        mat[i, :m] = c[:m]
    return _band(np.arange(1, length + 1), mat)


def step_at(times: np.ndarray, curve: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Value of a best-so-far step function at each grid time (NaN before the first result)."""
    keep = np.isfinite(times)
    t, c = times[keep], curve[keep]
    order = np.argsort(t, kind="stable")
    t, c = t[order], c[order]
    filled = np.maximum.accumulate(np.where(np.isfinite(c), c, -np.inf)) if len(c) else c
    idx = np.searchsorted(t, grid, side="right") - 1
    out = np.full(len(grid), np.nan)
    ok = idx >= 0
    out[ok] = filled[idx[ok]]
    out[np.isneginf(out)] = np.nan
    return out


def band_by_time(runs: Mapping[int, Run], points: int = 200, t_max: float | None = None) -> Band:
    """Best-so-far against wall-clock seconds on a common grid (0..longest run).

    Runs that finished early keep their final value to the end of the grid: their
    incumbent does not get worse after they stop.
    """
    ends = [float(np.nanmax(r.elapsed)) for r in runs.values() if np.isfinite(r.elapsed).any()]
    t_end = t_max if t_max is not None else max(ends, default=0.0)
    grid = np.linspace(0.0, t_end, points) if t_end > 0 else np.zeros(1)
    mat = np.vstack([step_at(r.elapsed, r.curve, grid) for r in runs.values()]) if runs else np.empty((0, len(grid)))
    return _band(grid, mat)


def band_by_compute(runs: Mapping[int, Run], points: int = 200, c_max: float | None = None) -> Band:
    """Best-so-far against compute (full-evaluation equivalents): a pruned and an unpruned run side by side."""
    ends = [float(r.compute[-1]) for r in runs.values() if r.compute is not None and len(r.compute)]
    c_end = c_max if c_max is not None else max(ends, default=0.0)
    grid = np.linspace(0.0, c_end, points) if c_end > 0 else np.zeros(1)
    mat = (np.vstack([step_at(r.compute if r.compute is not None else np.arange(1.0, len(r.values) + 1), r.curve, grid)
                      for r in runs.values()]) if runs else np.empty((0, len(grid))))
    return _band(grid, mat)


def final_at_compute(runs: Mapping[str, Mapping[int, Run]], compute: float) -> dict[str, dict[int, float]]:
    """``final[arm][seed]`` = incumbent value once ``compute`` equivalents are spent: the equal-compute comparison."""
    return {s: {seed: float(step_at(r.compute, r.curve, np.array([compute]))[0]) for seed, r in by_seed.items()}
            for s, by_seed in runs.items()}


def final_values(runs: Mapping[str, Mapping[int, Run]], budget: int | None = None) -> dict[str, dict[int, float]]:
    """``final[strategy][seed]`` = incumbent value at the budget, for the statistics."""
    return {s: {seed: run.final(budget) for seed, run in by_seed.items()} for s, by_seed in runs.items()}


def incumbents(records: Iterable[TrialRecord], budget: int | None = None) -> dict[str, dict[int, TrialRecord]]:
    """``inc[strategy][seed]``: the trial a search would report after ``budget`` evaluations.

    The best complete trial by value among the first ``budget`` evaluations in completion
    order (the trial behind ``Run.final``); a tie goes to the lowest trial number, as
    ``strategies.study.BudgetStatus`` picks the incumbent it re-trains. Runs without a
    complete trial are left out.
    """
    by: dict[tuple[str, int], list[TrialRecord]] = defaultdict(list)
    for r in records:
        if r.strategy is not None and r.seed is not None:
            by[(r.strategy, r.seed)].append(r)
    out: dict[str, dict[int, TrialRecord]] = defaultdict(dict)
    for (strategy, seed), recs in sorted(by.items(), key=lambda kv: (_strategy_key(kv[0][0]), kv[0][1])):
        done = [r for r in completion_order(recs)[:budget] if r.complete]
        if done:
            out[strategy][seed] = min(done, key=lambda r: (-r.value, r.number))
    return dict(out)
