"""benchmarks.compare end to end on the synthetic objective: all four strategies, several seeds."""
from __future__ import annotations

import json

import numpy as np
import pytest

from analysis.load import load_all
from benchmarks import compare

STRATEGIES = ["random", "local", "evolution", "tpe"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cmp")
    argv = ["--strategies", ",".join(STRATEGIES), "--seeds", "3", "--budget", "15", "--storage", str(tmp / "c.journal"),
            "--out", str(tmp / "out"), "-q"]
    assert compare.main(argv) == 0
    return tmp, argv


def test_one_study_per_strategy_and_seed_plus_references(run):
    tmp, _ = run
    studies, recs = load_all(tmp / "c.journal")
    names = {s.name for s in studies}
    exp = "compare-synthetic-structured"
    assert names == {f"{exp}-{s}-seed{i}" for s in STRATEGIES for i in range(3)} | {f"{exp}-reference"}
    for s in studies:
        n = sum(r.study == s.name for r in recs)
        if s.name.endswith("reference"):
            assert s.user_attrs["kind"] == "reference" and n == 2
        else:
            assert (s.budget, s.objective, n) == (15, "synthetic:structured", 15)
            assert s.command.startswith("python -m benchmarks.compare --strategies random,local,evolution,tpe")
    refs = {r.user_attrs["reference"]: r.value for r in recs if r.study.endswith("reference")}
    from dpc.zoo import zoo_cell
    from strategies.synthetic import StructuredObjective

    f = StructuredObjective()
    assert refs == {"aspp": pytest.approx(f(zoo_cell("aspp"))), "top1_cityscapes": pytest.approx(f(zoo_cell("top1_cityscapes")))}


def test_report_numbers_match_the_studies(run):
    tmp, _ = run
    data = json.loads((tmp / "out" / "report.json").read_text())
    _, recs = load_all(tmp / "c.journal")
    assert list(data["summary"]) == STRATEGIES and data["metric"] == "score" and data["budget"] == 15
    for s in STRATEGIES:
        finals = [max(r.value for r in recs if r.strategy == s and r.seed == seed) for seed in range(3)]
        row = data["summary"][s]
        assert row["n"] == 3 and row["mean"] == pytest.approx(np.mean(finals)) and row["median"] == pytest.approx(np.median(finals))
        assert data["figures"]["final_best"]["strategies"][s] == pytest.approx(finals)
        band = data["figures"]["best_so_far"]["strategies"][s]
        assert band["x"] == list(range(1, 16)) and band["median"][-1] == pytest.approx(np.median(finals))
    assert len(data["pairwise"]) == 6 and {(t["a"], t["b"]) for t in data["pairwise"]} >= {("random", "tpe")}
    assert all(0 <= t["mw_p_holm"] <= 1 and -1 <= t["cliffs_delta"] <= 1 for t in data["pairwise"])
    assert [r["name"] for r in data["references"]] == ["aspp", "top1_cityscapes"]
    page = (tmp / "out" / "report.md").read_text()
    assert "![best so far vs evaluations](best_so_far.png)" in page and "| random vs local |" in page


def test_rerun_resumes_without_new_evaluations(run, capsys):
    tmp, argv = run
    _, before = load_all(tmp / "c.journal")
    assert compare.main(argv + ["--no-report"]) == 0
    _, after = load_all(tmp / "c.journal")
    assert len(after) == len(before)
    # a bigger budget continues every study from where it stopped
    assert compare.main([*argv, "--budget", "17", "--no-report"]) == 0  # the last --budget wins
    _, grown = load_all(tmp / "c.journal")
    assert len(grown) == len(before) + 12 * 2
    assert "studies done" in capsys.readouterr().out


@pytest.mark.parametrize("argv,msg", [
    (["--strategies", "random,annealing"], "unknown strategy annealing; known: random, local, evolution, tpe"),
    (["--seeds", "0"], "--seeds must be >= 1"),
    (["--references", "nope"], "unknown reference cell nope"),
    (["--objective", "bogus"], "unknown objective 'bogus'"),
    (["--reeval-seeds", "-1"], "--reeval-seeds: expected a non-negative integer, got '-1' (limits 0..1,000)"),
])
def test_bad_input_is_one_line(argv, msg, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        compare.main([*argv, "--storage", str(tmp_path / "x.journal"), "-q"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and msg in err and "Traceback" not in err


def test_correlation_over_the_whole_experiment_joins_the_report(run, capsys):
    """``correlate --experiment`` pools every search study; the report then shows it."""
    from analysis import correlate, report

    tmp, _ = run
    exp = "compare-synthetic-structured"
    assert correlate.main(["--storage", str(tmp / "c.journal"), "--experiment", exp, "--top", "5", "--random", "5",
                           "--objective", "synthetic:structured,noise=0.05", "--out", str(tmp / "corr"),
                           "--n-resamples", "200", "--no-progress"]) == 0
    data = json.loads((tmp / "corr" / "correlation.json").read_text())
    _, recs = load_all(tmp / "c.journal")
    searches = [r for r in recs if r.strategy is not None and r.complete]
    best = max(r.value for r in searches)
    top = [row for row in data["rows"] if row["group"] == "top"]
    assert data["source_study"] == exp and max(row["proxy"] for row in top) == pytest.approx(best)
    assert len({row["source_study"] for row in data["rows"]}) > 1  # cells come from several studies
    assert data["groups"]["all"]["n"] == 10 and data["groups"]["all"]["spearman"]["estimate"] > 0.5
    out = report.build(tmp / "c.journal", tmp / "out2", exp)
    assert [c["study"] for c in out["correlations"]] == [f"{exp}-full"]
    assert f"## Proxy vs full task: `{exp}-full`" in (tmp / "out2" / "report.md").read_text()
    capsys.readouterr()


# -- incumbents re-trained with fresh seeds and scored on a test split ----------------------------
FAKE = "analysis_fixtures:val_test"


@pytest.fixture(scope="module")
def tested(tmp_path_factory):
    """A comparison on an objective with a test split (``analysis_fixtures.val_test``: takes a
    seed, declares ``has_test``; val and test rank cells oppositely)."""
    tmp = tmp_path_factory.mktemp("cmp-test")
    argv = ["--strategies", "random,tpe", "--seeds", "3", "--budget", "8", "--objective", FAKE, "--reeval-seeds", "2",
            "--storage", str(tmp / "c.journal"), "--out", str(tmp / "out"), "-q"]
    assert compare.main(argv) == 0
    return tmp, argv


def test_incumbents_and_references_get_test_values(tested, capsys):
    from analysis.load import load_study
    from strategies.incumbent import FRESH_SEED_BASE

    tmp, _ = tested
    studies, recs = load_all(tmp / "c.journal")
    exp = "compare-analysis_fixtures-val_test"
    searches = [f"{exp}-{s}-seed{i}" for s in ("random", "tpe") for i in range(3)]
    assert {s.name for s in studies} == {*searches, *(f"{n}-incumbent" for n in searches), f"{exp}-reference"}
    data = json.loads((tmp / "out" / "report.json").read_text())
    per_seed: dict[str, dict[int, float]] = {}
    for name in searches:
        study, srecs = load_study(tmp / "c.journal", name)
        best = max((r for r in srecs if r.complete), key=lambda r: (r.value, -r.number))
        comp, crecs = load_study(tmp / "c.journal", f"{name}-incumbent")
        assert comp.user_attrs["kind"] == "incumbent" and comp.user_attrs["source_study"] == name
        assert sorted(r.user_attrs["eval_seed"] for r in crecs) == [FRESH_SEED_BASE, FRESH_SEED_BASE + 1]
        assert all(r.complete and r.genome_hash == best.genome_hash for r in crecs)
        tests = [r.user_attrs["test_miou"] for r in sorted(crecs, key=lambda r: r.user_attrs["eval_seed"])]
        inc = data["incumbents"][study.strategy][str(study.seed)]
        assert inc["val"] == pytest.approx(best.value) and inc["test"] == pytest.approx(tests)
        assert inc["test_mean"] == pytest.approx(np.mean(tests)) and inc["test_mean"] != pytest.approx(best.value)
        per_seed.setdefault(study.strategy, {})[study.seed] = float(np.mean(tests))
    for s, by_seed in per_seed.items():
        t = data["summary"][s]["test"]
        assert t["n"] == 3 and t["mean"] == pytest.approx(np.mean(list(by_seed.values())))
        assert t["std"] == pytest.approx(np.std(list(by_seed.values()), ddof=1))
        assert data["summary"][s]["test_seeds_per_incumbent"] == [2]
    (pair,) = data["pairwise"]  # on the per-seed test means, not on val
    assert data["pairwise_values"] == "test"
    assert pair["median_a"] == pytest.approx(np.median(list(per_seed["random"].values())))
    assert pair["median_b"] == pytest.approx(np.median(list(per_seed["tpe"].values())))
    # references: trained with the incumbents' fresh seeds, so they have val and test too
    refs = {r["name"]: r for r in data["references"]}
    assert set(refs) == {"aspp", "top1_cityscapes"}
    ref_recs = [r for r in recs if r.study == f"{exp}-reference"]
    seeds = [r.user_attrs.get("eval_seed", -1) for r in ref_recs]
    assert sorted(seeds) == [-1] * 2 + [FRESH_SEED_BASE] * 2 + [FRESH_SEED_BASE + 1] * 2  # the searches' seed, then fresh
    for name, ref in refs.items():
        mine = sorted((r for r in ref_recs if r.user_attrs["reference"] == name), key=lambda r: r.user_attrs.get("eval_seed", -1))
        assert ref["value"] == pytest.approx(mine[0].value)  # val: trained as every search evaluation is
        assert ref["test"] == pytest.approx([r.user_attrs["test_miou"] for r in mine[1:]])
    page = (tmp / "out" / "report.md").read_text()
    assert "| test mean ± std | re-trained | seeds each |" in page and "## Incumbents on the test split" in page
    assert "Values tested: the incumbents' **test value**" in page and "![val that selected" in page
    assert (tmp / "out" / "test_values.png").stat().st_size > 5000
    fig = data["figures"]["test_values"]["strategies"]
    assert fig["random"]["test_mean"] == pytest.approx([per_seed["random"][i] for i in range(3)])
    capsys.readouterr()


def test_rerun_retrains_nothing(tested, capsys):
    tmp, argv = tested
    _, before = load_all(tmp / "c.journal")
    assert compare.main(argv) == 0
    _, after = load_all(tmp / "c.journal")
    assert len(after) == len(before)
    out = capsys.readouterr().out
    assert "pairwise on the incumbents' test value" in out and "test mean" in out
    # zero seeds: no re-training asked for, and nothing added
    assert compare.main([*argv, "--reeval-seeds", "0", "--no-report"]) == 0
    assert len(load_all(tmp / "c.journal")[1]) == len(before)


def test_no_test_split_is_a_note_and_the_tests_use_val(run):
    tmp, _ = run
    data = json.loads((tmp / "out" / "report.json").read_text())
    assert data["pairwise_values"] == "val" and data["incumbents"]["random"]["0"]["test"] == []
    page = (tmp / "out" / "report.md").read_text()
    assert "Values tested: the **val score** the searches saw (no incumbent was re-trained" in page
    assert "test mean" not in page and not (tmp / "out" / "test_values.png").exists()
