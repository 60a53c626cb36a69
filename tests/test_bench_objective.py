"""``--objective bench`` (benchmarks.bench_objective) on a fixture of records: table replay, fresh seeds,
surrogate draws, curves, the simulated clock, and the objective in strategies.search and benchmarks.compare."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from analysis.load import load_all
from benchmarks import bench_objective as B
from benchmarks import compare
from dpc.genome import Genome
from dpc.mutation import sample_genome
from strategies.incumbent import FRESH_SEED_BASE
from strategies.objectives import ObjectiveError, resolve_objective
from tests.test_surrogate import make_records

STEPS = (100, 200, 300)


def with_curves(records):
    """Curves rising to the final value (0.5, 0.8, 1.0 of it), eval seconds, iterations, cost."""
    for r in records:
        r.update(curve=[[s, r["val_miou"] * f] for s, f in zip(STEPS, (0.5, 0.8, 1.0))], eval_seconds=10.0,
                 iterations=STEPS[-1], params=1000, flops=10**6)
    return records


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench") / "cpu-abc-def"
    d.mkdir()
    recs = with_curves(make_records(n_uniform=80, n_neighbour=20))
    (d / "host-1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return d


@pytest.fixture(scope="module")
def records(bench_dir):
    return [json.loads(line) for line in (bench_dir / "host-1.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def objective(bench_dir, tmp_path_factory):
    return B.BenchObjective(bench_dir, cache_dir=tmp_path_factory.mktemp("cache"))


def test_held_cell_replays_its_seed_0_record_and_curve(objective, records):
    rec = next(r for r in records if r["seed"] == 0)
    steps = []
    res = objective(Genome.parse(rec["genome"]), callback=lambda s, v: steps.append((s, v)))
    assert res.source == "table" and res.table_seed == 0
    assert res.miou == rec["val_miou"] and res.test_miou == rec["test_miou"]
    assert steps == [(s, v) for s, v in rec["curve"]]
    assert res.simulated_seconds == pytest.approx(rec["train_seconds"] + 10.0)


def test_fresh_seeds_take_the_other_recorded_seeds_then_draw(objective, records):
    by = {}
    for r in records:
        by.setdefault(r["canonical_hash"], {})[r["seed"]] = r
    h, seeds = next((h, s) for h, s in by.items() if set(s) == {0, 1, 2})
    g = Genome.parse(seeds[0]["genome"])
    first, second, third = (objective(g, seed=FRESH_SEED_BASE + i) for i in range(3))
    assert (first.table_seed, second.table_seed) == (1, 2)
    assert first.test_miou == seeds[1]["test_miou"] and second.miou == seeds[2]["val_miou"]
    assert third.table_seed is None and third.source == "table"  # a draw around the cell's mean
    assert objective(g, seed=FRESH_SEED_BASE + 2).miou == third.miou  # deterministic
    mean = np.mean([seeds[s]["val_miou"] for s in (0, 1, 2)])
    assert abs(third.miou - mean) < 6 * objective.sigma["val_miou"] * math.sqrt(1 + 1 / 3)


def test_unheld_cell_is_a_deterministic_surrogate_draw_equal_for_equivalent_cells(objective):
    rng = np.random.default_rng(7)
    g = next(g for g in (sample_genome(rng) for _ in range(100)) if g.canonical_hash() not in objective.cells)
    steps = []
    a = objective(g, callback=lambda s, v: steps.append((s, v)))
    b = objective(g.canonical())
    assert a.source == "surrogate" and a.miou == b.miou and a.test_miou == b.test_miou
    assert a.miou != objective(g, seed=5).miou  # another training seed, another draw
    pred = objective.surrogate.predict(g)
    assert abs(a.miou - pred) < 6 * objective.sigma["val_miou"]
    assert [s for s, _ in steps] == list(STEPS) and steps[-1][1] == a.miou
    assert steps[0][1] == pytest.approx(0.5 * a.miou)  # the table's median curve shape
    assert a.train_seconds > 0 and a.params > 0 and a.flops > 0


def test_too_few_cells_and_bad_options_are_one_line_errors(tmp_path, records):
    d = tmp_path / "cpu-x-y"
    d.mkdir()
    (d / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[:5]))
    with pytest.raises(ObjectiveError, match=r"holds \d+ cells .* needs >= 20"):
        resolve_objective(f"bench:data={d}", cache_dir=str(tmp_path))
    with pytest.raises(ObjectiveError, match="is not a directory"):
        resolve_objective(f"bench:data={tmp_path / 'cpu-x-y'}x", config="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ObjectiveError, match="no DPC-Bench records for config cpu"):
        resolve_objective(f"bench:data={tmp_path / 'empty'}", config="cpu")
    with pytest.raises(ObjectiveError, match="expected data=DIR"):
        resolve_objective("bench:foo=1")
    with pytest.raises(ObjectiveError, match="model must be one of"):
        resolve_objective(f"bench:data={d},model=xgb")


def test_config_picks_the_directory_with_most_records(tmp_path, bench_dir):
    (tmp_path / "cpu-small-x").mkdir()
    (tmp_path / "cpu-small-x" / "a.jsonl").write_text((bench_dir / "host-1.jsonl").read_text().splitlines()[0] + "\n")
    (tmp_path / "cpu-big-x").symlink_to(bench_dir)
    assert B.bench_directory("cpu", tmp_path).name == "cpu-big-x"


def test_search_on_bench_records_simulated_time_and_test_values(tmp_path, bench_dir):
    import strategies

    obj = resolve_objective(f"bench:data={bench_dir}", cache_dir=str(tmp_path / "cache"))
    storage = str(tmp_path / "s.journal")
    res = strategies.search(obj, strategy="evolution", budget=25, seed=1, storage=storage, experiment="b")
    trials = [t for t in res.study.get_trials() if t.state.name == "COMPLETE"]
    assert len(trials) == 25
    assert all("test_miou" in t.user_attrs and t.user_attrs["simulated_seconds"] > 0 for t in trials)
    assert all(t.intermediate_values for t in trials)
    recs = [r for r in load_all(storage)[1] if r.study == res.study.study_name]
    clock = np.cumsum([r.user_attrs["simulated_seconds"] for r in sorted(recs, key=lambda r: r.number)])
    assert all(r.simulated for r in recs)
    assert [r.elapsed for r in sorted(recs, key=lambda r: r.number)] == pytest.approx(list(clock))


def test_compare_on_bench_reports_pairwise_tests_on_test_values(tmp_path, bench_dir, capsys, monkeypatch):
    monkeypatch.setenv("DPC_NAS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "rep"
    rc = compare.main(["--objective", f"bench:data={bench_dir}", "--strategies", "random,evolution", "--seeds", "3",
                       "--budget", "20", "--storage", str(tmp_path / "c.journal"), "--out", str(out), "-q"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "test mean" in text and "random" in text and "evolution" in text
    data = json.loads((out / "report.json").read_text())
    assert data["summary"]["random"]["test"]["n"] == 3
    assert data["pairwise"], "no pairwise test"
    assert (out / "best_so_far_time.png").exists()

    # resume: stored studies are skipped; one cut short (here: dropped) is run again, to the same result
    import optuna

    from strategies.storage import open_storage

    storage = open_storage(str(tmp_path / "c.journal")).storage
    name = "compare-bench-cpu-evolution-seed1"
    before = optuna.load_study(study_name=name, storage=storage).best_value
    optuna.delete_study(study_name=name, storage=storage)
    assert compare.main(["--objective", f"bench:data={bench_dir}", "--strategies", "random,evolution", "--seeds", "3",
                         "--budget", "20", "--storage", str(tmp_path / "c.journal"), "--out", str(out), "-q", "--jobs", "1"]) == 0
    again = optuna.load_study(study_name=name, storage=open_storage(str(tmp_path / "c.journal")).storage)
    assert again.best_value == before and len(again.trials) == 20
    # stored compactly: no params or distributions (the genome string says it), well under the
    # 9 kB a trial line took with each op's 81 choices
    t = again.trials[0]
    assert t.params == {} and t.distributions == {} and "json" not in t.user_attrs and t.user_attrs["genome"]
    trials = sum(len(optuna.load_study(study_name=s.study_name, storage=storage).trials)
                 for s in optuna.get_all_study_summaries(storage))
    assert (tmp_path / "c.journal").stat().st_size / trials < 2500
    assert json.loads((out / "report.json").read_text())["summary"]["evolution"]["test"]["n"] == 3


def test_a_record_without_train_seconds_costs_what_its_cell_costs(tmp_path, records):
    """A collector paused mid-training (SIGSTOP while timing something else) measured the pause:
    such a record keeps its mIOU but drops its seconds, and the simulated clock uses the cell's."""
    by_cell: dict = {}
    for r in records:
        by_cell.setdefault(r["canonical_hash"], []).append(r)
    cell = next(rs for rs in by_cell.values() if len(rs) >= 2 and any(r["seed"] == 0 for r in rs))
    d = tmp_path / "cpu-abc-def"
    d.mkdir()
    edited = [dict(r, train_seconds=None) if r["canonical_hash"] == cell[0]["canonical_hash"] and r["seed"] == 0 else r
              for r in records]
    (d / "host-1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in edited))
    obj = B.BenchObjective(d, cache_dir=tmp_path / "cache")
    seed0 = next(r for r in cell if r["seed"] == 0)
    others = [r["train_seconds"] for r in cell if r["seed"] != 0]
    res = obj(Genome.parse(seed0["genome"]))
    assert res.source == "table" and res.miou == seed0["val_miou"]
    assert res.simulated_seconds == pytest.approx(sum(others) / len(others) + 10.0)
