"""The strategies by name. A new strategy is one file (its sampler, with its ``SETTINGS``)
plus one line here; the CLIs' flags and the budget-scaled defaults come from ``SETTINGS``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from optuna.samplers import BaseSampler

from dpc.genome import DEFAULT_BRANCHES

from .base import Setting
from .evolution import EvolutionGenomeSampler
from .local import LocalGenomeSampler
from .random_sampler import RandomGenomeSampler
from .tpe import TPEGenomeSampler


@dataclass(frozen=True)
class Strategy:
    name: str
    summary: str
    sampler: Callable[..., BaseSampler]  # (seed=, branches=, **settings); its SETTINGS declare them

    @property
    def settings(self) -> tuple[Setting, ...]:
        return tuple(getattr(self.sampler, "SETTINGS", ()))

    def defaults(self, budget: int, explicit: Mapping[str, Any]) -> dict[str, Any]:
        return {s.name: s.default(budget, explicit) for s in self.settings}


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("random", "uniform over the space", RandomGenomeSampler),
        Strategy("local", "Vizier-style random search with local perturbation (Chen et al. 2018)", LocalGenomeSampler),
        Strategy("evolution", "regularized (aging) evolution (Real et al. 2019)", EvolutionGenomeSampler),
        Strategy("tpe", "Optuna's multivariate, grouped TPE with constant liar", TPEGenomeSampler),
    )
}


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


def all_settings() -> dict[str, Setting]:
    """Every strategy's settings by name (a name shared by two strategies is one setting)."""
    out: dict[str, Setting] = {}
    for strategy in STRATEGIES.values():
        for s in strategy.settings:
            out.setdefault(s.name, s)
    return out


def strategy_params(name: str, budget: int, explicit: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults for ``budget`` overridden by ``explicit``; unknown keys and bad values are an error."""
    strategy = get_strategy(name)
    declared = {s.name: s for s in strategy.settings}
    explicit = {k: v for k, v in (explicit or {}).items() if v is not None}
    unknown = sorted(set(explicit) - set(declared))
    if unknown:
        raise ValueError(f"strategy {name!r} takes no setting {', '.join(unknown)} (it takes: {', '.join(declared) or 'none'})")
    explicit = {k: declared[k].check(v) for k, v in explicit.items()}
    params = strategy.defaults(budget, explicit)
    params.update(explicit)
    return params


def make_sampler(
    strategy: str, seed: int = 0, branches: int = DEFAULT_BRANCHES, budget: int = 100, **params: Any
) -> BaseSampler:
    """A seeded sampler for ``strategy``; unspecified settings get the defaults for ``budget``."""
    return get_strategy(strategy).sampler(seed=seed, branches=branches, **strategy_params(strategy, budget, params))
