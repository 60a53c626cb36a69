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


def test_the_plan_only_grows_and_top_cells_come_from_the_top_quarter():
    ranked = [(r["genome"], r["val_miou"]) for r in make_records(n_uniform=8, n_neighbour=0, n_zoo=0) if r["seed"] == 0]
    ranked.sort(key=lambda t: -t[1])
    small = study.plan(6, ranked)  # a quarter of 8 cells: 2 top cells, not 3
    assert [c["role"] for c in small] == ["aspp", "top1", "top", "top"] + ["stratified"] * 4
    assert [c["genome"] for c in small[2:4]] == [g for g, _ in ranked[:2]]
    more = [(r["genome"], r["val_miou"] + 1) for r in make_records(n_uniform=12, n_neighbour=0, n_zoo=0, seed=5)
            if r["seed"] == 0] + ranked
    grown = study.plan(10, more, planned=small)
    assert grown[:len(small)] == small and len(grown) == 12
    assert [c["role"] for c in grown[len(small):]] == ["top"] * 3 + ["stratified"]  # up to half top in all
    assert study.plan(6, more, planned=grown) == grown  # never shrinks


def _bench_dir(root):
    from benchmarks.bench import bench_config, directory_name, scene_set_key

    cfg = bench_config("test", 100)
    return root / directory_name(cfg.name, cfg.hash("cpu"), scene_set_key(cfg))


def test_collect_takes_bench_seeds_resumes_in_rounds_and_the_analysis_reads_it(tmp_path, capsys):
    from benchmarks.bench import read_records

    bench_dir = _bench_dir(tmp_path / "bench")  # the bench directory of the proxy config (test) on this device
    bench_dir.mkdir(parents=True)
    held = make_records(n_uniform=10, n_neighbour=0)
    (bench_dir / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in held))
    (tmp_path / "bench" / "test-other-dir").mkdir()  # another config's directory is never read
    (tmp_path / "bench" / "test-other-dir" / "b.jsonl").write_text(json.dumps(dict(held[0], val_miou=9.0)) + "\n")
    out = tmp_path / "study"
    from benchmarks.bench import directory_name, scene_set_key
    from proxy.config import get_config

    full = get_config("test", full=True)
    directory = out / directory_name(full.name, full.hash("cpu"), scene_set_key(full))
    directory.mkdir(parents=True)
    extra = held[-1]  # an unplanned cell whose full-task seed was imported: its bench seeds are copied too
    (directory / "import-x.jsonl").write_text(json.dumps(dict(extra, task="full", role="import", seed=0)) + "\n")
    argv = ["collect", "--config", "test", "--full-config", "test", "--cells", "2", "--proxy-seeds", "2",
            "--full-seeds", "1", "--bench", str(tmp_path / "bench"), "--data", str(out), "--evaluator", FAKE,
            "--no-zero-cost"]
    assert study.main(argv + ["--evaluations", "3"]) == 0
    assert [d for d in out.iterdir() if d.is_dir()] == [directory]
    assert {r["seed"] for r in fullstudy.read(directory) if r["task"] == "proxy" and r["genome"] == extra["genome"]} == {0, 1}
    plan = json.loads((directory / "plan.json").read_text())["cells"]
    assert [c["role"] for c in plan] == ["aspp", "top1", "top", "stratified"]
    by_hash = {(r["canonical_hash"], r["seed"]): r for r in held}
    recs = [r for r in fullstudy.read(directory) if r["canonical_hash"] != extra["canonical_hash"]]
    copied = [r for r in recs if r["task"] == "proxy" and r["from_bench"].endswith("/a.jsonl")]
    # the two bench cells' seeds 0 and 1 (make_records gives the first 50 uniform cells two seeds): copied, not trained
    assert len(copied) == 4 and all(r["val_miou"] == by_hash[(r["canonical_hash"], r["seed"])]["val_miou"] for r in copied)
    assert all(r["from_bench"] == f"{bench_dir.name}/a.jsonl" for r in copied)
    trained = [r for r in recs if r["task"] == "full" or not r["from_bench"].endswith("/a.jsonl")]
    # the proxy's seeds first, round by round (the references are the only cells the bench lacked)
    assert [(r["task"], r["role"], r["seed"]) for r in trained] == [("proxy", "aspp", 0), ("proxy", "top1", 0),
                                                                     ("proxy", "aspp", 1)]
    assert trained[0]["genome"] == str(zoo_cell("aspp"))
    assert study.main(argv) == 0
    recs = [r for r in fullstudy.read(directory) if r["canonical_hash"] != extra["canonical_hash"]]
    assert len(recs) == 4 * 3 and {(r["task"], r["seed"]) for r in recs} == {("proxy", 0), ("proxy", 1), ("full", 0)}
    # then the headline's pair, ASPP and the proxy's best searched cell (the top cell), before the plan's order
    assert [r["role"] for r in recs if r["task"] == "full"] == ["aspp", "top", "top1", "stratified"]
    # the study's own proxy evaluations are bench records too, with their learning curves
    grown = [r for r in read_records(bench_dir) if "benchmarks.study" in (r.get("command") or "")]
    assert len(grown) == 4 and all(r["curve"] for r in grown)
    assert sorted((r["seed"], r["source"]) for r in grown) == [(0, "zoo"), (0, "zoo"), (1, "reseed"), (1, "reseed")]
    assert {(r["canonical_hash"], r["seed"]) for r in grown} == {(r["canonical_hash"], r["seed"]) for r in recs
                                                                   if r["task"] == "proxy" and r["role"] in ("aspp", "top1")}
    assert study.main(argv) == 0 and len(fullstudy.read(directory)) == 12 + 3  # nothing left to do
    # the plan's role wins over an imported record's (written before the plan named the cell)
    plan_genomes = {c["genome"]: c["role"] for c in plan}
    assert all(r["role"] == plan_genomes[r["genome"]] for r in fullstudy.read(directory) if r["genome"] in plan_genomes)
    from dpc.genome import Genome

    h3 = Genome.parse(plan[3]["genome"]).canonical_hash()
    (directory / "import-y.jsonl").write_text(json.dumps(dict(held[0], genome=plan[3]["genome"], canonical_hash=h3,
                                                             task="full", role="import", seed=7)) + "\n")
    assert {r["role"] for r in fullstudy.read(directory) if r["genome"] == plan[3]["genome"]} == {plan[3]["role"]}
    capsys.readouterr()
    assert fullstudy.main(["--data", str(directory), "--n-resamples", "200"]) == 0
    assert "cells: 5" in capsys.readouterr().out


