"""DPC-Bench collector and reader (benchmarks.bench): resumable shards, merging, picking, ``info``.

Most tests use a fake evaluator (a deterministic mIOU from the cell's hash, no training) so they
take seconds; one test runs the real ``test`` proxy config for two evaluations.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from benchmarks import bench

ROOT = Path(__file__).resolve().parents[1]
FAKE = f"{__name__}:fake_factory"


class FakeEvaluator:
    """Returns a fixed-shape EvalResult at once; val mIOU is mostly the cell's, a little the seed's."""

    def __init__(self, cfg, cache_dir=None, device=None):
        self.config, self.device = cfg, "cpu"
        self.delay = float(os.environ.get("BENCH_FAKE_DELAY", "0"))

    def evaluate(self, genome, seed=0, callback=None):
        from proxy.result import EvalResult

        if self.delay:
            time.sleep(self.delay)
        cfg = self.config
        base = int(genome.canonical_hash()[:8], 16) / 2**32 * 0.5
        miou = base + 0.01 * seed
        if callback is not None and cfg.eval_every:
            for step in range(cfg.eval_every, cfg.iterations, cfg.eval_every):
                callback(step, miou * step / cfg.iterations)
        if callback is not None:
            callback(cfg.iterations, miou)
        return EvalResult(miou=miou, per_class_iou=[0.9, float("nan"), miou], params=100, flops=1000,
                          train_seconds=0.1, eval_seconds=0.01, iterations=cfg.iterations, train_loss=1.0,
                          device="cpu", seed=seed, config=cfg.name, config_hash=cfg.hash("cpu"),
                          genome=str(genome), test_miou=miou - 0.01, test_per_class_iou=[0.8, 0.1, miou],
                          precision="fp32")


def fake_factory(cfg, cache_dir=None, device=None):
    return FakeEvaluator(cfg, cache_dir, device)


def collect(data, n, *extra, evaluator=FAKE):
    argv = ["collect", "--config", "test", "--eval-every", "5", "--data", str(data), "--quiet",
            "--evaluator", evaluator, "--evaluations", str(n), *extra]
    return bench.main(argv)


def only_dir(data: Path) -> Path:
    dirs = [d for d in data.iterdir() if d.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def keys(records):
    return [(r["canonical_hash"], r["seed"]) for r in records]


def raw_lines(directory: Path) -> list[dict]:
    out = []
    for shard in directory.glob("*.jsonl"):
        out += [json.loads(line) for line in shard.read_text().splitlines()]
    return out


def test_collect_writes_full_records_and_resumes_without_duplicates(tmp_path):
    assert collect(tmp_path, 6) == 0
    d = only_dir(tmp_path)
    from proxy.config import get_config

    cfg = get_config("test").replace(eval_every=5)
    key = bench.scene_set_key(cfg)
    assert d.name == f"test-{cfg.hash('cpu')}-{key}"
    recs = bench.read_records(d)
    assert len(recs) == 6
    # the zoo first, seed 0
    from dpc.zoo import zoo_cell

    zoo = {zoo_cell(n).canonical_hash() for n in bench.ZOO_FIRST}
    assert {r["canonical_hash"] for r in recs[:3]} == zoo
    assert all(r["source"] == "zoo" and r["seed"] == 0 for r in recs[:3])
    r = recs[0]
    for field in ("genome", "canonical_hash", "seed", "config", "config_hash", "config_dict", "scene_key", "source",
                  "curve", "val_miou", "test_miou", "per_class_iou", "test_per_class_iou", "params", "flops",
                  "train_seconds", "eval_seconds", "device", "precision", "torch", "hostname", "date", "command"):
        assert field in r, field
    assert r["config"] == "test" and r["config_hash"] == cfg.hash("cpu") and r["scene_key"] == key
    assert r["config_dict"]["eval_every"] == 5
    assert [s for s, _ in r["curve"]] == [5, 10, 15, 20]
    assert r["curve"][-1][1] == pytest.approx(r["val_miou"])
    assert r["per_class_iou"][1] is None  # NaN -> null: strict JSON
    from dpc.genome import Genome

    assert Genome.parse(r["genome"]).canonical_hash() == r["canonical_hash"]

    # "resume": run again; a second shard, no (hash, seed) twice
    assert collect(tmp_path, 6) == 0
    assert len(list(d.glob("*.jsonl"))) == 2
    lines = raw_lines(d)
    assert len(lines) == 12
    assert len(set(keys(lines))) == 12


def test_truncated_last_line_is_ignored_and_resume_continues(tmp_path):
    assert collect(tmp_path, 4) == 0
    d = only_dir(tmp_path)
    shard = next(d.glob("*.jsonl"))
    text = shard.read_text()
    last = text.splitlines()[-1]
    shard.write_text(text[: len(text) - len(last) // 2 - 1])  # what kill -9 mid-write leaves
    recs = bench.read_records(d)
    assert len(recs) == 3
    assert collect(tmp_path, 3) == 0
    recs = bench.read_records(d)
    assert len(recs) == 6 and len(set(keys(recs))) == 6
    assert all(len(bench.read_shard(s)) == len(s.read_text().splitlines()) for s in d.glob("*.jsonl") if s != shard)


def test_shards_with_overlapping_records_merge_without_duplicates(tmp_path):
    assert collect(tmp_path, 5) == 0
    d = only_dir(tmp_path)
    shard = next(d.glob("*.jsonl"))
    lines = shard.read_text().splitlines()
    # another machine's shard that repeats two records (later date) and adds one of its own
    dup = [json.loads(x) for x in lines[1:3]]
    for r in dup:
        r["date"] = "2999-01-01T00:00:00"
        r["hostname"] = "other"
    own = dict(json.loads(lines[0]), seed=1, source="reseed", hostname="other", date="2999-01-01T00:00:00")
    (d / "other-20990101T000000-1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in dup + [own]))
    recs = bench.read_records(d)
    assert len(recs) == 6
    assert len(set(keys(recs))) == 6
    by_key = {(r["canonical_hash"], r["seed"]): r for r in recs}
    for r in dup:  # the first by date wins
        assert by_key[(r["canonical_hash"], r["seed"])]["hostname"] != "other"
    assert by_key[(own["canonical_hash"], 1)]["hostname"] == "other"


def test_other_config_hash_or_scene_key_lands_elsewhere_and_info_counts_apart(tmp_path, capsys):
    assert collect(tmp_path, 3) == 0
    # curves every 10 steps instead of 5: the same results (eval_every is not in the hash), pooled
    assert bench.main(["collect", "--config", "test", "--eval-every", "10", "--data", str(tmp_path), "--quiet",
                       "--evaluator", FAKE, "--evaluations", "1"]) == 0
    assert len(bench.read_records(only_dir(tmp_path))) == 4
    assert bench.main(["collect", "--config", "cpu", "--data", str(tmp_path), "--quiet",
                       "--evaluator", FAKE, "--evaluations", "2"]) == 0
    dirs = sorted(d for d in tmp_path.iterdir() if d.is_dir())
    assert len(dirs) == 2
    assert {len(bench.read_records(d)) for d in dirs} == {4, 2}
    # a record of another scene set written by hand into its own directory
    rec = bench.read_records(dirs[0])[0]
    other = tmp_path / bench.directory_name("test", rec["config_hash"], "0" * 12)
    other.mkdir()
    (other / "h-1-1.jsonl").write_text(json.dumps(dict(rec, scene_key="0" * 12)) + "\n")
    capsys.readouterr()
    assert bench.main(["info", "--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert sorted(int(x.split(": ")[1]) for x in out.splitlines() if x.startswith("evaluations: ")) == [1, 2, 4]
    for d in dirs + [other]:
        assert d.name in out


def test_reseeds_give_some_cells_three_seeds_and_info_prints_the_contract(tmp_path, capsys):
    assert collect(tmp_path, 60) == 0
    d = only_dir(tmp_path)
    recs = bench.read_records(d)
    assert len(recs) == 60 and len(set(keys(recs))) == 60
    seeds = Counter(r["canonical_hash"] for r in recs)
    multi = sum(1 for n in seeds.values() if n >= 3)
    assert multi >= 3
    assert multi / len(seeds) >= 0.05
    for h, n in seeds.items():  # seeds are 0, 1, 2 in order
        assert sorted(r["seed"] for r in recs if r["canonical_hash"] == h) == list(range(n))
    sources = Counter(r["source"] for r in recs)
    assert sources["zoo"] == 3 and sources["uniform"] > sources["neighbour"] > 0 and sources["reseed"] > 0
    # neighbours are one mutation from a recorded cell
    capsys.readouterr()
    assert bench.main(["info", "--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert f"cells: {len(seeds)}" in out
    assert f"multi-seed cells: {multi}" in out
    assert "evaluations: 60" in out
    assert "surrogate spearman (held-out): n/a" in out
    rho = [x for x in out if x.startswith("seed-to-seed spearman: ")]
    assert len(rho) == 1
    assert float(rho[0].split(": ")[1]) > 0.9  # the fake's seeds only shift every cell by the same amount
    src = [x for x in out if x.startswith("sources: ")][0]
    assert f"zoo {sources['zoo']}" in src and f"reseed {sources['reseed']}" in src


def test_info_seed_spearman_is_na_below_three_cells(tmp_path, capsys):
    assert collect(tmp_path, 3) == 0
    capsys.readouterr()
    assert bench.main(["info", "--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "cells: 3" in out and "multi-seed cells: 0" in out
    assert "seed-to-seed spearman: n/a" in out


def test_pick_next_respects_worker_partition():
    import numpy as np

    rng = np.random.default_rng(0)
    recs = []
    for i in range(30):
        choice = bench.pick_next(recs, rng, worker=1, workers=3)
        assert choice is not None
        g, seed, source = choice
        assert int(g.canonical_hash(), 16) % 3 == 1
        assert (g.canonical_hash(), seed) not in set(keys(recs))
        recs.append({"canonical_hash": g.canonical_hash(), "seed": seed, "genome": str(g), "source": source,
                     "val_miou": 0.1 + i * 0.01, "error": None})


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_two_workers_write_two_shards_without_overlap_and_sigint_exits_cleanly(tmp_path):
    fake = "tests.test_bench:fake_factory"
    cmd = [sys.executable, "-m", "benchmarks.bench", "collect", "--config", "test", "--eval-every", "5",
           "--data", str(tmp_path), "--quiet", "--evaluator", fake]
    run = subprocess.run(cmd + ["--workers", "2", "--evaluations", "8"], cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    d = only_dir(tmp_path)
    shards = list(d.glob("*.jsonl"))
    assert len(shards) == 2
    lines = raw_lines(d)
    assert len(lines) == 8 and len(set(keys(lines))) == 8
    for shard in shards:  # each worker keeps to its half of the hashes
        parts = {int(json.loads(x)["canonical_hash"], 16) % 2 for x in shard.read_text().splitlines()}
        assert len(parts) == 1

    # Ctrl-C in the middle of a slow collection: exit 130, a message, only whole lines
    env = dict(_env(), BENCH_FAKE_DELAY="0.3")
    p = subprocess.Popen(cmd + ["--evaluations", "1000"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and len(raw_lines(d)) < 10:
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 130, err[-2000:]
    assert "interrupted" in err
    lines = raw_lines(d)  # json.loads of every line: none half-written
    assert 10 <= len(lines) < 1008 and len(set(keys(lines))) == len(lines)


def test_kill_9_then_resume(tmp_path):
    cmd = [sys.executable, "-m", "benchmarks.bench", "collect", "--config", "test", "--eval-every", "5",
           "--data", str(tmp_path), "--quiet", "--evaluator", "tests.test_bench:fake_factory"]
    p = subprocess.Popen(cmd + ["--evaluations", "1000"], cwd=ROOT, env=dict(_env(), BENCH_FAKE_DELAY="0.2"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and (not tmp_path.exists() or not any(tmp_path.rglob("*.jsonl"))
                                      or len(raw_lines(only_dir(tmp_path))) < 4):
        time.sleep(0.2)
    p.kill()
    p.wait(timeout=30)
    d = only_dir(tmp_path)
    before = len(bench.read_records(d))
    assert before >= 4
    assert collect(tmp_path, 5) == 0
    recs = bench.read_records(d)
    assert len(recs) == before + 5
    assert len(set(keys(raw_lines(d)))) == len(raw_lines(d))


@pytest.mark.slow
def test_real_proxy_two_evaluations(tmp_path, cache_dir):
    """The real evaluator on the `test` config: the record holds what the EvalResult measured.
    Alone it mostly builds the session's `test` dataset and feature cache (minutes on 2 busy cores);
    in the full suite that cache is shared with the other evaluator tests."""
    assert collect(tmp_path, 2, "--cache-dir", cache_dir, "--device", "cpu", evaluator="proxy") == 0
    recs = bench.read_records(only_dir(tmp_path))
    assert len(recs) == 2 and all(r["error"] is None for r in recs)
    r = recs[0]
    assert 0 <= r["val_miou"] <= 1 and 0 <= r["test_miou"] <= 1
    assert r["curve"][-1] == [20, pytest.approx(r["val_miou"])]
    assert [s for s, _ in r["curve"]] == [5, 10, 15, 20]
    assert r["params"] > 0 and r["flops"] > 0 and r["precision"] == "fp32" and r["device"] == "cpu"
