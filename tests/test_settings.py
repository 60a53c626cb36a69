"""One settings object from the CLI to every worker; strategy settings declared once; --dataset."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from strategies import search
from strategies.base import GenomeSampler, Proposal, Setting
from strategies.registry import STRATEGIES, Strategy, strategy_params
from strategies.run import build_parser, main, parse_args, settings_from_args
from strategies.settings import SearchSettings
from strategies.workers import worker_argv

ROOT = Path(__file__).resolve().parents[1]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_every_flag_reaches_the_workers_whole():
    """A worker's argv is the parent's settings as JSON: no flag can be dropped on the way."""
    argv = ["--strategy", "evolution", "--objective", "synthetic", "--budget", "9", "--seed", "4", "--workers", "3",
            "--max-consecutive-failures", "1", "--max-retry", "5", "--heartbeat", "2", "--grace", "30", "--poll", "0.5",
            "--dedupe", "--branches", "4", "--eval-seed", "11", "--population", "5", "--tournament", "2"]
    args = parse_args(argv, build_parser())
    settings = settings_from_args(args, argv, "exp", "runs/exp.journal")
    worker = worker_argv(settings.replace(workers=1, threads=1), 2)
    assert worker[-4] == "--worker-settings" and worker[-1] == "2"
    back = SearchSettings.from_json(worker[-3])
    assert back == settings.replace(workers=1, threads=1)
    # every field of the CLI's settings differs from the default somewhere above, so none is lost
    changed = {f.name for f in dataclasses.fields(SearchSettings) if getattr(back, f.name) != getattr(SearchSettings(), f.name)}
    assert {"max_consecutive_failures", "max_retry", "heartbeat", "grace", "poll", "dedupe", "branches", "eval_seed",
            "strategy_params", "budget", "seed", "strategy", "objective"} <= changed
    assert back.strategy_params == {"population": 5, "tournament": 2}


def test_settings_are_checked_with_one_line_errors():
    for bad, match in (({"heartbeat": 1e300}, "heartbeat must be"), ({"grace": 5, "heartbeat": 10}, "grace"),
                       ({"budget": 0}, "budget must be"), ({"study": "../x"}, "study must match"),
                       ({"workers": True}, "workers must be")):
        with pytest.raises(ValueError, match=match) as e:
            SearchSettings(**bad)
        assert "\n" not in str(e.value)
    with pytest.raises(TypeError, match="unknown search setting"):
        search("synthetic", "random", 3, studyname="x")
    with pytest.raises(ValueError, match="unknown settings"):
        SearchSettings.from_json(json.dumps({"nope": 1}))


def test_max_consecutive_failures_reaches_every_worker(tmp_path):
    """--workers 2 --max-consecutive-failures 1 on an objective that always fails: about one
    failure per worker, not the default 10 (the old argv rebuilding dropped the flag)."""
    journal = tmp_path / "f.journal"
    run = subprocess.run([sys.executable, "-m", "strategies.run", "--strategy", "random", "--budget", "40",
                          "--objective", "synthetic:failing,fail_rate=1", "--workers", "2", "--max-consecutive-failures", "1",
                          "--storage", str(journal), "--out-dir", str(tmp_path), "-q", "--poll", "0.2"],
                         cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "workers failed" in run.stderr
    study = optuna.load_study(study_name=optuna.get_all_study_names(str_storage(journal))[0], storage=str_storage(journal))
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert 2 <= len(failed) <= 4, len(failed)  # one per worker (a second may start while the first is told)


def str_storage(journal: Path):
    from strategies.storage import open_storage

    return open_storage(journal).storage


class ToySampler(GenomeSampler):
    """A strategy added by a user: one file like this, plus one registry entry."""

    strategy = "toy"
    SETTINGS = (Setting("toy_k", int, "how many uniform draws to skip", lambda budget, chosen: budget // 2,
                        low=0, high=1000, flag="--toy-k"),)

    def __init__(self, seed: int = 0, branches: int = 5, toy_k: int = 0) -> None:
        super().__init__(seed, branches)
        self.toy_k = toy_k

    def propose(self, completed, index, trial) -> Proposal:
        return Proposal(self.uniform(index + self.toy_k), "random")


def test_a_new_strategy_with_a_setting_is_one_class_plus_one_registry_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(STRATEGIES, "toy", Strategy("toy", "a toy", ToySampler))
    assert strategy_params("toy", 10) == {"toy_k": 5}
    assert "--toy-k" in build_parser().format_help()  # the CLI's flag comes from the declaration
    with pytest.raises(ValueError, match=r"setting toy_k must be an integer in \[0, 1000\]"):
        strategy_params("toy", 10, {"toy_k": 5000})
    rc = main(["--strategy", "toy", "--toy-k", "3", "--objective", "synthetic", "--budget", "4",
               "--storage", str(tmp_path / "t.journal"), "--out-dir", str(tmp_path), "-q"])
    assert rc == 0 and "4/4 trials used" in capsys.readouterr().out
    study = optuna.load_study(study_name="synthetic-structured-toy-seed0", storage=str_storage(tmp_path / "t.journal"))
    assert study.user_attrs["strategy_params"] == {"toy_k": 3}
    ref = search("synthetic", "random", 4, 0)
    assert [t.params for t in study.trials][:1] == [ref.study.trials[3].params]  # uniform draw 0 + 3


@pytest.mark.slow
def test_a_search_on_a_voc_folder(tmp_path, cache_dir, capsys):
    """--dataset voc:PATH: the proxy trains and scores on the user's Pascal-VOC folder."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_folders import make_voc, voc_masks

    root = tmp_path / "VOC2012"
    make_voc(root, voc_masks(), {"train": ["2007_000001", "2007_000002"], "val": ["2007_000001", "2007_000002"]})
    rc = main(["--strategy", "random", "--budget", "1", "--config", "test", "--dataset", f"voc:{root}",
               "--cache-dir", cache_dir, "--out-dir", str(tmp_path / "runs"), "-q"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "dataset voc:" in out and "1/1 trials used (1 complete" in out
    journal = tmp_path / "runs" / "proxy-test-voc.journal"
    study = optuna.load_study(study_name="proxy-test-voc-random-seed0", storage=str_storage(journal))
    assert study.user_attrs["dataset"] == f"voc:{root}"
    for t in study.trials:
        assert 0 <= t.value <= 1 and len(t.user_attrs["per_class_iou"]) == 21  # VOC's 21 classes, not the digits'
    # resuming the study on another dataset is refused, in one line
    rc = main(["--strategy", "random", "--budget", "1", "--config", "test", "--cache-dir", cache_dir,
               "--experiment", "proxy-test-voc", "--out-dir", str(tmp_path / "runs"), "-q", "--dataset", "scenes"])
    err = capsys.readouterr().err
    assert rc != 0 and "was run with dataset=" in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as e:
        main(["--strategy", "random", "--config", "test", "--dataset", f"voc:{tmp_path / 'missing'}", "-q",
              "--out-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "does not exist" in err and err.count("\n") == 1
