"""benchmarks.noise: per-cell seed spread and the seed-vs-seed rank agreement (the ceiling)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks import noise


class FakeResult:
    """An evaluator's result: val (the value) and test, both noisy around a cell's true quality."""

    def __init__(self, val: float, test: float) -> None:
        self.miou, self.test_miou = val, test

    def to_dict(self) -> dict:
        return {"miou": self.miou, "test_miou": self.test_miou}


def noisy(genome, seed: int = 0):
    quality = (sum(ord(c) for c in str(genome)) % 97) / 97  # a fixed "true" quality per cell
    rng = np.random.default_rng([seed, int(quality * 1000)])
    return FakeResult(quality + rng.normal(scale=0.05), quality + rng.normal(scale=0.02))


def test_seed_rank_agreement_is_one_for_noise_free_and_low_for_pure_noise():
    q = np.linspace(0, 1, 12)
    assert noise.seed_rank_agreement(np.stack([q, q, q], axis=1))["mean"] == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    r = noise.seed_rank_agreement(rng.normal(size=(200, 3)))
    assert r["pairs"] == 3 and abs(r["mean"]) < 0.2


def test_cli_resumes_and_measures_val_noisier_than_test(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    argv = ["--objective", "test_noise:noisy", "--cells", "12", "--seeds", "3", "--storage", str(tmp_path / "n.journal"),
            "--out", str(tmp_path / "n.json"), "-q"]
    assert noise.main(argv) == 0
    out = capsys.readouterr().out
    assert "36 evaluations" in out and "seed-vs-seed Spearman rho on val" in out and "on test" in out
    data = json.loads((tmp_path / "n.json").read_text())
    assert data["cells"][:3] == ["aspp", "top1_cityscapes", "weak"] and len(data["cells"]) == 12
    assert 0.02 < data["val"]["mean_std"] < 0.08 and data["test"]["mean_std"] < data["val"]["mean_std"]
    assert data["test"]["seed_vs_seed_spearman"]["mean"] > data["val"]["seed_vs_seed_spearman"]["mean"]
    assert data["provenance"]["command"].startswith("python -m benchmarks.noise --objective test_noise:noisy")
    assert all(math.isfinite(v) for v in data["val"]["std"])
    # rerun: resumed, nothing evaluated again
    assert noise.main(argv) == 0
    import optuna

    from strategies.storage import open_storage

    st = open_storage(tmp_path / "n.journal").storage
    assert len(optuna.load_study(study_name=optuna.get_all_study_names(st)[0], storage=st).trials) == 36


def test_report_only_tables_a_partial_study_without_evaluating(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    base = ["--objective", "test_noise:noisy", "--seeds", "2", "--storage", str(tmp_path / "n.journal"), "-q"]
    assert noise.main(base + ["--cells", "4", "--out", str(tmp_path / "a.json")]) == 0
    capsys.readouterr()
    assert noise.main(base + ["--cells", "4", "--report-only", "--out", str(tmp_path / "b.json")]) == 0
    assert json.loads((tmp_path / "b.json").read_text())["val"]["mean"] == json.loads((tmp_path / "a.json").read_text())["val"]["mean"]
    with pytest.raises(SystemExit):
        noise.main(base + ["--cells", "5", "--report-only", "--out", str(tmp_path / "c.json")])
    assert "no study" in capsys.readouterr().err and not (tmp_path / "c.json").exists()  # 5 cells: another study


def test_compare_stds_counts_the_quieter_cells_and_tests_them():
    rng = np.random.default_rng(3)
    loud = rng.uniform(0.008, 0.012, 20)
    c = noise.compare_stds((loud * 0.5).tolist(), loud.tolist())
    assert c["cells"] == 20 and c["lower"] == 20 and c["wilcoxon_p"] < 0.001
    assert c["pooled"][0] == pytest.approx(c["pooled"][1] / 2)
    same = noise.compare_stds(loud.tolist(), (loud + rng.normal(0, 1e-3, 20)).tolist())
    assert same["wilcoxon_p"] > 0.01
    assert noise.compare_stds([0.1, float("nan")], [0.2, 0.3])["cells"] == 1  # NaN cells dropped; too few for a p
    assert math.isnan(noise.compare_stds([0.1, float("nan")], [0.2, 0.3])["wilcoxon_p"])


def test_test_vs_val_and_baseline_comparison_in_the_table(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    base = ["--objective", "test_noise:noisy", "--cells", "8", "--seeds", "3", "--storage", str(tmp_path / "n.journal"), "-q"]
    assert noise.main(base + ["--out", str(tmp_path / "a.json")]) == 0
    out = capsys.readouterr().out
    a = json.loads((tmp_path / "a.json").read_text())
    assert "test's seed std vs val's: lower in" in out and a["test_vs_val"]["cells"] == 8
    assert a["test_vs_val"]["lower"] >= 6  # the fake test noise is 0.02 against val's 0.05
    assert a["provenance"]["scene_key"] is None and a["provenance"]["config_hashes"] == []  # a fake objective
    assert noise.main(base + ["--report-only", "--baseline", str(tmp_path / "a.json"), "--out", str(tmp_path / "b.json")]) == 0
    b = json.loads((tmp_path / "b.json").read_text())
    assert b["baseline"]["val"]["lower"] == 0 and b["baseline"]["val"]["pooled"][0] == b["baseline"]["val"]["pooled"][1]
    other = dict(a, cells=a["cells"][::-1])
    (tmp_path / "other.json").write_text(json.dumps(other))
    with pytest.raises(SystemExit):
        noise.main(base + ["--report-only", "--baseline", str(tmp_path / "other.json"), "--out", str(tmp_path / "c.json")])
    assert "cells differ" in capsys.readouterr().err


def test_provenance_names_the_scene_set_of_a_proxy_objective():
    from proxy.scenes import SCENE_PRESETS, scene_key
    from strategies.objectives import resolve_objective

    assert noise._scene_key(resolve_objective("proxy", config="test")) == scene_key(SCENE_PRESETS["test"])


def test_a_cell_still_missing_seeds_is_left_out_of_the_comparisons():
    a = {"std": [0.1, 0.2, 0.3], "n": [3, 2, 3]}
    b = {"std": [0.4, 0.5, 0.6]}  # an older table without counts: complete
    x, y = noise.complete(a, b, 3)
    assert x[0] == 0.1 and math.isnan(x[1]) and math.isnan(y[1]) and y[2] == 0.6
    assert noise.compare_stds(x, y)["cells"] == 2
