"""The Optuna internals dpc-nas relies on (all in ``strategies.optuna_adapter``) still behave.

If a supported Optuna release renames or changes one of them, this fails first, naming it.
"""
from __future__ import annotations

import json

import optuna
from optuna.trial import TrialState

from strategies import optuna_adapter as oa
from strategies.journal import SafeJournalBackend
from strategies.space import search_space
from strategies.tpe import TPEGenomeSampler


def test_private_attributes_exist():
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    assert isinstance(oa.storage_of(study), optuna.storages.BaseStorage)
    assert isinstance(oa.study_id(study), int) and isinstance(oa.trial_id(trial), int)
    assert hasattr(study, "_thread_local") and hasattr(trial, "_suggest")
    sampler = TPEGenomeSampler(seed=0)
    oa.reseed_tpe(sampler, 1, 2)  # TPESampler._rng.rng and ._random_sampler._rng.rng
    assert sampler._rng.rng.randint(1000) == __import__("numpy").random.RandomState(1).randint(1000)


def test_start_trial_is_one_record_with_its_attributes_and_params(tmp_path):
    path = tmp_path / "a.journal"
    storage = optuna.storages.JournalStorage(SafeJournalBackend(path))
    study = optuna.create_study(storage=storage, direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    space = search_space(2)
    params = {"b0_input": -1, "b0_op": "conv1x1", "b1_input": 0, "b1_op": "pool_2x2"}
    before = len(path.read_text().splitlines())
    trial = oa.start_trial(study, space, params=params, user_attrs={"u": 1}, system_attrs={"s": 2})
    lines = [json.loads(x) for x in path.read_text().splitlines()[before:]]
    assert len(lines) == 1 and lines[0]["op_code"] == 4  # one CREATE_TRIAL record, nothing else
    frozen = storage.get_trial(oa.trial_id(trial))
    assert frozen.state == TrialState.RUNNING and frozen.params == params
    assert frozen.user_attrs == {"u": 1} and frozen.system_attrs == {"s": 2}
    drawn = oa.start_trial(study, space)  # the sampler draws what is not given, as ask(space) does
    assert set(drawn.params) == set(space)
    oa.set_trial_user_attr(study, storage.get_trial(oa.trial_id(drawn)), "k", "v")
    assert storage.get_trial(oa.trial_id(drawn)).user_attrs["k"] == "v"


def test_pop_waiting_takes_an_enqueued_trial_with_its_fixed_params():
    study = optuna.create_study(direction="maximize")
    assert oa.pop_waiting(study, search_space(1)) is None
    study.enqueue_trial({"b0_input": -1, "b0_op": "conv1x1"})
    trial = oa.pop_waiting(study, search_space(1))
    frozen = oa.storage_of(study).get_trial(oa.trial_id(trial))
    assert frozen.state == TrialState.RUNNING and frozen.params == {"b0_input": -1, "b0_op": "conv1x1"}
    assert oa.FIXED_PARAMS_KEY in frozen.system_attrs
