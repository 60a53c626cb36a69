"""analysis.report on small real studies: experiment discovery, page content, bad input."""
from __future__ import annotations

import json

import numpy as np
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


# -- incumbents re-trained on a test split ----------------------------------------------------------
FRESH = 1_000_000


def _with_incumbents(st, experiment: str, seeds: int, skip: tuple = ()) -> None:
    """Searches whose incumbents were re-trained with 3 fresh seeds: on val tpe beats random on
    every seed (the same cells + 0.1), on test random beats tpe on every seed."""
    from dpc.genome import Genome

    for strategy, bias, test in (("random", 0.0, 0.6), ("tpe", 0.1, 0.5)):
        for seed in range(seeds):
            name = f"{experiment}-{strategy}-seed{seed}"
            best = make_study(st, name, strategy, seed, 8, bias=bias).best_trial
            if (strategy, seed) in skip:
                continue
            comp = optuna.create_study(storage=st, study_name=f"{name}-incumbent", direction="maximize")
            comp.set_user_attr("kind", "incumbent")
            comp.set_user_attr("source_study", name)
            g = Genome.parse(best.user_attrs["genome"])
            for i in range(3):
                add_trial(comp, g, best.value - 0.02, i, i + 1, eval_seed=FRESH + i, test_miou=test + 0.01 * seed + 0.001 * i)
            # an earlier incumbent's re-training (another cell): not this incumbent's test value
            add_trial(comp, zoo_cell("aspp"), 0.1, 5, 6, eval_seed=FRESH, test_miou=0.01)


@pytest.fixture(scope="module")
def tested(tmp_path_factory):
    path = tmp_path_factory.mktemp("rep-test") / "t.journal"
    st = read_storage(path, create=True)
    _with_incumbents(st, "t", 4)
    ref = optuna.create_study(storage=st, study_name="t-reference", direction="maximize")
    ref.set_user_attr("kind", "reference")
    ref.set_user_attr("experiment", "t")
    add_trial(ref, zoo_cell("aspp"), 0.45, 0, 1, reference="aspp")  # the searches' training seed
    for i, (val, test) in enumerate(((0.44, 0.55), (0.47, 0.57))):
        add_trial(ref, zoo_cell("aspp"), val, 1 + i, 2 + i, reference="aspp", eval_seed=FRESH + i, test_miou=test)
    _with_incumbents(st, "u", 2, skip=(("tpe", 1),))  # one incumbent not re-trained yet
    return path


def test_pairwise_tests_run_on_test_values(tested, tmp_path):
    from analysis.stats import pairwise_tests

    data = report.build(tested, tmp_path / "out", "t")
    page = (tmp_path / "out" / "report.md").read_text()
    assert data["pairwise_values"] == "test"
    (pair,) = data["pairwise"]
    # on test random wins every seed; on val (what the searches saw) tpe does
    assert (pair["a"], pair["b"], pair["wilcoxon_r"], pair["cliffs_delta"]) == ("random", "tpe", 1.0, 1.0)
    (on_val,) = pairwise_tests({s: dict(enumerate(v)) for s, v in data["figures"]["final_best"]["strategies"].items()})
    assert (on_val.wilcoxon_r, on_val.cliffs_delta) == (-1.0, -1.0)
    assert pair["median_a"] == pytest.approx(0.6 + 0.015 + 0.001) and pair["median_b"] == pytest.approx(0.5 + 0.015 + 0.001)
    for strategy, test in (("random", 0.6), ("tpe", 0.5)):
        row = data["summary"][strategy]
        per_seed = [test + 0.01 * seed + 0.001 for seed in range(4)]
        assert row["test"]["n"] == 4 and row["test"]["mean"] == pytest.approx(np.mean(per_seed))
        assert row["test"]["std"] == pytest.approx(np.std(per_seed, ddof=1))
        assert row["test_seeds_per_incumbent"] == [3] and row["test_within_std"] == pytest.approx(0.001)
        for seed in range(4):
            inc = data["incumbents"][strategy][seed]
            assert inc["test"] == pytest.approx([test + 0.01 * seed + 0.001 * i for i in range(3)])  # the decoy ignored
            assert inc["seeds"] == [FRESH, FRESH + 1, FRESH + 2] and inc["test_std"] == pytest.approx(0.001)
            assert inc["val"] == pytest.approx(data["figures"]["final_best"]["strategies"][strategy][seed])  # selected it
    (aspp,) = data["references"]
    assert aspp["value"] == pytest.approx(0.45) and aspp["test"] == pytest.approx([0.55, 0.57])
    assert aspp["test_mean"] == pytest.approx(0.56)
    assert "| strategy | seeds | val mean ± std | val median [IQR] | val best | test mean ± std | re-trained |" in page
    assert f"| random | 4 | {data['summary']['random']['mean']:.4f} ± " in page
    assert f"| 0.6160 ± {np.std([0.601, 0.611, 0.621, 0.631], ddof=1):.4f} | 4/4 | 3 | 0.0010 |" in page
    assert "| aspp | 0.4500 | 0.5600 ± 0.0141 | 2 |" in page
    assert "Values tested: the incumbents' **test value** (one value per search seed" in page
    assert "## Incumbents on the test split" in page and "| random s0 | #" in page
    assert (tmp_path / "out" / "test_values.png").stat().st_size > 5000 and (tmp_path / "out" / "test_values.svg").is_file()
    fig = data["figures"]["test_values"]
    assert fig["strategies"]["tpe"]["test_mean"] == pytest.approx([0.5 + 0.01 * s + 0.001 for s in range(4)])
    assert fig["references"] == [{"name": "aspp", "value": pytest.approx(0.56)}]


def test_tests_fall_back_to_val_while_an_incumbent_has_no_test_value(tested, tmp_path):
    data = report.build(tested, tmp_path / "out", "u")
    page = (tmp_path / "out" / "report.md").read_text()
    assert data["pairwise_values"] == "val" and data["incumbents"]["tpe"][1]["test"] == []
    (pair,) = data["pairwise"]
    assert pair["wilcoxon_r"] == -1.0  # val: tpe better on both seeds
    assert "Values tested: the **val value** the searches saw: only 3 of 4 incumbents have test values" in page
    assert data["summary"]["tpe"]["test"]["n"] == 1 and "| 1/2 |" in page
