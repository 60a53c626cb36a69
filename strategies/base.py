"""What every genome sampler shares: the whole cell proposed at once, state from the study.

A sampler proposes all ``b{i}_input`` / ``b{i}_op`` params of a trial in one
``sample_relative`` call, from the study's trials only, with random numbers derived from
``(seed, draw index)``. The draw index is the number of earlier trials the sampler itself
drew (trials re-run or enqueued with fixed params do not count), so:

- a sampler keeps no state in memory: a restarted worker, or a second worker on another
  machine, proposes what an uninterrupted single worker would have proposed from the
  same history (a crashed trial's re-run does not shift later draws);
- several workers need no per-worker seeds: their trials have different indices.

Uniform draws and every other random choice (coin flips, parents, mutations) use separate
streams, so at one seed `random`, `local` and `evolution` draw the same uniform cells at
the same indices (common random numbers: less noise when comparing strategies).
"""
from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from dpc.genome import DEFAULT_BRANCHES, Genome
from dpc.mutation import sample_genome

from .optuna_adapter import FIXED_PARAMS_KEY, set_trial_user_attr
from .space import search_space, whole_cell

log = logging.getLogger(__name__)

UNIFORM_STREAM, CHOICE_STREAM, TPE_STREAM, INDEPENDENT_STREAM = 0, 1, 2, 3


def check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def draw_index(study: Study, trial: FrozenTrial, branches: int) -> int:
    """How many earlier trials of the study were drawn by a sampler (not fixed/enqueued;
    a trial whose worker died before its whole cell was written does not count)."""
    return sum(
        1
        for t in study.get_trials(deepcopy=False)
        if t.number < trial.number and whole_cell(t.params, branches) and FIXED_PARAMS_KEY not in t.system_attrs
    )


def rng_for(seed: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, index, stream])


def int_seed_for(seed: int, index: int, stream: int) -> int:
    """A 32-bit seed for APIs that take one (numpy RandomState inside Optuna)."""
    return int(np.random.SeedSequence([seed, index, stream]).generate_state(1)[0])


TEST_PREFIX = "test_"  # user attrs scored on the test split: reporting only, never shown to a sampler


def without_test(t: FrozenTrial) -> FrozenTrial:
    """A copy of ``t`` without its test-split attributes (``test_miou``, ``test_per_class_iou``)."""
    if not any(k.startswith(TEST_PREFIX) for k in t.user_attrs):
        return t
    t = copy.copy(t)
    t.user_attrs = {k: v for k, v in t.user_attrs.items() if not k.startswith(TEST_PREFIX)}
    return t


def completed_trials(study: Study, branches: int, cache: dict | None = None) -> list[FrozenTrial]:
    """COMPLETE trials with a finite value and genome params: the history samplers use.

    Their value is the validation mIOU; test-split attributes are removed, so no strategy can
    select on the test split. (Params are only checked for presence here; they are parsed
    when a trial is used.) ``cache`` (trial id -> cleaned copy) keeps the copies between
    proposals: a finished trial never changes.
    """
    last = f"b{branches - 1}_op"
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.value is not None and math.isfinite(t.value) and last in t.params and f"b{branches}_op" not in t.params:
            if cache is None:
                out.append(without_test(t))
                continue
            key = (t._trial_id, t.number)
            if key not in cache:
                cache[key] = without_test(t)
            out.append(cache[key])
    return out


def ranked(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """Best first (maximisation); ties go to the earlier trial."""
    return sorted(trials, key=lambda t: (-float(t.value), t.number))


@dataclass(frozen=True)
class Setting:
    """One strategy setting, declared once: the sampler keyword, its bounds, its budget-scaled
    default and its CLI flag (``strategies.run`` and ``benchmarks.compare`` generate their
    argument groups from these; the study stores the chosen values as ``strategy_params``)."""

    name: str  # the sampler's keyword argument
    kind: type  # int | float | bool
    help: str
    default: Callable[[int, Mapping[str, Any]], Any]  # (budget, explicit settings) -> value
    low: float | None = None
    high: float | None = None
    flag: str | None = None  # e.g. "--population"; None: API only

    def check(self, value: Any) -> Any:
        """The value as ``kind``, or a one-line ValueError that states the bounds."""
        ok = not isinstance(value, bool) or self.kind is bool
        if ok and self.kind is int:
            ok = isinstance(value, (int, np.integer)) or (isinstance(value, float) and value.is_integer())
        elif ok and self.kind is float:
            ok = isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(float(value))
        elif ok and self.kind is bool:
            ok = isinstance(value, bool)
        if ok and self.kind is not bool:
            value = self.kind(value)
            ok = (self.low is None or value >= self.low) and (self.high is None or value <= self.high)
        if not ok:
            raise ValueError(f"setting {self.name} must be {self.expected()}, got {value!r}")
        return value

    def expected(self) -> str:
        if self.kind is bool:
            return "true or false"
        what = "an integer" if self.kind is int else "a number"
        if self.low is not None and self.high is not None:
            return f"{what} in [{self.low:g}, {self.high:g}]"
        if self.low is not None:
            return f"{what} >= {self.low:g}"
        return what


@dataclass
class Proposal:
    genome: Genome
    origin: str  # "random" | "mutation" | "tpe"
    parent: int | None = None  # trial number of the mutated parent
    attrs: dict[str, Any] = field(default_factory=dict)  # extra user attrs (e.g. tournament)


class GenomeSampler(BaseSampler):
    """Base class: subclasses implement ``propose`` from the completed trials."""

    strategy = "base"

    def __init__(self, seed: int = 0, branches: int = DEFAULT_BRANCHES) -> None:
        self.seed = check_seed(seed)
        self.branches = int(branches)
        self._space = search_space(self.branches)
        self._history: dict = {}  # completed_trials' cache

    # -- what subclasses implement -----------------------------------------------------
    def propose(self, completed: list[FrozenTrial], index: int, trial: FrozenTrial) -> Proposal:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """The strategy's settings, stored on the study as ``strategy_params``."""
        return {}

    # -- helpers for subclasses ------------------------------------------------------------
    def uniform(self, index: int) -> Genome:
        return sample_genome(rng_for(self.seed, index, UNIFORM_STREAM), self.branches)

    def choices(self, index: int) -> np.random.Generator:
        return rng_for(self.seed, index, CHOICE_STREAM)

    # -- Optuna's sampler interface ----------------------------------------------------------
    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(self._space)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        index = draw_index(study, trial, self.branches)
        proposal = self.propose(completed_trials(study, self.branches, self._history), index, trial)
        if len(proposal.genome) != self.branches:
            raise RuntimeError(f"{self.strategy}: proposed {len(proposal.genome)} branches, expected {self.branches}")
        set_trial_user_attr(study, trial, "origin", proposal.origin)
        set_trial_user_attr(study, trial, "parent", proposal.parent)
        for key, value in proposal.attrs.items():
            set_trial_user_attr(study, trial, key, value)
        params = proposal.genome.to_params()
        return {name: params[name] for name in search_space if name in params}

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        # Only reached for parameters outside the genome space (a user's extra suggest).
        sub = int_seed_for(self.seed, trial.number, INDEPENDENT_STREAM)
        return optuna.samplers.RandomSampler(seed=sub).sample_independent(study, trial, param_name, param_distribution)
