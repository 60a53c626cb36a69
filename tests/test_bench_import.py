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


def _legacy_trial(genome, seed, val, test, cfg):
    """A trial as the noise study stored it before results carried ``data`` and before
    ``eval_every`` left the config hash."""
    from benchmarks.bench_import import hash_before_eval_every_left
    return optuna.trial.create_trial(params={}, distributions={}, value=val, user_attrs={
        "genome": str(genome), "seed": seed, "config": cfg.name, "device": "cpu", "test_miou": test,
        "config_hash": hash_before_eval_every_left(cfg, "cpu"), "iterations": cfg.iterations})


def test_legacy_trials_need_a_scene_key_the_bench_confirms(tmp_path):
    from benchmarks.bench_import import ImportRefused, hash_before_eval_every_left
    cfg = get_config("cpu")
    assert hash_before_eval_every_left(cfg, "cpu") != cfg.hash("cpu")
    journal = str(tmp_path / "old.journal")
    study = optuna.create_study(study_name="old-noise", storage=open_storage(journal).storage)
    aspp, weak = zoo_cell("aspp"), zoo_cell("weak")
    study.add_trial(_legacy_trial(aspp, 0, 0.232, 0.251, cfg))
    study.add_trial(_legacy_trial(weak, 1, 0.201, 0.222, cfg))
    data = tmp_path / "bench"
    # without a scene key: the hash is accepted, the missing data is not
    assert import_storage(journal, data)["skipped"] == {"no embedded scene set recorded": 2}
    directory = data / bench.directory_name("cpu", cfg.hash("cpu"), "k3y")
    # a scene key with nothing to check it against writes nothing
    with pytest.raises(ImportRefused, match="none of these trials"):
        import_storage(journal, data, scene_key="k3y")
    assert not directory.exists()

    def proven(val, test):
        bench.append_record(directory / "collector.jsonl", {
            "genome": str(aspp), "canonical_hash": aspp.canonical_hash(), "seed": 0, "val_miou": val,
            "test_miou": test, "date": "2026-01-01T00:00:00+00:00", "source": "zoo"})

    proven(0.232, 0.2510001)  # the collector's ASPP seed 0 disagrees in test: refused
    with pytest.raises(ImportRefused, match="1 of 1 shared"):
        import_storage(journal, data, scene_key="k3y")
    (directory / "collector.jsonl").unlink()
    proven(0.232, 0.251)
    counts = import_storage(journal, data, scene_key="k3y")
    assert counts["written"] == {directory.name: 1} and counts["skipped"] == {"already in the bench": 1}
    (record,) = [r for r in bench.read_records(directory) if r["source"] == "import"]
    assert record["genome"] == str(weak) and record["config_hash"] == cfg.hash("cpu")
    assert record["imported_from"]["config_hash"] == hash_before_eval_every_left(cfg, "cpu")
    assert record["imported_from"]["scene_key_from"] == "k3y"


def test_import_cli_names_a_refused_scene_key(tmp_path, capsys):
    cfg = get_config("cpu")
    journal = str(tmp_path / "old.journal")
    optuna.create_study(study_name="s", storage=open_storage(journal).storage).add_trial(
        _legacy_trial(zoo_cell("aspp"), 0, 0.2, 0.2, cfg))
    assert bench.main(["import", journal, "--data", str(tmp_path / "b"), "--scene-key", "k"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--scene-key k" in err[0] and "collect the zoo there first" in err[0]
