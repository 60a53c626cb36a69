"""The enqueued-cell worker loop (resume, failures, dead workers) and the correlate CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import optuna
import pytest
from analysis_fixtures import make_study
from optuna.trial import TrialState

from analysis import correlate
from analysis.load import load_study, read_storage
from dpc.genome import Genome
from dpc.zoo import zoo_cell
from strategies.cells import Cell, evaluate_cells, plan

optuna.logging.set_verbosity(optuna.logging.WARNING)
BAD = zoo_cell("weak")


def score(genome: Genome) -> float:
    """Evaluator for the tests: fails on the 'weak' zoo cell, else a number."""
    if genome.canonical_hash() == BAD.canonical_hash():
        raise RuntimeError("boom: cannot train this cell\nsecond line")
    return len(str(genome)) / 100


def cells() -> list[Cell]:
    return [Cell(zoo_cell(n), {"reference": n}) for n in ("aspp", "top1_cityscapes", "weak")]


def test_failures_are_recorded_then_retried_up_to_max_attempts():
    st = optuna.storages.InMemoryStorage()
    study = evaluate_cells(st, "refs", cells(), score, progress=False, study_attrs={"kind": "reference"})
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL]
    assert trials[0].value == score(zoo_cell("aspp")) and trials[0].user_attrs["reference"] == "aspp"
    assert trials[0].user_attrs["genome"] == str(zoo_cell("aspp")) and trials[0].params == zoo_cell("aspp").to_params()
    assert trials[2].user_attrs["failure_reason"] == "RuntimeError: boom: cannot train this cell second line"
    assert study.user_attrs == {"kind": "reference"}
    # rerun: the two done cells are left alone, the failed one is tried once more (max_attempts=2)
    study = evaluate_cells(st, "refs", cells(), score, progress=False)
    assert len(study.get_trials()) == 4
    assert plan(study, cells()) == dict(done=2, queued=0, running=0, enqueued=0, given_up=1, reclaimed=0)


def test_dead_worker_trial_is_failed_and_its_cell_enqueued_again():
    from strategies.heartbeat import OWNER_KEY, host_id

    st = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=st, study_name="c", direction="maximize")
    assert plan(study, cells()[:1])["enqueued"] == 1
    tid = study._pop_waiting_trial_id()  # a worker took it ...
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # ... and died (its pid no longer exists)
    st.set_trial_system_attr(tid, OWNER_KEY, {"host": host_id(), "pid": dead.pid, "start": None})
    counts = plan(study, cells()[:1], max_attempts=1)  # a dead worker's trial is not a failed attempt
    assert counts["reclaimed"] == 1 and counts["enqueued"] == 1
    old, new = study.get_trials()
    assert old.state == TrialState.FAIL and old.user_attrs["failure_kind"] == "stale"
    assert "died" in old.user_attrs["failure_reason"] and new.state == TrialState.WAITING
    # a live worker's trial is left alone
    tid = study._pop_waiting_trial_id()
    from strategies.heartbeat import claim

    claim(st, tid)
    assert plan(study, cells()[:1])["running"] == 1


@pytest.fixture()
def source(tmp_path):
    """A real random search on the synthetic objective, 30 trials, in a journal file."""
    import strategies

    path = tmp_path / "s.journal"
    strategies.search("synthetic", strategy="random", budget=30, seed=0, storage=str(path), experiment="e")
    return path


def test_correlate_cli_end_to_end(source, tmp_path, capsys):
    out = tmp_path / "corr"
    argv = ["--storage", str(source), "--study", "e-random-seed0", "--top", "6", "--random", "6", "--seed", "1",
            "--objective", "synthetic", "--out", str(out), "--precision-k", "3", "--n-resamples", "300", "--no-progress"]
    assert correlate.main(argv) == 0
    printed = capsys.readouterr().out
    assert "6 top + 6 random distinct cells" in printed and "spearman" in printed and "+1.000 [+1.000, +1.000]" in printed
    data = json.loads((out / "correlation.json").read_text())
    assert (out / "correlation.png").stat().st_size > 5000 and (out / "correlation.svg").is_file()
    _, src = load_study(source, "e-random-seed0")
    ranked = sorted((r for r in src if r.complete), key=lambda r: -r.value)
    top = [r for r in data["rows"] if r["group"] == "top"]
    rand = [r for r in data["rows"] if r["group"] == "random"]
    assert len(top) == 6 and len(rand) == 6
    assert {r["source_trial"] for r in top} == {r.number for r in ranked[:6]}  # distinct cells: no ties here
    assert {r["source_trial"] for r in rand}.isdisjoint({r.number for r in ranked[:6]})
    for group in ("top", "random", "all"):  # the same objective: perfect agreement
        g = data["groups"][group]
        assert g["spearman"]["estimate"] == pytest.approx(1.0) and g["kendall"]["low"] == pytest.approx(1.0)
        assert g["top_k_precision"]["3"] == 1.0 and g["full_winner_proxy_rank"] == 1
    assert all(r["proxy"] == pytest.approx(r["full"]) for r in data["rows"])
    assert data["command"].startswith("python -m analysis.correlate --storage")
    # resume: a rerun evaluates nothing new; the same selection comes back (seeded)
    assert correlate.main(argv) == 0
    _, comp = load_study(source, "e-random-seed0-full")
    assert len(comp) == 12 and all(r.complete for r in comp)
    assert json.loads((out / "correlation.json").read_text())["rows"] == data["rows"]


def test_correlation_of_a_noisy_proxy_is_below_one(source, tmp_path):
    """A noisier 'full task' (same structure plus per-cell noise) gives rho < 1 with a CI."""
    out = tmp_path / "noisy"
    correlate.main(["--storage", str(source), "--study", "e-random-seed0", "--top", "5", "--random", "10",
                    "--objective", "synthetic:structured,noise=0.1", "--out", str(out), "--name", "noisy",
                    "--n-resamples", "300", "--no-progress"])
    g = json.loads((out / "correlation.json").read_text())["groups"]["all"]
    assert g["n"] == 15 and -1 < g["spearman"]["estimate"] < 1
    assert g["spearman"]["low"] < g["spearman"]["estimate"] < g["spearman"]["high"]


def test_correlate_bad_input_is_one_line(tmp_path, capsys):
    path = tmp_path / "x.journal"
    with pytest.raises(SystemExit) as e:
        correlate.main(["--storage", str(path), "--study", "s"])
    assert e.value.code == 2 and "storage file" in capsys.readouterr().err
    st = read_storage(path, create=True)
    optuna.create_study(storage=st, study_name="empty")
    make_study(st, "s-random-seed0", "random", 0, 2)
    for argv, msg in ((["--study", "nope"], "unknown study 'nope'"), (["--study", "empty"], "no complete trial"),
                      (["--study", "s-random-seed0", "--top", "1", "--random", "1"], "at least 3 cells")):
        with pytest.raises(SystemExit) as e:
            correlate.main(["--storage", str(path), *argv])
        err = capsys.readouterr().err
        assert e.value.code == 2 and msg in err and "Traceback" not in err


def test_select_cells_is_seeded_and_distinct():
    st = optuna.storages.InMemoryStorage()
    make_study(st, "s-random-seed0", "random", 0, 20)
    _, recs = load_study(st, "s-random-seed0")
    top, rand = correlate.select_cells(recs, 5, 5, seed=3)
    assert [r.value for r in top] == sorted((r.value for r in recs), reverse=True)[:5]
    assert [r.number for r in rand] == [r.number for r in correlate.select_cells(recs, 5, 5, seed=3)[1]]
    assert {r.number for r in rand} != {r.number for r in correlate.select_cells(recs, 5, 5, seed=4)[1]}
    assert not {r.number for r in top} & {r.number for r in rand}
    top, rand = correlate.select_cells(recs, 15, 10)  # fewer left than asked: what is there
    assert len(top) == 15 and len(rand) == 5


@pytest.mark.slow
def test_small_correlation_on_the_test_configs(tmp_path, cache_dir):
    """The real pipeline: a proxy search on the `test` config, its cells re-trained on the full task."""
    import strategies

    path = tmp_path / "p.journal"
    strategies.search("proxy", strategy="random", budget=4, seed=0, storage=str(path), config="test",
                      cache_dir=cache_dir, experiment="t")
    out = tmp_path / "corr"
    assert correlate.main(["--storage", str(path), "--study", "t-random-seed0", "--top", "2", "--random", "2",
                           "--objective", "full", "--out", str(out), "--n-resamples", "200", "--no-progress"]) == 0
    data = json.loads((out / "correlation.json").read_text())
    comp, recs = load_study(path, "t-random-seed0-full")
    assert comp.user_attrs["config"] == "test" and comp.user_attrs["kind"] == "correlation"
    assert len(data["rows"]) == 4 and all(r.complete for r in recs)
    for r in recs:  # the full evaluator's own record of each training
        assert 0 <= r.value <= 1 and r.user_attrs["config"] == "full-test" and r.n_params > 0 and r.flops > 0
    assert [g["n"] for g in data["groups"].values()] == [2, 2, 4]
    assert set(data["groups"]["all"]) >= {"spearman", "kendall", "pearson", "top_k_precision"}
    assert (out / "correlation.png").stat().st_size > 5000


def test_tied_full_scores_report_no_winner_and_no_precision(source, tmp_path, monkeypatch):
    """A full task that scores every cell alike (one that learned nothing) has no top-k set."""
    (tmp_path / "flat_objective.py").write_text("def flat(genome):\n    return 0.5\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "flat"
    assert correlate.main(["--storage", str(source), "--study", "e-random-seed0", "--top", "3", "--random", "3",
                           "--objective", "flat_objective:flat", "--out", str(out), "--name", "flat",
                           "--precision-k", "2", "--n-resamples", "100", "--no-progress"]) == 0
    g = json.loads((out / "correlation.json").read_text())["groups"]["all"]
    assert g["n"] == 6 and "full_winner_proxy_rank" not in g and g["top_k_precision"] == {}


def test_a_cell_queue_runs_on_two_worker_processes(tmp_path):
    """Queue studies use the search's worker processes (--worker-settings, no strategy)."""
    from dpc.mutation import sample_genome
    from strategies.heartbeat import OWNER_KEY

    rng = np.random.default_rng(0)
    queue = [Cell(sample_genome(rng), {"i": i}) for i in range(6)]
    study = evaluate_cells(str(tmp_path / "q.journal"), "q", queue, "synthetic:slow,sleep=0.3", workers=2, progress=False)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 6
    assert len({t.system_attrs[OWNER_KEY]["pid"] for t in trials}) == 2  # both workers took cells
    assert sorted(t.user_attrs["i"] for t in trials) == list(range(6))