def test_workers_split_the_plan(tmp_path):
    out = tmp_path / "study"
    base = ["collect", "--config", "test", "--full-config", "test", "--cells", "2", "--proxy-seeds", "1",
            "--full-seeds", "1", "--bench", str(tmp_path / "bench"), "--data", str(out), "--evaluator", FAKE,
            "--workers", "2", "--no-zero-cost"]
    assert study.main(base + ["--worker", "1"]) == 0
    (directory,) = [d for d in out.iterdir() if d.is_dir()]
    plan = json.loads((directory / "plan.json").read_text())["cells"]
    assert {r["genome"] for r in fullstudy.read(directory)} == {plan[1]["genome"], plan[3]["genome"]}
    assert study.main(base + ["--worker", "0"]) == 0
    assert len(fullstudy.read(directory)) == 4 * 2


def test_import_takes_full_trials_of_the_config_once(tmp_path, capsys):
    import optuna

    from proxy.config import get_config

    cfg = get_config("test", full=True)
    journal = tmp_path / "noise.journal"
    from strategies.storage import open_storage

    store = open_storage(str(journal)).storage
    st = optuna.create_study(study_name="noise-full", storage=store)
    st.set_user_attr("command", "python -m benchmarks.noise --objective full")
    data = "scenes-abc-train,scenes-abc-val,scenes-abc-test"
    for i, (h, d) in enumerate([(cfg.hash("cpu"), data), (cfg.hash("cpu"), data), ("0" * 12, data), (cfg.hash("cpu"), None)]):
        attrs = dict(genome=str(zoo_cell("aspp")), seed=i, config_hash=h, device="cpu", test_miou=0.3 + i, data=d)
        st.add_trial(optuna.trial.create_trial(value=0.2 + i, user_attrs={k: v for k, v in attrs.items() if v is not None}))
    out = tmp_path / "study"
    assert study.main(["import", str(journal), "--full-config", "test", "--data", str(out)]) == 0
    text = capsys.readouterr().out
    assert "imported 2 record(s)" in text and "no embedded scene set recorded: 1" in text and "hash: 1" in text
    (directory,) = [d for d in out.iterdir() if d.is_dir()]
    assert directory.name == f"{cfg.name}-{cfg.hash('cpu')}-abc"
    recs = fullstudy.read(directory)
    assert sorted((r["seed"], r["test_miou"], r["task"], r["role"]) for r in recs) == [(0, 0.3, "full", "aspp"), (1, 1.3, "full", "aspp")]
    assert study.main(["import", str(journal), "--full-config", "test", "--data", str(out)]) == 0
    assert "already held: 2" in capsys.readouterr().out and len(fullstudy.read(directory)) == 2
    assert study.main(["import", str(tmp_path / "missing.journal"), "--data", str(out)]) == 2
    assert "not found" in capsys.readouterr().err


def test_real_evaluators_on_the_test_configs(tmp_path, cache_dir, capsys):
    out = tmp_path / "study"
    assert study.main(["collect", "--config", "test", "--full-config", "test", "--cells", "0", "--proxy-seeds", "1",
                       "--full-seeds", "1", "--bench", str(tmp_path / "none"), "--data", str(out),
                       "--cache-dir", str(cache_dir)]) == 0
    (directory,) = [d for d in out.iterdir() if d.is_dir()]
    recs = fullstudy.read(directory)
    assert {(r["role"], r["task"]) for r in recs} == {(role, task) for role in ("aspp", "top1")
                                                      for task in ("proxy", "full", "zero_cost")}
    assert all(0 <= r["test_miou"] <= 1 and r["config_hash"] and r["device"] == "cpu" for r in recs if r["task"] != "zero_cost")
    assert directory.name.startswith("full-test-")
    scores = [r for r in recs if r["task"] == "zero_cost"]
    assert {r["role"] for r in scores} == {"aspp", "top1"} and all(r["synflow"] > 0 and r["naswot"] > 0 for r in scores)
    assert scores[0]["synflow"] != scores[1]["synflow"]


