"""benchmarks.study: the proxy-vs-full study's collector (plan, resume, round order), with a fake evaluator."""
from __future__ import annotations

import json

from analysis import fullstudy
from benchmarks import study
from dpc.zoo import zoo_cell
from tests.test_bench import FAKE
from tests.test_surrogate import make_records


def test_plan_takes_references_top_stratified_then_random():
    ranked = [(r["genome"], r["val_miou"]) for r in make_records(n_uniform=20, n_neighbour=0, n_zoo=0)
              if r["seed"] == 0]
    ranked.sort(key=lambda t: -t[1])
    cells = study.plan(6, ranked)
    assert [c["role"] for c in cells] == ["aspp", "top1"] + ["top"] * 3 + ["stratified"] * 3
    assert [c["genome"] for c in cells[2:5]] == [g for g, _ in ranked[:3]]
    assert cells[-1]["genome"] == ranked[-1][0]  # the stratified half reaches the bottom of the range
    few = study.plan(4, ranked[:1])
    assert [c["role"] for c in few] == ["aspp", "top1", "top", "random", "random", "random"]


def test_collect_resumes_in_rounds_and_the_analysis_reads_it(tmp_path, capsys):
    bench = tmp_path / "bench" / "test-x-y"  # the bench directory of the proxy config (test)
    bench.mkdir(parents=True)
    (bench / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in make_records(n_uniform=10, n_neighbour=0)))
    out = tmp_path / "study"
    argv = ["collect", "--config", "test", "--full-config", "test", "--cells", "2", "--proxy-seeds", "2",
            "--full-seeds", "1", "--bench", str(tmp_path / "bench"), "--data", str(out), "--evaluator", FAKE]
    assert study.main(argv + ["--evaluations", "5"]) == 0
    (directory,) = [d for d in out.iterdir() if d.is_dir()]
    recs = fullstudy.read(directory)
    assert len(recs) == 5 and all(r["seed"] == 0 for r in recs)  # round 0 first
    assert recs[0]["role"] == "aspp" and recs[0]["genome"] == str(zoo_cell("aspp"))
    assert study.main(argv) == 0
    recs = fullstudy.read(directory)
    assert len(recs) == 4 * 3 and {(r["task"], r["seed"]) for r in recs} == {("proxy", 0), ("proxy", 1), ("full", 0)}
    assert study.main(argv) == 0 and len(fullstudy.read(directory)) == 12  # nothing left to do
    plan = json.loads((directory / "plan.json").read_text())["cells"]
    assert [c["role"] for c in plan] == ["aspp", "top1", "top", "stratified"]
    capsys.readouterr()
    assert fullstudy.main(["--data", str(directory), "--n-resamples", "200"]) == 0
    assert "cells: 4" in capsys.readouterr().out


def test_real_evaluators_on_the_test_configs(tmp_path, cache_dir, capsys):
    out = tmp_path / "study"
    assert study.main(["collect", "--config", "test", "--full-config", "test", "--cells", "0", "--proxy-seeds", "1",
                       "--full-seeds", "1", "--bench", str(tmp_path / "none"), "--data", str(out),
                       "--cache-dir", str(cache_dir)]) == 0
    (directory,) = [d for d in out.iterdir() if d.is_dir()]
    recs = fullstudy.read(directory)
    assert {(r["role"], r["task"]) for r in recs} == {(role, task) for role in ("aspp", "top1") for task in ("proxy", "full")}
    assert all(0 <= r["test_miou"] <= 1 and r["config_hash"] and r["device"] == "cpu" for r in recs)
    assert directory.name.startswith("full-test-")
