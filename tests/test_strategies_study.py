"""The worker loop through the Python API: budget, failures, dedupe, resume, stale trials."""
from __future__ import annotations

import math
import os
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from dpc.genome import Genome
from strategies import SearchError, search
from strategies.heartbeat import BEAT_KEY, OWNER_KEY, host_id, owner_record, stale_reason
from strategies.storage import StorageError, open_storage, redact
from strategies.study import BudgetStatus, pending_reruns, requeue_stale, start_rerun
from strategies.synthetic import FailingObjective, StructuredObjective

optuna.logging.set_verbosity(optuna.logging.WARNING)
OBJ = StructuredObjective(seed=0)


def trials_of(result, state=None):
    return [t for t in result.study.get_trials(deepcopy=False) if state is None or t.state == state]


def test_failures_are_recorded_and_count_against_the_budget():
    calls = []

    def objective(genome):
        calls.append(genome)
        if len(calls) % 3 == 0:
            raise RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB")
        if len(calls) % 5 == 0:
            return math.nan
        return OBJ(genome)

    result = search(objective, "evolution", 20, 0, strategy_params={"population": 5})
    failed = trials_of(result, TrialState.FAIL)
    assert len(trials_of(result)) == 20 == len(calls)
    assert result.status.used == 20 and result.status.failed == len(failed) == 9  # 6 multiples of 3, then 5, 10, 20
    reasons = {t.user_attrs["failure_reason"] for t in failed}
    assert reasons == {"RuntimeError: CUDA out of memory. Tried to allocate 2 GiB", "objective returned nan"}
    assert all(t.user_attrs["failure_kind"] == "error" and "genome" in t.user_attrs for t in failed)
    assert result.best_value == max(t.value for t in trials_of(result, TrialState.COMPLETE))


def test_evaluation_error_reason_and_result_objects_are_stored():
    class Result:
        def __init__(self, miou):
            self.miou = miou

        def to_dict(self):
            return {"miou": self.miou, "flops": 123, "per_class_iou": [0.5, None], "train_seconds": 1.5}

    class EvaluationError(RuntimeError):
        def __init__(self, reason):
            super().__init__(reason)
            self.reason = reason

    def objective(genome):
        if genome.branches[0].op.kind == "pool":
            raise EvaluationError("NaN loss at iteration 12")
        return Result(OBJ(genome))

    result = search(FailingObjective(fail_rate=0.5), "random", 12, 1)
    assert {t.user_attrs["failure_reason"][:17] for t in trials_of(result, TrialState.FAIL)} == {"synthetic failure"}
    result = search(objective, "random", 30, 2)
    done = trials_of(result, TrialState.COMPLETE)
    assert done and all(t.user_attrs["flops"] == 123 and t.value == t.user_attrs["miou"] for t in done)
    failed = trials_of(result, TrialState.FAIL)
    assert failed and all(t.user_attrs["failure_reason"] == "NaN loss at iteration 12" for t in failed)


def test_an_always_failing_objective_stops_with_a_one_line_error():
    def broken(genome):
        raise ImportError("no module named foo")

    with pytest.raises(SearchError, match=r"^stopping: 4 evaluations failed in a row \(last: ImportError: no module named foo\)$"):
        search(broken, "random", 50, 0, max_consecutive_failures=4)


def test_dedupe_reuses_the_value_of_an_equivalent_cell(tmp_path):
    storage = str(tmp_path / "s.journal")
    calls = []

    def objective(genome):
        calls.append(genome)
        return OBJ(genome) + 0.001 * len(calls)  # a re-evaluation would give another value

    first = search(objective, "random", 3, 0, storage=storage, dedupe=True)
    t0 = first.study.trials[0]
    g0 = Genome.from_params(t0.params)
    relabelled = g0.canonical() if g0.canonical() != g0 else g0
    first.study.enqueue_trial(relabelled.to_params())
    again = search(objective, "random", 4, 0, storage=storage, dedupe=True)
    t3 = again.study.trials[3]
    assert len(calls) == 3  # the equivalent cell was not evaluated
    assert t3.state == TrialState.COMPLETE and t3.value == t0.value and t3.user_attrs["dedupe_of"] == 0
    assert t3.user_attrs["genome_hash"] == t0.user_attrs["genome_hash"]
    assert again.status.used == 4


