"""The few Optuna internals dpc-nas relies on, in one place.

Optuna's public API has no way to start a trial with attributes already set (``ask`` creates
the trial, and only a second write can say who runs it), to reach a study's storage and id,
or a trial's id. Every such use goes through this module, and ``tests/test_optuna_adapter.py``
fails loudly if a supported Optuna version changes them.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping

import optuna
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage
from optuna.study import Study
from optuna.trial import FrozenTrial, Trial, TrialState

FIXED_PARAMS_KEY = "fixed_params"  # Optuna's system attr of enqueued trials (Trial reads it)


def storage_of(study: Study) -> BaseStorage:
    return study._storage


def study_id(study: Study) -> int:
    return study._study_id


def trial_id(trial: Trial | FrozenTrial) -> int:
    return trial._trial_id


def set_trial_user_attr(study: Study, trial: Trial | FrozenTrial, key: str, value: Any) -> None:
    """Set a user attr of a trial a sampler only holds as a FrozenTrial (``Trial`` has no setter there)."""
    study._storage.set_trial_user_attr(trial._trial_id, key, value)


def reseed_tpe(sampler: Any, tpe_seed: int, startup_seed: int) -> None:
    """Reseed a ``TPESampler``'s own generator and its random-startup sampler's (no public API)."""
    sampler._rng.rng.seed(tpe_seed)
    sampler._random_sampler._rng.rng.seed(startup_seed)


def start_trial(
    study: Study,
    space: Mapping[str, BaseDistribution],
    *,
    params: Mapping[str, Any] | None = None,
    user_attrs: Mapping[str, Any] | None = None,
    system_attrs: Mapping[str, Any] | None = None,
) -> Trial:
    """A RUNNING trial created in one storage write with its attributes (and fixed params).

    Unlike ``study.ask`` + ``set_*_attr``, a worker killed at any instant leaves either no
    trial or a trial that says who runs it. The params of ``space`` not given are drawn by
    the study's sampler, as ``study.ask(space)`` would.
    """
    params = dict(params or {})
    template = FrozenTrial(
        number=-1,
        state=TrialState.RUNNING,
        value=None,
        datetime_start=datetime.now(timezone.utc),
        datetime_complete=None,
        params=params,
        distributions={name: space[name] for name in params},
        user_attrs=dict(user_attrs or {}),
        system_attrs=dict(system_attrs or {}),
        intermediate_values={},
        trial_id=-1,
    )
    new_id = study._storage.create_new_trial(study._study_id, template_trial=template)
    study._thread_local.cached_all_trials = None  # as ``ask`` does: the sampler sees this trial
    trial = optuna.Trial(study, new_id)
    for name, distribution in space.items():
        trial._suggest(name, distribution)
    return trial


def trial_seconds(t: FrozenTrial) -> float | None:
    """A finished trial's seconds: a replayed objective's ``simulated_seconds``, else start to end
    (in memory Optuna stores an aware start and a naive, local end: both made local and naive)."""
    if isinstance(t.user_attrs.get("simulated_seconds"), (int, float)):
        return float(t.user_attrs["simulated_seconds"])
    if t.datetime_start is None or t.datetime_complete is None:
        return None
    start, end = (d.astimezone().replace(tzinfo=None) if d.tzinfo else d for d in (t.datetime_start, t.datetime_complete))
    return (end - start).total_seconds()


def pop_waiting(study: Study, space: Mapping[str, BaseDistribution]) -> Trial | None:
    """Start the first WAITING (enqueued) trial, or None if there is none."""
    if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        return None
    trial = study.ask(dict(space))  # pops the WAITING trial (or creates one if another worker took it)
    return trial
