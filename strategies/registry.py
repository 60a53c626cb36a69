"""The four strategies by name: their samplers and their budget-scaled default settings."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from optuna.samplers import BaseSampler

from dpc.genome import DEFAULT_BRANCHES

from .evolution import EvolutionSampler, default_population, default_tournament
from .local import DEFAULT_P_RANDOM, LocalSearchSampler, default_top_k
from .random_sampler import RandomGenomeSampler
from .tpe import DEFAULT_EI_CANDIDATES, DEFAULT_STARTUP, GenomeTPESampler


@dataclass(frozen=True)
class Strategy:
    name: str
    summary: str
    sampler: Callable[..., BaseSampler]  # (seed=, branches=, **params)
    defaults: Callable[[int, Mapping[str, Any]], dict[str, Any]]  # (budget, explicit) -> params


def _evolution_defaults(budget: int, explicit: Mapping[str, Any]) -> dict[str, Any]:
    population = int(explicit.get("population") or default_population(budget))
    return {"population": population, "tournament": min(population, default_tournament(population))}


STRATEGIES: dict[str, Strategy] = {
    "random": Strategy("random", "uniform over the space", RandomGenomeSampler, lambda b, e: {}),
    "local": Strategy(
        "local",
        "Vizier-style random search with local perturbation (Chen et al. 2018)",
        LocalSearchSampler,
        lambda b, e: {"p_random": DEFAULT_P_RANDOM, "top_k": default_top_k(b)},
    ),
    "evolution": Strategy(
        "evolution", "regularized (aging) evolution (Real et al. 2019)", EvolutionSampler, _evolution_defaults
    ),
    "tpe": Strategy(
        "tpe",
        "Optuna's multivariate, grouped TPE with constant liar",
        GenomeTPESampler,
        lambda b, e: {"n_startup_trials": DEFAULT_STARTUP, "n_ei_candidates": DEFAULT_EI_CANDIDATES, "constant_liar": True},
    ),
}


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


def strategy_params(name: str, budget: int, explicit: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults for ``budget`` overridden by ``explicit``; unknown keys are an error."""
    strategy = get_strategy(name)
    explicit = {k: v for k, v in (explicit or {}).items() if v is not None}
    params = strategy.defaults(budget, explicit)
    unknown = sorted(set(explicit) - set(params))
    if unknown:
        raise ValueError(f"strategy {name!r} takes no setting {', '.join(unknown)} (it takes: {', '.join(params) or 'none'})")
    params.update(explicit)
    return params


def make_sampler(
    strategy: str, seed: int = 0, branches: int = DEFAULT_BRANCHES, budget: int = 100, **params: Any
) -> BaseSampler:
    """A seeded sampler for ``strategy``; unspecified settings get the defaults for ``budget``."""
    return get_strategy(strategy).sampler(seed=seed, branches=branches, **strategy_params(strategy, budget, params))