def test_resume_continues_to_the_budget_and_reproduces_an_uninterrupted_run(tmp_path):
    storage = str(tmp_path / "r.journal")
    a = search(OBJ, "local", 6, 4, storage=storage, study_name="s")
    values = [t.value for t in a.study.trials]
    b = search(OBJ, "local", 15, 4, storage=storage, study_name="s")
    assert b.status.used == 15 and [t.value for t in b.study.trials[:6]] == values
    assert b.study.user_attrs["budget"] == 15 and b.strategy_params == a.strategy_params  # top_k kept from creation
    c = search(OBJ, "local", 15, 4, strategy_params={"top_k": a.strategy_params["top_k"]})
    assert [t.params for t in b.study.trials] == [t.params for t in c.study.trials]
    again = search(OBJ, "local", 15, 4, storage=storage, study_name="s")  # nothing left to do
    assert len(again.study.trials) == 15


def test_resume_refuses_a_different_objective_or_setting(tmp_path):
    storage = str(tmp_path / "m.journal")
    search(OBJ, "evolution", 3, 0, storage=storage, study_name="s", strategy_params={"population": 10})
    with pytest.raises(SearchError, match="was run with objective="):
        search("synthetic:slow,sleep=0", "evolution", 3, 0, storage=storage, study_name="s")
    with pytest.raises(SearchError, match="population=10, not 20"):
        search(OBJ, "evolution", 3, 0, storage=storage, study_name="s", strategy_params={"population": 20})
    with pytest.raises(SearchError, match="strategy='evolution', not 'random'"):
        search(OBJ, "random", 3, 0, storage=storage, study_name="s")


def test_study_attributes_follow_the_schema(tmp_path):
    r = search("synthetic", "tpe", 3, 5, storage=str(tmp_path / "a.journal"))
    ua = r.study.user_attrs
    assert r.study.study_name == "synthetic-structured-tpe-seed5"
    assert {k: ua[k] for k in ("strategy", "seed", "budget", "objective", "config", "branches")} == {
        "strategy": "tpe", "seed": 5, "budget": 3, "objective": "synthetic:structured", "config": None, "branches": 5}
    assert ua["strategy_params"]["n_startup_trials"] == 10 and "search(" in ua["command"]


def _running_trial(study, owner=None, beat=None):
    trial = study.ask({"b0_input": optuna.distributions.CategoricalDistribution([-1]),
                       "b0_op": optuna.distributions.CategoricalDistribution(["conv1x1", "pool_1x1"])})
    if owner is not None:
        study._storage.set_trial_system_attr(trial._trial_id, OWNER_KEY, owner)
    if beat is not None:
        study._storage.set_trial_system_attr(trial._trial_id, BEAT_KEY, beat)
    return study._storage.get_trial(trial._trial_id)


