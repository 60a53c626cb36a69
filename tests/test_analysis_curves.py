"""Loading studies into records, and best-so-far curves, on hand-computed examples."""
from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from analysis_fixtures import add_trial, make_study
from optuna.trial import TrialState

from analysis.curves import (
    Run,
    band_by_evaluations,
    band_by_time,
    best_so_far,
    final_values,
    incumbents,
    runs_from_records,
    step_at,
)
from analysis.load import AnalysisError, best_complete, load_all, load_study, read_storage
from dpc.genome import Genome

A = Genome.parse("F:conv1x1 F:sep3x3_6x6 0:sep3x3_1x1 F:pool_1x1 2:conv1x1")
A_RELABELLED = Genome.parse("F:pool_1x1 F:conv1x1 F:sep3x3_6x6 1:sep3x3_1x1 3:conv1x1")  # same graph
assert A.canonical_hash() == A_RELABELLED.canonical_hash() and str(A) != str(A_RELABELLED)
B = Genome.parse("F:sep3x3_12x12 0:sep3x3_1x1 1:sep3x3_3x3 F:conv1x1 F:pool_2x2")


def test_best_so_far_hand_example():
    got = best_so_far([np.nan, 0.3, 0.2, np.nan, 0.5, 0.4, 0.5, 0.7])
    want = [np.nan, 0.3, 0.3, 0.3, 0.5, 0.5, 0.5, 0.7]
    np.testing.assert_array_equal(got, want)
    assert len(best_so_far([])) == 0


def _study_with_order(storage):
    """Three trials whose completion order differs from their numbers (parallel workers)."""
    s = optuna.create_study(storage=storage, study_name="e-tpe-seed3", direction="maximize")
    for k, v in dict(strategy="tpe", seed=3, budget=4, objective="synthetic", config="test", command="x").items():
        s.set_user_attr(k, v)
    add_trial(s, A, 0.4, start=0, end=10)  # number 0, done at 10 s
    add_trial(s, B, 0.6, start=1, end=4)  # number 1, done first
    add_trial(s, B, None, start=2, end=6, state=TrialState.FAIL)  # failure: spends budget
    add_trial(s, A_RELABELLED, 0.5, start=3, end=12)
    return s


def test_load_records_and_runs_in_completion_order():
    st = optuna.storages.InMemoryStorage()
    _study_with_order(st)
    study, recs = load_study(st, "e-tpe-seed3")
    assert (study.strategy, study.seed, study.budget, study.experiment) == ("tpe", 3, 4, "e")
    assert (study.n_trials, study.n_complete) == (4, 3)
    assert [r.number for r in recs] == [0, 1, 2, 3]
    assert recs[0].genome == str(A) and recs[0].n_params is not None and recs[0].flops is not None
    assert recs[2].state == "FAIL" and math.isnan(recs[2].value) and not recs[2].complete and recs[2].finished
    assert [r.elapsed for r in recs] == [10, 4, 6, 12] and recs[1].duration == 3
    run = runs_from_records(recs)["tpe"][3]
    # completion order: #1 (0.6, t=4), #2 (fail, t=6), #0 (0.4, t=10), #3 (0.5, t=12)
    np.testing.assert_array_equal(run.values, [0.6, np.nan, 0.4, 0.5])
    np.testing.assert_array_equal(run.elapsed, [4, 6, 10, 12])
    np.testing.assert_array_equal(run.curve, [0.6, 0.6, 0.6, 0.6])
    assert run.final() == 0.6 and run.final(1) == 0.6
    # the incumbent behind run.final: the trial a report re-trains on test
    assert incumbents(recs)["tpe"][3].number == 1 and incumbents(recs, budget=1)["tpe"][3].number == 1
    # A and its relabelling are one cell: the distinct top list keeps only the better one
    top = best_complete(recs)
    assert [r.number for r in top] == [1, 3]
    assert len(best_complete(recs, distinct=False)) == 3


