"""Pruners (strategies.pruners) with every strategy, on DPC-Bench replayed learning curves; budgets in
full-evaluation equivalents; resume; a pruned proxy evaluation stops its training loop."""
from __future__ import annotations

import json

import optuna
import pytest
from optuna.trial import TrialState

import strategies
from benchmarks.bench_objective import BenchObjective
from strategies.objectives import Objective
from strategies.pruners import PRUNERS, make_pruner, pruner_params
from strategies.registry import STRATEGIES
from strategies.study import SearchError
from tests.test_bench_objective import with_curves
from tests.test_surrogate import make_records

STEPS = 300  # with_curves: val at steps 100, 200, 300


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench") / "cpu-abc-def"
    d.mkdir()
    (d / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in with_curves(make_records(n_uniform=80, n_neighbour=20))))
    fn = BenchObjective(d, cache_dir=tmp_path_factory.mktemp("cache"))
    return d, Objective(fn, f"bench:data={d}", "bench-cpu", config="cpu", metric="mIOU", takes_callback=True,
                        takes_seed=True, has_test=True, simulated=True, steps=fn.iterations, eval_every=fn.eval_every)


@pytest.mark.parametrize("pruner", [p for p in PRUNERS if p != "none"])
@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_every_pruner_with_every_strategy_prunes_and_counts_equivalents(bench, strategy, pruner):
    _, obj = bench
    extra = {"prune_startup": 2} if pruner == "median" else {}
    res = strategies.search(obj, strategy=strategy, budget=12, seed=0, pruner=pruner, pruner_params=extra,
                            budget_unit="equivalents")
    trials = res.study.get_trials()
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert pruned, f"{strategy}+{pruner}: nothing pruned in {len(trials)} trials"
    for t in pruned:
        step = t.user_attrs["pruned_step"]
        assert step in (100, 200) and t.user_attrs["compute"] == pytest.approx(step / STEPS)
        assert max(t.intermediate_values) == step  # the replay stopped where the pruner said
        assert t.user_attrs["simulated_seconds"] < obj.fn(t.user_attrs["genome"]).simulated_seconds
    compute = sum(t.user_attrs.get("compute", 1.0) for t in pruned + complete)
    assert 12 - 1e-9 <= compute < 13 and len(trials) > 12  # the budget is compute: pruning bought extra candidates
    assert res.status.best_trial.state == TrialState.COMPLETE
    numbers = {t.number: t for t in trials}
    for t in complete + pruned:  # evolution and local: parents are complete trials only
        parent = t.user_attrs.get("parent")
        if parent is not None:
            assert numbers[parent].state == TrialState.COMPLETE


def test_no_pruner_trains_everything_and_evaluations_budget_counts_trials(bench):
    _, obj = bench
    res = strategies.search(obj, strategy="random", budget=10, seed=1, pruner="median", pruner_params={"prune_startup": 1})
    trials = res.study.get_trials()
    assert len(trials) == 10 and any(t.state == TrialState.PRUNED for t in trials)  # 10 trials, pruned or not
    res = strategies.search(obj, strategy="random", budget=10, seed=1)
    assert all(t.state == TrialState.COMPLETE and "compute" not in t.user_attrs for t in res.study.get_trials())


def test_resume_keeps_pruner_decisions_and_refuses_another_pruner(bench, tmp_path):
    d, _ = bench
    storage = str(tmp_path / "p.journal")
    kw = dict(objective=f"bench:data={d}", strategy="evolution", seed=2, storage=storage, experiment="r",
              pruner="asha", budget_unit="equivalents", cache_dir=str(tmp_path / "c"))
    first = strategies.search(budget=6, **kw)
    before = {t.number: (t.state, t.user_attrs.get("pruned_step")) for t in first.study.get_trials()}
    assert any(s == TrialState.PRUNED for s, _ in before.values())
    again = strategies.search(budget=12, **kw)
    after = {t.number: (t.state, t.user_attrs.get("pruned_step")) for t in again.study.get_trials()}
    assert all(after[n] == v for n, v in before.items()) and len(after) > len(before)
    assert again.study.user_attrs["pruner"] == "asha" and again.study.user_attrs["pruner_params"]["reduction_factor"] == 3
    with pytest.raises(SearchError, match="pruner='asha', not 'median'"):
        strategies.search(budget=12, **{**kw, "pruner": "median"})


