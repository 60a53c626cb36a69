"""The proxy-vs-full study's collector: evaluations that accumulate across sessions and machines.

``python -m benchmarks.study collect --hours 0.2`` picks the study's cells once (``plan``), then
evaluates what is missing, one JSON line per evaluation appended (and fsynced) to a shard of
``study/records/<full config>-<full hash>-<scene key>/``: each cell ``--proxy-seeds`` times with the
proxy (its val mIOU is the proxy's score) and ``--full-seeds`` times with the full task (its test
mIOU is the full task's score). Rerunning resumes; shards from any machine merge (first record
of each (hash, task, seed) wins); ``python -m analysis.fullstudy --data DIR`` recomputes the result.

Cells (``--cells N``, default 50, plus ASPP and the paper's top-1): half the best of the DPC-Bench
directory of ``--config`` by mean val mIOU (role ``top``), half drawn evenly over the rest of its
range (``stratified``: sorted by val, every k-th), and uniform random cells (``random``) where
the bench holds too few. The plan is written to ``plan.json`` in the directory on the first run
and read back afterwards, so a growing bench does not change the study's cells. Order of work:
every cell's first proxy seed and first full seed before any second seed, so a study cut short
is still a study.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from .bench import DEFAULT_DATA, append_record, directory_name, load_factory, read_shard, scene_set_key, versions

DEFAULT_OUT = "study/records"


def bench_cells(data: str | Path, config: str) -> list[tuple[str, float]]:
    """(genome, mean val mIOU) of the bench directory of ``config`` with the most records; [] if none."""
    from .bench import read_records
    from .bench_objective import bench_directory

    try:
        directory = bench_directory(config, data)
    except Exception:
        return []
    vals: dict[str, list] = {}
    genome: dict[str, str] = {}
    for r in read_records(directory):
        if r.get("error") is None and isinstance(r.get("val_miou"), (int, float)):
            vals.setdefault(r["canonical_hash"], []).append(r["val_miou"])
            genome[r["canonical_hash"]] = r["genome"]
    return sorted(((genome[h], float(np.mean(v))) for h, v in vals.items()), key=lambda t: -t[1])


def plan(cells: int, ranked: list[tuple[str, float]], seed: int = 0) -> list[dict[str, str]]:
    """The study's cells: references, the bench's top half, a stratified half of the rest, random to fill."""
    from dpc.genome import Genome
    from dpc.mutation import sample_genome
    from dpc.zoo import zoo_cell

    out = [{"genome": str(zoo_cell("aspp")), "role": "aspp"}, {"genome": str(zoo_cell("top1_cityscapes")), "role": "top1"}]
    seen = {Genome.parse(c["genome"]).canonical_hash() for c in out}
    ranked = [(g, v) for g, v in ranked if Genome.parse(g).canonical_hash() not in seen]
    n_top = min(cells // 2, len(ranked))
    out += [{"genome": g, "role": "top"} for g, _ in ranked[:n_top]]
    rest = ranked[n_top:]
    n_strat = min(cells - n_top, len(rest))
    if n_strat:
        idx = np.unique(np.linspace(0, len(rest) - 1, n_strat).round().astype(int))
        out += [{"genome": rest[i][0], "role": "stratified"} for i in idx]
    seen |= {Genome.parse(c["genome"]).canonical_hash() for c in out}
    rng = np.random.default_rng(seed)
    while len(out) < cells + 2:
        g = sample_genome(rng)
        if g.canonical_hash() not in seen:
            seen.add(g.canonical_hash())
            out.append({"genome": str(g), "role": "random"})
    return out


def todo(cells: list[dict], done: set, proxy_seeds: int, full_seeds: int) -> list[tuple[dict, str, int]]:
    """(cell, task, seed) still missing, round by round: every cell's seed 0 (proxy, full) before any seed 1."""
    from dpc.genome import Genome

    out = []
    for s in range(max(proxy_seeds, full_seeds)):
        for c in cells:
            h = Genome.parse(c["genome"]).canonical_hash()
            for task, n in (("proxy", proxy_seeds), ("full", full_seeds)):
                if s < n and (h, task, s) not in done:
                    out.append((c, task, s))
    return out