def test_stale_detection_dead_local_process_and_missing_heartbeat():
    study = optuna.create_study(direction="maximize")
    study.set_user_attr("branches", 1)  # the one-branch cells of _running_trial
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    mine = owner_record()
    t_dead = _running_trial(study, {**mine, "pid": dead.pid, "start": None}, time.time())
    t_alive = _running_trial(study, mine | {"pid": os.getppid(), "start": None}, time.time())
    t_remote_old = _running_trial(study, {"host": "elsewhere", "hostname": "gpu7", "pid": 1}, time.time() - 500)
    t_remote_new = _running_trial(study, {"host": "elsewhere", "hostname": "gpu7", "pid": 1}, time.time() - 5)
    assert "died" in stale_reason(t_dead, grace=60)
    assert stale_reason(t_alive, grace=60) is None
    assert "no heartbeat from worker 1 on gpu7 for 500 s" in stale_reason(t_remote_old, grace=60)
    assert stale_reason(t_remote_new, grace=60) is None
    assert host_id() == mine["host"]

    handled = requeue_stale(study, study.get_trials(deepcopy=False), grace=60, max_retry=1)
    assert handled == [t_dead.number, t_remote_old.number]
    trials = study.get_trials(deepcopy=False)
    for old in (t_dead, t_remote_old):
        assert trials[old.number].state == TrialState.FAIL
        assert trials[old.number].user_attrs["failure_kind"] == "stale"
        assert trials[old.number].user_attrs["failure_reason"].startswith("stale: ")
    assert [t.number for t in pending_reruns(trials, 1)] == [t_dead.number, t_remote_old.number]
    status = BudgetStatus.of(trials)
    assert (status.used, status.requeued, status.running, status.waiting) == (0, 2, 2, 0)

    # The re-run is started with its owner, params and retry count in one write.
    rerun = start_rerun(study, trials[t_dead.number], dict(trials[t_dead.number].distributions))
    frozen = study._storage.get_trial(rerun._trial_id)
    assert frozen.state == TrialState.RUNNING and frozen.params == t_dead.params
    assert frozen.user_attrs["retry_of"] == t_dead.number and frozen.system_attrs[OWNER_KEY]["pid"] == os.getpid()
    assert [t.number for t in pending_reruns(study.get_trials(deepcopy=False), 1)] == [t_remote_old.number]

    # A re-run whose worker dies again, beyond max_retry, counts as a failed evaluation.
    study._storage.set_trial_system_attr(rerun._trial_id, OWNER_KEY, {**mine, "pid": dead.pid, "start": None})
    requeue_stale(study, study.get_trials(deepcopy=False), grace=60, max_retry=1)
    gone = study._storage.get_trial(rerun._trial_id)
    assert gone.state == TrialState.FAIL and gone.user_attrs["failure_kind"] == "error"
    assert "given up after 1 re-runs" in gone.user_attrs["failure_reason"]


def test_storage_errors_are_one_line(tmp_path):
    with pytest.raises(StorageError, match="cannot open storage postgresql://u:\\*\\*\\*@127.0.0.1:1/x") as e:
        open_storage("postgresql://u:secret@127.0.0.1:1/x")
    assert "\n" not in str(e.value) and "secret" not in str(e.value)
    (tmp_path / "file").write_text("")
    with pytest.raises(StorageError, match="cannot open journal file"):
        open_storage(str(tmp_path / "file" / "x.journal"))
    assert redact("postgresql://a:b@h/d") == "postgresql://a:***@h/d"
    assert open_storage(None).persistent is False


def test_a_worker_declared_stale_loses_its_result_quietly(tmp_path):
    """A live worker whose trial another worker failed as stale while it ran (grace too
    short) neither crashes nor duplicates the cell: the re-run is the trial that counts."""
    from strategies.objectives import resolve_objective
    from strategies.settings import SearchSettings
    from strategies.space import search_space
    from strategies.study import requeue, run_trial

    handle = open_storage(str(tmp_path / "l.journal"))
    study = optuna.create_study(storage=handle.storage, direction="maximize")

    def declared_stale_while_running(finish):
        def objective(genome):
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))[0]
            requeue(study, running, "stale", "stale: test", max_retry=9)  # "another worker"
            return finish(genome)
        return objective

    for finish in (OBJ, FailingObjective(fail_rate=1.0), OBJ):
        trial = study.ask(search_space())
        state, _ = run_trial(study, trial, resolve_objective(declared_stale_while_running(finish)),
                             SearchSettings(budget=5), heartbeat=False)
        assert state == "LOST"
        assert study._storage.get_trial(trial._trial_id).user_attrs["failure_kind"] == "stale"
    trial = study.ask(search_space())  # and a trial failed before it even started
    requeue(study, study._storage.get_trial(trial._trial_id), "stale", "stale: test", max_retry=9)
    assert run_trial(study, trial, resolve_objective(OBJ), SearchSettings(budget=5), heartbeat=False)[0] == "LOST"
    trials = study.get_trials(deepcopy=False)
    status = BudgetStatus.of(trials)
    assert (status.used, status.requeued, status.waiting) == (0, 4, 0)
    assert len(pending_reruns(trials)) == 4  # every cell is re-run by the next worker to start a trial
