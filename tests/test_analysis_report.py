"""analysis.report on small real studies: experiment discovery, page content, bad input."""
from __future__ import annotations

import json

import optuna
import pytest
from analysis_fixtures import add_trial, make_study

from analysis import report
from analysis.load import read_storage
from dpc.zoo import zoo_cell


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    path = tmp_path_factory.mktemp("rep") / "r.journal"
    st = read_storage(path, create=True)
    for strategy, bias in (("random", 0.0), ("tpe", 0.1)):
        for seed in range(4):
            make_study(st, f"x-{strategy}-seed{seed}", strategy, seed, 10, bias=bias, fail_every=4)
    ref = optuna.create_study(storage=st, study_name="x-reference", direction="maximize")
    for k, v in dict(kind="reference", experiment="x", command="python -m benchmarks.compare --x").items():
        ref.set_user_attr(k, v)
    add_trial(ref, zoo_cell("aspp"), 0.45, 0, 1, reference="aspp")
    add_trial(ref, zoo_cell("top1_cityscapes"), 0.55, 1, 2, reference="top1_cityscapes")
    from analysis import correlate

    correlate.main(["--storage", str(path), "--study", "x-tpe-seed0", "--top", "3", "--random", "3",
                    "--objective", "analysis_fixtures:toy_value", "--out", str(path.parent / "c"), "--no-progress",
                    "--n-resamples", "200"])
    return path


def test_report_page_and_data(storage, tmp_path):
    out = tmp_path / "out"
    data = report.build(storage, out, command="python -m analysis.report --storage r.journal --out out")
    page = (out / "report.md").read_text()
    assert data["experiment"] == "x" and data["budget"] == 10 and data["metric"] == "value"
    assert [r["name"] for r in data["references"]] == ["aspp", "top1_cityscapes"]
    assert list(data["summary"]) == ["random", "tpe"] and data["summary"]["tpe"]["n"] == 4
    assert data["summary"]["random"]["failures"] == 4 * 2  # trials 4 and 8 of each study failed
    (pair,) = data["pairwise"]  # same seed, same cells: tpe's are the random ones + 0.1, so tpe wins every seed
    assert (pair["a"], pair["b"], pair["wilcoxon_r"], pair["wilcoxon_pairs"]) == ("random", "tpe", -1.0, 4)
    assert pair["cliffs_delta"] < 0 and pair["median_b"] == pytest.approx(pair["median_a"] + 0.1)
    best = data["best_cells"][0]
    assert best["value"] == max(v for s in data["figures"]["final_best"]["strategies"].values() for v in s)
    assert best["json"].startswith("[{") and best["params"] > 0 and best["flops"] > 0
    for stem in ("best_so_far", "best_so_far_time", "final_best", "pareto_flops", "pareto_params", "choices", "best_cell"):
        assert (out / f"{stem}.png").stat().st_size > 5000 and (out / f"{stem}.svg").is_file()
        assert f"]({stem}.png)" in page
    assert (out / "x-tpe-seed0-full" / "correlation.png").is_file() and "## Proxy vs full task: `x-tpe-seed0-full`" in page
    assert "| random vs tpe |" in page and "| random | 4 |" in page
    assert "python -m benchmarks.compare --x" in page and "python -m analysis.correlate --storage" in page
    assert page.rstrip().endswith("```") and "python -m analysis.report --storage r.journal" in page
    assert json.loads((out / "report.json").read_text())["budget"] == 10


def test_report_cli_and_errors(storage, tmp_path, capsys):
    assert report.main(["--storage", str(storage), "--out", str(tmp_path / "o"), "--budget", "5", "--best", "2"]) == 0
    assert json.loads((tmp_path / "o" / "report.json").read_text())["budget"] == 5
    st = read_storage(storage)
    make_study(st, "y-random-seed0", "random", 0, 3)  # a second experiment in the same storage
    for argv, msg in (([], "several experiments (x, y)"), (["--experiment", "z"], "unknown experiment 'z'")):
        with pytest.raises(SystemExit) as e:
            report.main(["--storage", str(storage), "--out", str(tmp_path / "p"), *argv])
        assert e.value.code == 2 and msg in capsys.readouterr().err
    assert report.main(["--storage", str(storage), "--out", str(tmp_path / "y"), "--experiment", "y"]) == 0
    with pytest.raises(SystemExit):
        report.main(["--storage", str(tmp_path / "none.journal"), "--out", str(tmp_path / "q")])
    assert "not found" in capsys.readouterr().err