def test_a_rerun_of_a_dead_workers_queue_trial_keeps_its_seed_and_attrs():
    """A worker that wrote its cell's params and died: the re-run trains with the cell's own seed."""
    from strategies.cells import Cell, evaluate_cells
    from strategies.heartbeat import OWNER_KEY, host_id
    from strategies.space import search_space

    st = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=st, study_name="q", direction="maximize")
    g = zoo_cell("aspp")
    queue = [Cell(g, {"cell": "aspp"}, seed=7)]
    assert plan(study, queue)["enqueued"] == 1
    tid = study._pop_waiting_trial_id()
    space = search_space(len(g))
    for name, value in g.to_params().items():  # the worker drew the whole cell ...
        st.set_trial_param(tid, name, space[name].to_internal_repr(value), space[name])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # ... and died
    st.set_trial_system_attr(tid, OWNER_KEY, {"host": host_id(), "pid": dead.pid, "start": None})
    seeds = []

    def score(genome, seed=None):
        seeds.append(seed)
        return 0.5

    study = evaluate_cells(st, "q", queue, score, progress=False)
    old, new = study.get_trials()
    assert old.user_attrs["failure_kind"] == "stale" and new.user_attrs["retry_of"] == old.number
    assert seeds == [7] and new.user_attrs["eval_seed"] == 7 and new.user_attrs["cell"] == "aspp"
    assert new.state == TrialState.COMPLETE and "failure_reason" not in new.user_attrs
