"""benchmarks.bench import: a study's real proxy evaluations become DPC-Bench records, once, and
only where their config hash and scene set are proven."""
from __future__ import annotations

import json

import optuna
import pytest

from benchmarks import bench
from benchmarks.bench_import import import_storage, scene_key_of
from dpc.zoo import zoo_cell
from proxy.config import get_config
from proxy.scenes import SCENE_PRESETS, scene_key
from strategies.cells import Cell, evaluate_cells
from strategies.storage import open_storage


def test_scene_key_of_needs_the_three_splits_of_one_scene_set():
    assert scene_key_of("scenes-abc-train,scenes-abc-val,scenes-abc-test") == "abc"
    assert scene_key_of("scenes-abc-train,scenes-abd-val,scenes-abc-test") is None
    assert scene_key_of("voc-train-12,voc-val-34,voc-test-56") is None
    assert scene_key_of("scenes-abc-train,scenes-abc-val") is None
    assert scene_key_of(None) is None


@pytest.mark.slow
def test_import_writes_proven_trials_once(tmp_path, cache_dir, capsys):
    journal = str(tmp_path / "s.journal")
    cells = [Cell(zoo_cell("weak"), {"cell": "weak"}, seed=0), Cell(zoo_cell("aspp"), {"cell": "aspp"}, seed=1)]
    evaluate_cells(journal, "noise-like", cells, "proxy", config="test", progress=False, cache_dir=cache_dir,
                   study_attrs={"objective": "proxy", "command": "a test"})
    data = tmp_path / "bench"
    assert bench.main(["import", journal, "--data", str(data)]) == 0
    assert "imported 2 record(s)" in capsys.readouterr().out
    cfg = get_config("test")
    directory = data / bench.directory_name("test", cfg.hash("cpu"), scene_key(SCENE_PRESETS["test"]))
    records = bench.read_records(directory)
    assert sorted((r["genome"], r["seed"]) for r in records) == sorted((str(c.genome), c.seed) for c in cells)
    st = open_storage(journal).storage
    trials = {t.user_attrs["genome"]: t for t in optuna.load_study(study_name="noise-like", storage=st).trials}
    for r in records:
        t = trials[r["genome"]]
        assert r["val_miou"] == t.value and r["test_miou"] == t.user_attrs["test_miou"]
        assert r["source"] == "import" and r["imported_from"]["study"] == "noise-like"
        assert r["curve"][-1] == [cfg.iterations, t.value] and len(r["per_class_iou"]) == 11
        assert r["command"] == "a test" and r["scene_key"] == scene_key(SCENE_PRESETS["test"])
    # again: nothing new; a trial of other code (another hash) or without its data goes nowhere
    assert import_storage(journal, data)["skipped"] == {"already in the bench": 2}
    study = optuna.load_study(study_name="noise-like", storage=st)
    attrs = dict(trials[str(zoo_cell("weak"))].user_attrs)
    for change, why in (({"config_hash": "0" * 12}, "config hash of other code or another config"),
                        ({"data": None}, "no embedded scene set recorded")):
        study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.5,
                                                  user_attrs={**attrs, **change, "seed": 7}))
        assert import_storage(journal, data)["skipped"][why] == 1
    assert len(bench.read_records(directory)) == 2
    assert all(json.loads(line)["source"] == "import" for p in directory.glob("*.jsonl") for line in p.read_text().splitlines())