def test_bad_storage_and_study_names_are_one_line_errors(tmp_path):
    with pytest.raises(AnalysisError, match="not found"):
        read_storage(tmp_path / "missing.log")
    with pytest.raises(AnalysisError, match="not found"):
        read_storage(f"sqlite:///{tmp_path}/missing.db")
    st = read_storage(tmp_path / "j.log", create=True)
    make_study(st, "x-random-seed0", "random", 0, 3)
    with pytest.raises(AnalysisError, match=r"unknown study 'nope' \(studies in storage: x-random-seed0\)"):
        load_study(st, "nope")
    studies, recs = load_all(tmp_path / "j.log")  # by path: a journal file
    assert [s.name for s in studies] == ["x-random-seed0"] and len(recs) == 3


def test_band_by_evaluations_hand_example():
    runs = {
        0: Run("r", 0, np.array([0.1, 0.5, 0.2]), np.array([1.0, 2.0, 3.0])),
        1: Run("r", 1, np.array([0.3, 0.3, 0.4]), np.array([1.0, 2.0, 3.0])),
        2: Run("r", 2, np.array([np.nan, 0.2]), np.array([1.0, 2.0])),  # unfinished: 2 evaluations
    }
    band = band_by_evaluations(runs, budget=3)
    np.testing.assert_array_equal(band.x, [1, 2, 3])
    # curves: [.1,.5,.5], [.3,.3,.4], [nan,.2,-]
    np.testing.assert_allclose(band.median, [0.2, 0.3, 0.45])
    np.testing.assert_allclose(band.q25, [0.15, 0.25, 0.425])
    np.testing.assert_allclose(band.q75, [0.25, 0.4, 0.475])
    np.testing.assert_array_equal(band.n_runs, [2, 3, 2])
    assert np.all(np.diff(runs[0].curve) >= 0)


def test_wall_clock_step_function():
    grid = np.array([0.0, 1.0, 1.5, 2.0, 5.0])
    out = step_at(np.array([2.0, 1.0, 3.0]), np.array([0.5, 0.2, 0.1]), grid)  # unsorted times
    # sorted by time: t=1 -> .2, t=2 -> .5 (max so far), t=3 -> .1 (max stays .5)
    np.testing.assert_array_equal(out, [np.nan, 0.2, 0.2, 0.5, 0.5])
    runs = {0: Run("r", 0, np.array([0.2, 0.6]), np.array([1.0, 2.0])),
            1: Run("r", 1, np.array([0.4, 0.5]), np.array([2.0, 4.0]))}
    band = band_by_time(runs, points=5)
    np.testing.assert_array_equal(band.x, [0, 1, 2, 3, 4])
    np.testing.assert_allclose(band.median, [np.nan, 0.2, 0.5, 0.5, 0.55])  # run 0 keeps 0.6 after it stops
    assert final_values({"r": runs}) == {"r": {0: 0.6, 1: 0.5}}


def test_incumbent_at_a_budget_and_ties():
    st = optuna.storages.InMemoryStorage()
    s = optuna.create_study(storage=st, study_name="e-random-seed0", direction="maximize")
    for k, v in dict(strategy="random", seed=0, budget=4).items():
        s.set_user_attr(k, v)
    add_trial(s, A, None, 0, 1, state=TrialState.FAIL)
    add_trial(s, A, 0.4, 1, 2)
    add_trial(s, B, 0.6, 2, 3)
    add_trial(s, A_RELABELLED, 0.6, 3, 4)  # a tie: the first trial keeps it (as BudgetStatus picks)
    _, recs = load_study(st, "e-random-seed0")
    assert incumbents(recs, budget=1) == {}  # only a failure so far
    assert incumbents(recs, budget=2)["random"][0].number == 1
    assert incumbents(recs)["random"][0].number == 2 and incumbents(recs, budget=10)["random"][0].number == 2