def test_plan_from_starts_a_study_on_another_studys_cells(tmp_path, capsys):
    base = ["collect", "--config", "test", "--bench", str(tmp_path / "bench"), "--evaluator", FAKE, "--no-zero-cost",
            "--proxy-seeds", "1", "--full-seeds", "1", "--evaluations", "0"]
    assert study.main(base + ["--full-config", "test", "--cells", "3", "--data", str(tmp_path / "a")]) == 0
    (first,) = [d for d in (tmp_path / "a").iterdir() if d.is_dir()]
    assert study.main(base + ["--full-config", "test-frozen", "--cells", "0", "--data", str(tmp_path / "b"),
                              "--plan-from", str(first / "plan.json")]) == 0
    (second,) = [d for d in (tmp_path / "b").iterdir() if d.is_dir()]
    assert second.name.startswith("full-test-frozen-")
    saved = json.loads((second / "plan.json").read_text())
    assert saved["cells"] == json.loads((first / "plan.json").read_text())["cells"] and len(saved["cells"]) == 5
    assert saved["plan_from"] == str(first / "plan.json")
    capsys.readouterr()
    assert study.main(base + ["--full-config", "test-frozen", "--data", str(tmp_path / "c"),
                              "--plan-from", str(tmp_path / "nope.json")]) == 2
    assert "--plan-from" in capsys.readouterr().err
    assert study.main(base + ["--full-config", "cpu-frozen", "--data", str(tmp_path / "c")]) == 2
    assert "use different scene sets" in capsys.readouterr().err


def test_workers_without_worker_are_spawned_and_share_the_plan(tmp_path):
    import subprocess
    import sys

    from tests.test_bench import ROOT, _env

    out = tmp_path / "study"
    cmd = [sys.executable, "-m", "benchmarks.study", "collect", "--config", "test", "--full-config", "test", "--cells", "4",
           "--proxy-seeds", "1", "--full-seeds", "1", "--bench", str(tmp_path / "bench"), "--data", str(out),
           "--evaluator", FAKE, "--no-zero-cost", "--workers", "2"]
    run = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    (directory,) = [d for d in out.iterdir() if d.is_dir()]
    assert len(json.loads((directory / "plan.json").read_text())["cells"]) == 6
    recs = fullstudy.read(directory)
    assert len(recs) == 6 * 2 and len({(r["canonical_hash"], r["task"]) for r in recs}) == 12
    shards = [s for s in directory.glob("*.jsonl") if s.stat().st_size]
    assert len(shards) == 2  # one a worker


def test_the_bench_hears_how_a_study_cell_was_chosen():
    assert [study.bench_source(role, 0) for role in ("random", "aspp", "top1", "top", "stratified")] == \
        ["uniform", "zoo", "zoo", "study", "study"]
    assert {study.bench_source(role, 2) for role in ("random", "top")} == {"reseed"}


def test_todo_orders_proxy_seeds_then_the_headline_pair_then_full_rounds():
    from dpc.genome import Genome

    cells = study.plan(2, [])  # aspp, top1 and two random cells
    h = [Genome.parse(c["genome"]).canonical_hash() for c in cells]
    done = {(h[0], "proxy", 0), (h[1], "full", 0)}
    order = [(cells.index(c), task, s) for c, task, s in study.todo(cells, done, 2, 2, first=[h[0], h[3]])]
    assert order[:7] == [(1, "proxy", 0), (2, "proxy", 0), (3, "proxy", 0), (0, "proxy", 1), (1, "proxy", 1),
                         (2, "proxy", 1), (3, "proxy", 1)]
    assert order[7:] == [(0, "full", 0), (0, "full", 1), (3, "full", 0), (3, "full", 1), (2, "full", 0),
                         (1, "full", 1), (2, "full", 1)]
    assert [cells.index(c) for c, _, _ in study.todo(cells, done, 2, 2, worker=1, workers=2)] == [1, 3, 1, 3, 3, 1, 3]
    full_first = [(cells.index(c), task, s) for c, task, s in study.todo(cells, done, 2, 2, first=[h[0], h[3]],
                                                                          proxy_first=False)]
    assert full_first == order[7:] + order[:7]
    # the best searched cell is the best proxy mean among the plan's non-reference cells, whichever worker wrote it
    recs = [dict(genome=c["genome"], canonical_hash=h[i], task="proxy", seed=s, val_miou=v)
            for i, c, s, v in ((0, cells[0], 0, 0.9), (2, cells[2], 0, 0.3), (2, cells[2], 1, 0.5), (3, cells[3], 0, 0.35))]
    assert study.headline_cells(recs, cells) == [h[0], h[2]]