def collect(args: argparse.Namespace, argv: list[str]) -> int:
    from dpc.genome import Genome
    from proxy.config import get_config

    proxy_cfg, full_cfg = get_config(args.config), get_config(args.full_config, full=True)
    factory: Callable = load_factory(args.evaluator)
    proxy_ev = factory(proxy_cfg, cache_dir=args.cache_dir, device=args.device)
    full_ev = _full_factory(args)(full_cfg, cache_dir=args.cache_dir, device=args.device)
    dev = getattr(getattr(full_ev, "device", "cpu"), "type", "cpu")
    key = scene_set_key(full_cfg)
    directory = Path(args.data) / directory_name(full_cfg.name, full_cfg.hash(dev), key)
    directory.mkdir(parents=True, exist_ok=True)
    plan_path = directory / "plan.json"
    if plan_path.exists():
        cells = json.loads(plan_path.read_text())["cells"]
    else:
        cells = plan(args.cells, bench_cells(args.bench, args.config), args.seed)
        plan_path.write_text(json.dumps({"cells": cells, "command": "python -m benchmarks.study " + shlex.join(argv)}, indent=1))
    done = {(r["canonical_hash"], r["task"], int(r["seed"])) for shard in directory.glob("*.jsonl") for r in read_shard(shard)}
    work = todo(cells, done, args.proxy_seeds, args.full_seeds)
    shard = directory / f"{socket.gethostname()}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.jsonl"
    deadline = time.time() + args.hours * 3600 if args.hours else math.inf
    print(f"study of {len(cells)} cells in {directory}: {len(work)} evaluations to go; writing {shard.name}", file=sys.stderr)
    n = 0
    vers = versions()
    for cell, task, seed in work:
        if time.time() >= deadline or (args.evaluations is not None and n >= args.evaluations):
            break
        g = Genome.parse(cell["genome"])
        ev, cfg = (proxy_ev, proxy_cfg) if task == "proxy" else (full_ev, full_cfg)
        rec: dict[str, Any] = {"genome": str(g), "canonical_hash": g.canonical_hash(), "role": cell["role"], "task": task,
                               "seed": seed, "config": cfg.name, "scene_key": key, "versions": vers,
                               "hostname": socket.gethostname(), "command": "python -m benchmarks.study " + shlex.join(argv)}
        try:
            res = ev.evaluate(g, seed=seed)
        except KeyboardInterrupt:
            print(f"interrupted: {n} evaluation(s) written to {shard}", file=sys.stderr)
            return 130
        except Exception as e:
            if type(e).__name__ == "GPUOutOfMemoryError":
                raise
            rec.update(error=f"{type(e).__name__}: {e}", val_miou=None, test_miou=None)
        else:
            rec.update(error=None, val_miou=res.miou, test_miou=res.test_miou, params=res.params, flops=res.flops,
                       train_seconds=res.train_seconds, eval_seconds=res.eval_seconds, config_hash=res.config_hash,
                       device=res.device, precision=res.precision)
        rec["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")
        append_record(shard, {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in rec.items()})
        n += 1
        print(f"{task} seed {seed} {cell['role']:<10} {g}: val {rec['val_miou']} test {rec['test_miou']}", file=sys.stderr)
    print(f"{n} evaluation(s) written; {len(work) - n} to go", file=sys.stderr)
    return 0


def _full_factory(args: argparse.Namespace) -> Callable:
    if args.evaluator:
        return load_factory(args.evaluator)

    def make(cfg, cache_dir=None, device=None):
        from proxy.full import full_evaluator

        return full_evaluator(cfg, cache_dir=cache_dir, device=device)

    return make


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.study", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="evaluate the study's missing (cell, task, seed)s")
    c.add_argument("--config", default="cpu", help="proxy config (default cpu)")
    c.add_argument("--full-config", default="cpu", help="full-task config (default cpu: full-cpu)")
    c.add_argument("--cells", type=int, default=50, help="cells besides ASPP and top-1 (default 50)")
    c.add_argument("--proxy-seeds", type=int, default=3, help="proxy seeds per cell (default 3)")
    c.add_argument("--full-seeds", type=int, default=2, help="full-task seeds per cell (default 2)")
    c.add_argument("--hours", type=float, default=None, help="stop starting evaluations after this long")
    c.add_argument("--evaluations", type=int, default=None, help="stop after this many")
    c.add_argument("--bench", default=DEFAULT_DATA, help="DPC-Bench records to pick cells from (default bench/records)")
    c.add_argument("--data", default=DEFAULT_OUT, help=f"where the records go (default {DEFAULT_OUT})")
    c.add_argument("--seed", type=int, default=0, help="seed of the random cells' draw (default 0)")
    c.add_argument("--cache-dir", default=None)
    c.add_argument("--device", default=None)
    c.add_argument("--evaluator", default=None, help=argparse.SUPPRESS)  # module:factory for tests
    return p


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = parser()
    args = p.parse_args(argv)
    for name in ("cells", "proxy_seeds", "full_seeds"):
        if getattr(args, name) < (0 if name == "cells" else 1):
            p.error(f"--{name.replace('_', '-')} must be >= {0 if name == 'cells' else 1}")
    return collect(args, argv)


if __name__ == "__main__":
    sys.exit(main())
