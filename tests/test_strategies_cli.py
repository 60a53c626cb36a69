"""``python -m strategies.run``: output, flags, resume after SIGKILL, several workers."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from dpc.genome import Genome
from strategies import search
from strategies.heartbeat import OWNER_KEY
from strategies.run import main
from strategies.synthetic import StructuredObjective

optuna.logging.set_verbosity(optuna.logging.WARNING)
ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "strategies.run", *args]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def load(journal: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(journal))))


def test_synthetic_run_prints_the_best_cell_and_writes_its_json(tmp_path, capsys):
    out = tmp_path / "runs"
    rc = main(["--strategy", "local", "--objective", "synthetic", "--budget", "12", "--out-dir", str(out), "-q"])
    text = capsys.readouterr().out
    assert rc == 0
    lines = text.splitlines()
    assert lines[0] == "local search on synthetic:structured: budget 12, seed 0; p_random 0.5, top_k 1"
    assert lines[1] == f"study synthetic-structured-local-seed0 in {out / 'synthetic-structured.journal'} (new)"
    assert lines[2].startswith("12/12 trials used (12 complete, 0 failed) in ")
    assert lines[3].startswith("best cell  ") and lines[4].startswith("score      0.")
    json_path = out / "synthetic-structured-local-seed0" / "best_cell.json"
    assert lines[5] == f"json       {json_path}"
    best = Genome.from_json(json_path.read_text())
    assert str(best) == lines[3].split("  ")[1].strip()
    study = load(out / "synthetic-structured.journal", "synthetic-structured-local-seed0")
    assert study.best_value == pytest.approx(float(lines[4].split()[1]), abs=1e-4)
    assert study.user_attrs["command"].startswith("python -m strategies.run --strategy local")

    rc = main(["--strategy", "local", "--objective", "synthetic", "--budget", "12", "--out-dir", str(out), "-q"])
    assert rc == 0 and "(resuming at 12/12)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--strategy", "annealing"], "argument --strategy: invalid choice: 'annealing'"),
        (["--strategy", "random", "--budget", "0"], "argument --budget: expected a positive integer, got '0'"),
        (["--strategy", "local", "--p-random", "1.5"], "argument --p-random: expected a number in [0, 1], got '1.5'"),
        (["--strategy", "random", "--bogus"], "unrecognized arguments: --bogus"),
        (["--budget", "3"], "the following arguments are required: --strategy"),
        (["--strategy", "random", "--population", "5", "--objective", "synthetic"],
         "strategy 'random' takes no setting --population"),
        (["--strategy", "evolution", "--population", "5", "--tournament", "9", "--objective", "synthetic"],
         "tournament must be in [1, population=5], got 9"),
        (["--strategy", "random", "--objective", "nosuchmodule_xyz:f"], "cannot import module 'nosuchmodule_xyz'"),
        (["--strategy", "random", "--objective", "json:nope"], "module 'json' has no attribute 'nope'"),
        (["--strategy", "random", "--objective", "whatever"], "unknown objective 'whatever'"),
        (["--strategy", "random", "--objective", "synthetic:needle"], "unknown synthetic objective 'needle'"),
        (["--strategy", "random", "--objective", "synthetic", "--heartbeat", "90"], "grace > heartbeat"),
    ],
)
def test_bad_flags_give_one_line_errors(args, message, tmp_path, capsys):
    try:
        rc = main([*args, "--out-dir", str(tmp_path), "-q"])
    except SystemExit as e:
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("python -m strategies.run: error: ") and message in err


def test_user_objective_and_failures_through_the_cli(tmp_path, capsys, monkeypatch):
    (tmp_path / "myobjective.py").write_text(
        "def score(genome):\n"
        "    if genome.branches[0].op.kind == 'pool':\n"
        "        raise ValueError('pooling first is not allowed')\n"
        "    return sum(b.input for b in genome.branches) / 10\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    rc = main(["--strategy", "random", "--objective", "myobjective:score", "--budget", "30", "--seed", "1",
               "--out-dir", str(tmp_path / "runs"), "-q"])
    out = capsys.readouterr().out
    assert rc == 0 and "30/30 trials used (" in out and "value      " in out
    study = load(tmp_path / "runs" / "myobjective-score.journal", "myobjective-score-random-seed1")
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert failed and all(t.user_attrs["failure_reason"] == "ValueError: pooling first is not allowed" for t in failed)
    assert len(study.trials) == 30


def _wait_for(predicate, timeout: float = 60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_sigkill_mid_trial_then_rerun_reaches_the_budget_exactly(tmp_path):
    journal = tmp_path / "k.journal"
    args = cli("--strategy", "evolution", "--population", "3", "--tournament", "2", "--budget", "7", "--seed", "3",
               "--objective", "synthetic:slow,sleep=0.5", "--storage", str(journal), "--study", "k", "-q")
    proc = subprocess.Popen(args, cwd=tmp_path, env=env())

    def mid_trial():
        if proc.poll() is not None:
            raise AssertionError(f"worker exited early with {proc.returncode}")
        try:
            trials = load(journal, "k").get_trials(deepcopy=False)
        except (KeyError, FileNotFoundError, ValueError):
            return None
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        # Evaluating (its last attribute before the objective is written): not inside a journal
        # write, where a kill would make the re-run wait for Optuna's 30 s lock grace period.
        running = [t for t in trials if t.state == TrialState.RUNNING and "json" in t.user_attrs]
        return (done, running[0]) if len(done) >= 3 and running else None

    done_before, killed = _wait_for(mid_trial)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    trial = load(journal, "k").trials[killed.number]
    assert trial.state == TrialState.RUNNING  # the kill landed mid-trial

    rerun = subprocess.run(args, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    trials = load(journal, "k").trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 7
    for t in done_before:  # no completed trial lost or changed
        assert trials[t.number].state == TrialState.COMPLETE and trials[t.number].value == t.value
    stale = trials[killed.number]
    assert stale.state == TrialState.FAIL and stale.user_attrs["failure_kind"] == "stale"
    assert "died while running the trial" in stale.user_attrs["failure_reason"]
    retry = [t for t in trials if t.user_attrs.get("retry_of") == killed.number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE and retry[0].params == stale.params
    assert [t.state for t in trials].count(TrialState.FAIL) == 1 and len(trials) == 8
    # The kill changed nothing the strategy proposed: same cells as an uninterrupted run.
    ref = search(StructuredObjective(), "evolution", 7, 3, strategy_params={"population": 3, "tournament": 2})
    assert [t.user_attrs["genome"] for t in complete] == [t.user_attrs["genome"] for t in ref.study.trials]
    assert [t.value for t in complete] == [t.value for t in ref.study.trials]


def test_two_workers_on_one_journal_file_use_exactly_the_budget(tmp_path):
    journal = tmp_path / "w.journal"
    args = cli("--strategy", "tpe", "--tpe-startup", "4", "--budget", "12", "--workers", "2", "--poll", "0.2",
               "--objective", "synthetic:slow,sleep=0.15", "--storage", str(journal), "--study", "w")
    run = subprocess.run(args, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "12/12 trials used (12 complete, 0 failed)" in run.stdout and "2 workers" in run.stdout
    trials = load(journal, "w").trials
    assert len(trials) == 12 and all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["genome"] for t in trials}) == 12  # nothing evaluated twice
    pids = {t.system_attrs[OWNER_KEY]["pid"] for t in trials}
    assert len(pids) == 2  # both workers did trials


def test_best_cell_json_is_deeplab_format(tmp_path, capsys):
    rc = main(["--strategy", "random", "--objective", "synthetic", "--budget", "3", "--out-dir", str(tmp_path), "-q"])
    assert rc == 0
    cell = json.loads((tmp_path / "synthetic-structured-random-seed0" / "best_cell.json").read_text())
    assert isinstance(cell, list) and len(cell) == 5 and all("op" in b and "input" in b for b in cell)


def test_ctrl_c_requeues_the_running_trial_and_the_rerun_finishes_it(tmp_path):
    journal = tmp_path / "i.journal"
    args = cli("--strategy", "random", "--budget", "4", "--objective", "synthetic:slow,sleep=2",
               "--storage", str(journal), "--study", "i", "-q")
    # A shell starts background jobs with SIGINT ignored, and Python keeps an inherited SIG_IGN:
    # give the worker the default disposition a user's terminal gives it, whatever ran pytest.
    proc = subprocess.Popen(args, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def running():
        try:
            trials = load(journal, "i").get_trials(deepcopy=False)
        except (KeyError, FileNotFoundError, ValueError):
            return None
        done = sum(t.state == TrialState.COMPLETE for t in trials)
        return [t for t in trials if t.state == TrialState.RUNNING] if done >= 1 else None

    interrupted = _wait_for(running)[0]
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted; re-run the same command to resume" in err, err
    t = load(journal, "i").trials[interrupted.number]
    assert t.state == TrialState.FAIL and t.user_attrs["failure_kind"] == "interrupted"

    rerun = subprocess.run(args, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    assert "4/4 trials used (4 complete, 0 failed)" in rerun.stdout
    trials = load(journal, "i").trials
    retry = [x for x in trials if x.user_attrs.get("retry_of") == interrupted.number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE and retry[0].params == t.params
    assert len(t.params) == 10  # the interrupt never cuts a trial's params in half
