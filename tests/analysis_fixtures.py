"""Small real Optuna studies in the project's trial schema, for the analysis tests."""
from __future__ import annotations

import datetime as dt
from typing import Callable

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from dpc.cost import cell_cost
from dpc.genome import Genome
from dpc.mutation import sample_genome
from dpc.ops import OP_NAMES

optuna.logging.set_verbosity(optuna.logging.WARNING)
T0 = dt.datetime(2025, 1, 1, 12, 0, 0)


def distributions(branches: int = 5) -> dict:
    d = {}
    for b in range(branches):
        d[f"b{b}_input"] = CategoricalDistribution(list(range(-1, b)))
        d[f"b{b}_op"] = CategoricalDistribution(list(OP_NAMES))
    return d


def toy_value(g: Genome) -> float:
    """A deterministic stand-in for mIOU in [0, 1]: more sep3x3 context, higher value."""
    s = sum(0.15 + 0.01 * (br.op.size[0] + br.op.size[1]) / 2 if br.op.kind == "sep3x3" else 0.05 for br in g.branches)
    return float(min(s / 2.5, 1.0))


def add_trial(study: optuna.Study, genome: Genome, value: float | None, start: float, end: float,
              state: TrialState = TrialState.COMPLETE, measured: bool = True, **attrs) -> None:
    ua = {"genome": str(genome), "genome_hash": genome.canonical_hash(), "json": genome.to_json(), "origin": "test"}
    if measured and state == TrialState.COMPLETE:
        c = cell_cost(genome, 40, 8, 8, 16, 16)
        ua.update(miou=value, params=c.params, flops=c.flops, train_seconds=end - start, eval_seconds=0.1)
    if state == TrialState.FAIL:
        ua["failure_reason"] = "test failure"
    ua.update(attrs)
    t = optuna.trial.create_trial(state=state, value=value if state == TrialState.COMPLETE else None,
                                  params=genome.to_params(), distributions=distributions(len(genome)), user_attrs=ua)
    t.datetime_start = T0 + dt.timedelta(seconds=start)
    t.datetime_complete = T0 + dt.timedelta(seconds=end)
    study.add_trial(t)


def make_study(storage, name: str, strategy: str | None, seed: int, n: int, value: Callable[[Genome], float] = toy_value,
               bias: float = 0.0, seconds: float = 2.0, fail_every: int = 0, measured: bool = True,
               experiment_attrs: dict | None = None) -> optuna.Study:
    """A study of ``n`` sequential evaluations of random cells; ``bias`` lifts every value."""
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize", load_if_exists=True)
    attrs = {"strategy": strategy, "seed": seed, "budget": n, "objective": "toy", "config": "test",
             "command": f"make_study {name}"} if strategy else {}
    attrs.update(experiment_attrs or {})
    for k, v in attrs.items():
        study.set_user_attr(k, v)
    rng = np.random.default_rng(1000 + seed)
    for i in range(n):
        g = sample_genome(rng)
        failed = fail_every and (i + 1) % fail_every == 0
        add_trial(study, g, None if failed else min(value(g) + bias, 1.0), i * seconds, (i + 1) * seconds,
                  state=TrialState.FAIL if failed else TrialState.COMPLETE, measured=measured)
    return study


# -- an objective with a test split ------------------------------------------------------------
class ValTestResult:
    """What an evaluator returns: val ``miou`` (the search signal) and the test split's value."""

    def __init__(self, miou: float, test_miou: float) -> None:
        self.miou, self.test_miou = miou, test_miou

    def to_dict(self) -> dict:
        return {"miou": self.miou, "test_miou": self.test_miou, "test_per_class_iou": [self.test_miou] * 2}


def seed_noise(seed: int | None) -> float:
    """A training seed's deterministic effect, within +-0.005 (0 for the config's seed)."""
    return 0.0 if seed is None else float(np.random.default_rng(seed).uniform(-0.005, 0.005))


def val_test(g: Genome, seed: int | None = None) -> ValTestResult:
    """Val rises with toy_value, test falls with it: the cell val prefers is the worse one on test."""
    v = toy_value(g)
    return ValTestResult(v + seed_noise(seed), 1.0 - v + seed_noise(None if seed is None else seed + 7))


val_test.has_test = True  # ``--objective analysis_fixtures:val_test`` scores a test split (as proxy and full do)
