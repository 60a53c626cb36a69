"""End to end: ``python -m strategies.run`` on the real proxy evaluator (``test`` config)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("proxy.evaluator", reason="the proxy evaluator is not importable")

import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from dpc.genome import Genome  # noqa: E402
from strategies.storage import open_storage  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_cli_runs_the_proxy_search_and_reports_the_best_cell(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    args = [sys.executable, "-m", "strategies.run", "--strategy", "evolution", "--config", "test", "--budget", "3",
            "--workers", "1", "--reeval-seeds", "2", "-q"]
    run = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [line for line in run.stdout.splitlines() if not line.startswith("warning: ")]
    assert lines[0] == "evolution search on proxy (config test): budget 3, seed 0; population 10, tournament 3"
    assert lines[1] == "study proxy-test-evolution-seed0 in runs/proxy-test.journal (new)"
    assert lines[2] == "preparing the evaluator (dataset and cached features, built once)..."
    assert lines[3] == "re-training the best cell with 2 fresh seeds, scored on the test split..."
    assert lines[4].startswith("3/3 trials used (3 complete, 0 failed) in ")
    assert lines[5].startswith("best cell  ")
    assert lines[6].startswith("val mIOU   0.") and "the search signal" in lines[6]
    assert lines[7].startswith("test mIOU  0.") and " ± " in lines[7] and "2 fresh seeds" in lines[7]
    assert lines[8].startswith("FLOPs      ") and lines[8].endswith(" G")
    assert lines[9].startswith("params     ")
    assert lines[10] == "json       runs/proxy-test-evolution-seed0/best_cell.json"
    best = Genome.from_json((tmp_path / "runs/proxy-test-evolution-seed0/best_cell.json").read_text())

    study = optuna.load_study(study_name="proxy-test-evolution-seed0",
                              storage=open_storage(str(tmp_path / "runs/proxy-test.journal")).storage)
    assert study.user_attrs["objective"] == "proxy" and study.user_attrs["config"] == "test"
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 3
    for t in trials:
        assert t.value == t.user_attrs["miou"] and 0.0 <= t.value <= 1.0
        for key in ("per_class_iou", "params", "flops", "train_seconds", "device", "config_hash", "genome_hash"):
            assert key in t.user_attrs
    assert str(best) == study.best_trial.user_attrs["genome"]
    for t in trials:  # every evaluation scored the test split too; the search's values are val
        assert 0.0 <= t.user_attrs["test_miou"] <= 1.0 and len(t.user_attrs["test_per_class_iou"]) == 11
    # the incumbent re-trained with two fresh seeds, in a resumable companion study
    comp = optuna.load_study(study_name="proxy-test-evolution-seed0-incumbent",
                             storage=open_storage(str(tmp_path / "runs/proxy-test.journal")).storage)
    re = comp.get_trials(states=(TrialState.COMPLETE,))
    assert sorted(t.user_attrs["eval_seed"] for t in re) == [1_000_000, 1_000_001]
    assert {t.user_attrs["genome"] for t in re} == {str(best)} and {t.user_attrs["seed"] for t in re} == {1_000_000, 1_000_001}
    assert all(t.user_attrs["source_trial"] == study.best_trial.number for t in re)
    means = float(lines[7].split()[2])
    assert abs(means - sum(t.user_attrs["test_miou"] for t in re) / 2) < 1e-4
    rerun = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0 and lines[7] in rerun.stdout  # resumed: nothing re-trained again
    assert len(comp.get_trials()) == 2
