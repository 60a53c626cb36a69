"""Pruners: stop a weak candidate early, composed with any strategy (``--pruner``).

The evaluators report the val mIOU (never test) at the config's evaluation steps (``eval_every``;
with a pruner and a config that evaluates only at the end, ``strategies.api.search`` sets it to a
sixth of the training); after each report the worker asks the study's pruner, and a pruned trial
stops its training there (the report callback raises ``optuna.TrialPruned`` inside the training
loop) and is stored as PRUNED with ``pruned_step`` and ``compute`` (steps done / steps of a full
evaluation). Its value is its last reported val mIOU; the strategies treat it thus:

- ``random`` ignores history; ``evolution`` and ``local`` only pick COMPLETE trials as parents and
  members of the population / top-k (a pruned trial never trained fully, so its value is not
  comparable); ``tpe`` is Optuna's TPESampler, which ranks pruned trials below complete ones by the
  step they reached and then their last value.

Pruners (Optuna's, with their settings declared once here as ``Setting``s, flags for every CLI):
``none``; ``median`` (MedianPruner: below the median of earlier trials at the same step);
``asha`` (SuccessiveHalvingPruner, asynchronous successive halving); ``hyperband``
(HyperbandPruner: several ASHA brackets). Optuna's WilcoxonPruner is not offered: it compares
per-instance values of one evaluation, while these evaluators report one val mIOU per training
step (per-image IoU at every step would cost an evaluation of each image each time).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import optuna

from .base import Setting


def _min_resource(params: Mapping[str, Any]) -> Any:
    return params["min_resource"] or "auto"


@dataclass(frozen=True)
class Pruner:
    name: str
    summary: str
    make: Callable[[Mapping[str, Any]], optuna.pruners.BasePruner]
    settings: tuple[Setting, ...] = ()


STARTUP = Setting("prune_startup", int, "median: trials that are never pruned, to form the median (default 5)",
                  lambda budget, chosen: 5, low=0, high=1_000_000, flag="--prune-startup")
WARMUP = Setting("prune_warmup", int, "median: steps before a trial can be pruned (default 0)",
                 lambda budget, chosen: 0, low=0, high=10**9, flag="--prune-warmup")
REDUCTION = Setting("reduction_factor", int, "asha/hyperband: keep the top 1/eta at each rung (default 3)",
                    lambda budget, chosen: 3, low=2, high=1000, flag="--reduction-factor")
MIN_RESOURCE = Setting("min_resource", int, "asha/hyperband: steps of the first rung (default 0: Optuna's auto, "
                       "a hundredth of a full training)", lambda budget, chosen: 0, low=0, high=10**9, flag="--min-resource")

PRUNERS: dict[str, Pruner] = {
    p.name: p
    for p in (
        Pruner("none", "every candidate trains its full budget", lambda p: optuna.pruners.NopPruner()),
        Pruner("median", "stop below the median of earlier trials at the same step (Optuna's MedianPruner)",
               lambda p: optuna.pruners.MedianPruner(n_startup_trials=p["prune_startup"], n_warmup_steps=p["prune_warmup"]),
               (STARTUP, WARMUP)),
        Pruner("asha", "asynchronous successive halving (Optuna's SuccessiveHalvingPruner)",
               lambda p: optuna.pruners.SuccessiveHalvingPruner(min_resource=_min_resource(p),
                                                                reduction_factor=p["reduction_factor"]),
               (REDUCTION, MIN_RESOURCE)),
        Pruner("hyperband", "Hyperband: several successive-halving brackets (Optuna's HyperbandPruner)",
               lambda p: optuna.pruners.HyperbandPruner(min_resource=p["min_resource"] or 1,
                                                        reduction_factor=p["reduction_factor"]),
               (REDUCTION, MIN_RESOURCE)),
    )
}


def get_pruner(name: str) -> Pruner:
    if name not in PRUNERS:
        raise ValueError(f"unknown pruner {name!r}; known: {', '.join(PRUNERS)}")
    return PRUNERS[name]


def pruner_settings() -> dict[str, Setting]:
    """Every pruner's settings by name (one entry per shared name), for the CLIs' flags."""
    out: dict[str, Setting] = {}
    for p in PRUNERS.values():
        for s in p.settings:
            out.setdefault(s.name, s)
    return out


def pruner_params(name: str, explicit: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The pruner's settings: defaults overridden by ``explicit``; a setting it does not take is an error."""
    pruner = get_pruner(name)
    declared = {s.name: s for s in pruner.settings}
    explicit = {k: v for k, v in (explicit or {}).items() if v is not None}
    unknown = sorted(set(explicit) - set(declared))
    if unknown:
        raise ValueError(f"pruner {name!r} takes no setting {', '.join(unknown)} (it takes: {', '.join(declared) or 'none'})")
    params = {s.name: s.default(0, explicit) for s in pruner.settings}
    params.update({k: declared[k].check(v) for k, v in explicit.items()})
    return params


def make_pruner(name: str, params: Mapping[str, Any] | None = None) -> optuna.pruners.BasePruner:
    return get_pruner(name).make(pruner_params(name, params))


def eval_every_for(objective: Any, pruner: str, eval_every: int | None) -> int | None:
    """The ``eval_every`` a search with ``pruner`` needs: the given one, or for an evaluator that
    reports only at the end a sixth of its training; a ValueError for an objective without curves."""
    if pruner == "none" or eval_every is not None:
        return eval_every
    if not getattr(objective, "takes_callback", False) or not getattr(objective, "steps", None):
        raise ValueError(f"--pruner {pruner} needs an objective that reports intermediate values during training "
                         f"(proxy, full, bench); {getattr(objective, 'spec', objective)} does not")
    return None if objective.eval_every else max(1, objective.steps // 6)