def test_pruner_settings_are_checked_and_an_objective_without_curves_is_refused():
    with pytest.raises(ValueError, match="takes no setting prune_startup"):
        pruner_params("asha", {"prune_startup": 3})
    with pytest.raises(ValueError, match="reduction_factor must be an integer in \\[2, 1000\\]"):
        make_pruner("hyperband", {"reduction_factor": 1})
    with pytest.raises(ValueError, match="needs an objective that reports intermediate values"):
        strategies.search("synthetic", strategy="random", budget=3, pruner="median")
    with pytest.raises(ValueError, match="unknown pruner 'wilcoxon'"):
        strategies.search("synthetic", strategy="random", budget=3, pruner="wilcoxon")


def test_a_pruned_proxy_evaluation_stops_its_training_loop(cache_dir, monkeypatch):
    """The callback raises inside the training loop: no further step, and no final evaluation, runs."""
    import proxy.train as train
    from dpc.zoo import zoo_cell
    from proxy.config import get_config
    from proxy.evaluator import ProxyEvaluator

    calls = []
    real = train.evaluate_miou
    monkeypatch.setattr(train, "evaluate_miou", lambda *a, **k: calls.append(1) or real(*a, **k))
    steps = []
    cfg = get_config("test").replace(eval_every=5)
    ev = ProxyEvaluator(cfg, cache_dir=cache_dir)

    def callback(step, miou):
        steps.append(step)
        raise optuna.TrialPruned(f"pruned at step {step}")

    with pytest.raises(optuna.TrialPruned):
        ev.evaluate(zoo_cell("aspp"), callback=callback)
    assert steps == [5] and len(calls) == 1  # one intermediate evaluation; the loop and the final one never ran


def test_search_on_the_proxy_with_a_pruner_sets_eval_every_and_records_pruned_steps(cache_dir, tmp_path):
    res = strategies.search("proxy", strategy="random", budget=4, seed=0, config="test", cache_dir=cache_dir,
                            pruner="median", pruner_params={"prune_startup": 1})
    assert res.settings.eval_every == 20 // 6
    trials = res.study.get_trials()
    assert all(t.intermediate_values for t in trials)
    for t in trials:
        if t.state == TrialState.PRUNED:
            assert t.user_attrs["pruned_step"] < 20 and t.user_attrs["compute"] < 1
        else:
            assert t.state == TrialState.COMPLETE and max(t.intermediate_values) == 20


def test_learning_curves_table_and_figure_show_where_training_stopped(bench, tmp_path, capsys):
    from analysis import learning_curves

    d, _ = bench
    storage = str(tmp_path / "lc.journal")
    res = strategies.search(f"bench:data={d}", strategy="random", budget=10, seed=1, storage=storage, experiment="lc",
                            pruner="median", pruner_params={"prune_startup": 1}, cache_dir=str(tmp_path / "c"))
    n_pruned = sum(t.state == TrialState.PRUNED for t in res.study.get_trials())
    assert n_pruned
    assert learning_curves.main(["--storage", storage, "--study", res.study.study_name, "--out", str(tmp_path / "lc")]) == 0
    out = capsys.readouterr().out
    assert out.count("| pruned | 100 |") + out.count("| pruned | 200 |") == n_pruned
    assert out.count("| complete | 300 |") == 10 - n_pruned
    assert (tmp_path / "lc.png").stat().st_size > 1000


def test_compare_runs_pruner_arms_at_equal_compute_and_tests_each_against_none(bench, tmp_path, capsys, monkeypatch):
    from benchmarks import compare

    d, _ = bench
    monkeypatch.setenv("DPC_NAS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "rep"
    assert compare.main(["--objective", f"bench:data={d}", "--strategies", "random,evolution", "--pruners", "none,median",
                         "--prune-startup", "1", "--budget-in", "equivalents", "--seeds", "3", "--budget", "8",
                         "--references", "", "--jobs", "1", "--reeval-seeds", "1", "--storage", str(tmp_path / "c.journal"),
                         "--out", str(out), "-q"]) == 0
    text = capsys.readouterr().out
    data = json.loads((out / "report.json").read_text())
    assert set(data["summary"]) == {"random", "random+median", "evolution", "evolution+median"}
    assert data["budget_unit"] == "equivalents" and data["summary"]["random+median"]["pruned"] > 0
    assert {(t["a"], t["b"]) for t in data["pruner_effects"]} == {("random+median", "random"), ("evolution+median", "evolution")}
    assert "random+median    vs none" in text and (out / "best_so_far_compute.png").exists()
    assert "Does a pruner help a strategy? (equal compute)" in (out / "report.md").read_text()
