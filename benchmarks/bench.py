"""DPC-Bench: a growing table of proxy evaluations (cells x seeds) with learning curves.

``python -m benchmarks.bench collect --config cpu --hours 2`` evaluates cells and appends one JSON
line per evaluation to a shard ``bench/records/<config>-<confighash>-<scenekey>/<host>-<time>-<pid>.jsonl``
(flushed and fsynced per line; a partial last line left by a kill is ignored on read). Rerunning
resumes: no (canonical hash, seed) in the directory is evaluated twice. Which cell next: the zoo's
3 cells (seed 0) first, then ~70% uniform random cells, ~20% a mutation of one of the top-10 cells
by val mIOU (the neighbourhood of good cells) and ~10% an extra seed (1, then 2) of a cell with
fewer than 3 (20% while fewer than 10% of the cells have 3 seeds). With ``--workers N`` each
worker process writes its own shard and only picks cells whose hash % N is its index.

``python -m benchmarks.bench info`` prints, per directory, the cells, multi-seed cells (>= 3 seeds),
evaluations, sources, and the seed-to-seed Spearman rho of val mIOU over the multi-seed cells.
Reading merges every shard of a directory and drops duplicate (canonical hash, seed), first by date.

``python -m benchmarks.bench import STORAGE`` adds the proxy evaluations a study storage already
holds (searches, noise studies, re-trainings) where their config hash and scene set are proven
(``benchmarks.bench_import``).
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import math
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

ZOO_FIRST = ("aspp", "top1_cityscapes", "weak")
SOURCES = ("zoo", "uniform", "neighbour", "reseed")
SEEDS = (0, 1, 2)
TOP_K = 10
P_NEIGHBOUR = 0.2
P_RESEED = 0.1
P_RESEED_BEHIND = 0.2  # while fewer than TARGET_MULTI of the cells have 3 seeds
TARGET_MULTI = 0.10
DEFAULT_DATA = "bench/records"


# --------------------------------------------------------------------------- records


def directory_name(config_name: str, config_hash: str, scene_key: str) -> str:
    return f"{config_name}-{config_hash}-{scene_key}"


def read_shard(path: Path) -> list[dict]:
    """Every complete record of one shard; a line that is not a JSON object (a partial last line) is skipped."""
    out = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "canonical_hash" in rec and "seed" in rec:
            out.append(rec)
    return out


def read_records(directory: "str | Path", with_shards: bool = False) -> list:
    """All shards of a directory merged; duplicates by (canonical hash, seed) dropped, the earliest date
    wins. ``with_shards``: (record, shard file name) pairs, for provenance."""
    directory = Path(directory)
    found = []
    for shard in sorted(directory.glob("*.jsonl")):
        for i, rec in enumerate(read_shard(shard)):
            found.append((str(rec.get("date", "")), shard.name, i, rec))
    found.sort(key=lambda t: t[:3])
    seen, out = set(), []
    for _date, shard, _i, rec in found:
        key = (rec["canonical_hash"], int(rec["seed"]))
        if key not in seen:
            seen.add(key)
            out.append((rec, shard) if with_shards else rec)
    return out


def append_record(path: Path, record: dict) -> None:
    """One line, one write, flushed and fsynced; Ctrl-C is held back while it is written."""
    data = (json.dumps(record, sort_keys=True, allow_nan=False) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _ok(rec: dict) -> bool:
    m = rec.get("val_miou")
    return rec.get("error") is None and isinstance(m, (int, float)) and math.isfinite(m)


def cell_table(records: list[dict]) -> dict[str, dict]:
    """canonical hash -> {"genome": str, "seeds": {seed: val mIOU or None}}."""
    cells: dict[str, dict] = {}
    for rec in records:
        c = cells.setdefault(rec["canonical_hash"], {"genome": rec["genome"], "seeds": {}})
        c["seeds"][int(rec["seed"])] = rec["val_miou"] if _ok(rec) else None
    return cells


# --------------------------------------------------------------------------- what next


def _mine(canonical_hash: str, worker: int, workers: int) -> bool:
    return workers <= 1 or int(canonical_hash, 16) % workers == worker


def pick_next(records: list[dict], rng: np.random.Generator, worker: int = 0, workers: int = 1,
              branches: int = 5, tries: int = 200) -> Optional[tuple[Any, int, str]]:
    """(genome, seed, source) of the next evaluation; never a (canonical hash, seed) already recorded.
    Worker ``worker`` of ``workers`` only picks cells whose canonical hash % workers == worker."""
    from dpc.mutation import mutate, sample_genome
    from dpc.zoo import zoo_cell

    cells = cell_table(records)
    for name in ZOO_FIRST:
        g = zoo_cell(name)
        h = g.canonical_hash()
        if _mine(h, worker, workers) and 0 not in cells.get(h, {"seeds": {}})["seeds"]:
            return g, 0, "zoo"

    multi = sum(1 for c in cells.values() if len(c["seeds"]) >= len(SEEDS))
    p_reseed = P_RESEED if cells and multi / len(cells) >= TARGET_MULTI else P_RESEED_BEHIND
    r = rng.random()
    if r < p_reseed:
        choice = _reseed(cells, rng, worker, workers)
        if choice is not None:
            return choice
    elif r < p_reseed + P_NEIGHBOUR:
        choice = _neighbour(cells, rng, worker, workers, mutate, tries)
        if choice is not None:
            return choice
    for _ in range(tries * 50):
        g = sample_genome(rng, branches)
        h = g.canonical_hash()
        if h not in cells and _mine(h, worker, workers):
            return g, 0, "uniform"
    return None


def _reseed(cells: dict, rng: np.random.Generator, worker: int, workers: int):
    from dpc.genome import Genome

    open_cells = [(h, c) for h, c in sorted(cells.items())
                  if _mine(h, worker, workers) and 0 < len(c["seeds"]) < len(SEEDS)
                  and any(v is not None for v in c["seeds"].values())]
    if not open_cells:
        return None
    # finish cells that have 2 seeds first, so that multi-seed cells accumulate
    most = max(len(c["seeds"]) for _, c in open_cells)
    pool = [(h, c) for h, c in open_cells if len(c["seeds"]) == most]
    h, c = pool[int(rng.integers(len(pool)))]
    seed = next(s for s in SEEDS if s not in c["seeds"])
    return Genome.parse(c["genome"]), seed, "reseed"


def _neighbour(cells: dict, rng: np.random.Generator, worker: int, workers: int, mutate: Callable, tries: int):
    from dpc.genome import Genome

    scored = []
    for h, c in cells.items():
        vals = [v for v in c["seeds"].values() if v is not None]
        if vals:
            scored.append((statistics.fmean(vals), h, c["genome"]))
    if not scored:
        return None
    top = sorted(scored, key=lambda t: (-t[0], t[1]))[:TOP_K]
    for _ in range(tries):
        parent = Genome.parse(top[int(rng.integers(len(top)))][2])
        child = mutate(parent, rng)
        h = child.canonical_hash()
        if h not in cells and _mine(h, worker, workers):
            return child, 0, "neighbour"
    return None


# --------------------------------------------------------------------------- collect


def proxy_evaluator(cfg, cache_dir=None, device=None):
    """The default evaluator factory: a ProxyEvaluator (``--evaluator module:callable`` replaces it)."""
    from proxy.evaluator import ProxyEvaluator

    return ProxyEvaluator(cfg, cache_dir=cache_dir, device=device)


def load_factory(spec: Optional[str]) -> Callable:
    if not spec or spec == "proxy":
        return proxy_evaluator
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def bench_config(config: str, eval_every: int):
    from proxy.config import get_config

    return get_config(config).replace(eval_every=eval_every)


def scene_set_key(cfg) -> str:
    from proxy.scenes import resolve_config, scene_key

    return scene_key(resolve_config(cfg.scenes))


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("torch", "numpy", "scipy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def evaluator_device_type(evaluator) -> str:
    dev = getattr(evaluator, "device", "cpu")
    return getattr(dev, "type", str(dev))


def new_shard(directory: Path) -> Path:
    """A fresh shard path (host, time, pid): never an old one, whose last line may be partial."""
    stem = f"{socket.gethostname()}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    shard, n = directory / f"{stem}.jsonl", 1
    while shard.exists():
        n += 1
        shard = directory / f"{stem}-{n}.jsonl"
    return shard


def evaluate_record(evaluator, cfg, genome, seed: int, provenance: dict[str, Any]) -> dict[str, Any]:
    """One bench record: ``provenance`` (source, config, config_hash, scene_key, ...) plus the
    evaluation's results and learning curve, or its error (a NaN loss is a result too, recorded and
    not retried). The study collector makes its proxy evaluations with this, so they are bench records."""
    curve: list[list] = []
    dev_type = evaluator_device_type(evaluator)
    record: dict[str, Any] = {"genome": str(genome), "canonical_hash": genome.canonical_hash(), "seed": seed, **provenance}
    try:
        res = evaluator.evaluate(genome, seed=seed, callback=lambda step, m: curve.append([int(step), float(m)]))
    except KeyboardInterrupt:
        raise
    except Exception as e:
        if type(e).__name__ == "GPUOutOfMemoryError":
            raise
        record.update(error=f"{type(e).__name__}: {e}", val_miou=None, test_miou=None,
                      device=dev_type, precision=cfg.precision(dev_type))
    else:
        if res.config_hash != provenance["config_hash"]:
            raise RuntimeError(f"evaluator's config hash {res.config_hash} != {provenance['config_hash']}")
        if not curve or curve[-1][0] != res.iterations:
            curve.append([int(res.iterations), float(res.miou)])
        d = res.to_dict()
        record.update(
            error=None, val_miou=res.miou, test_miou=res.test_miou, curve=curve,
            per_class_iou=d["per_class_iou"], test_per_class_iou=d.get("test_per_class_iou"),
            params=res.params, flops=res.flops, train_seconds=res.train_seconds,
            eval_seconds=res.eval_seconds, iterations=res.iterations, train_loss=res.train_loss,
            device=res.device, precision=res.precision)
    record["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")
    return _finite(record)


def collect(args: argparse.Namespace, argv: list[str]) -> int:
    cfg = bench_config(args.config, args.eval_every)
    factory = load_factory(args.evaluator)
    evaluator = factory(cfg, cache_dir=args.cache_dir, device=args.device)
    dev_type = evaluator_device_type(evaluator)
    config_hash = cfg.hash(dev_type)
    key = scene_set_key(cfg)
    directory = Path(args.data) / directory_name(cfg.name, config_hash, key)
    directory.mkdir(parents=True, exist_ok=True)
    command = "python -m benchmarks.bench " + shlex.join(argv)

    if args.workers > 1 and args.worker is None:
        return spawn_workers("benchmarks.bench", args, argv, [evaluator], directory)

    worker, workers = (args.worker or 0), max(1, args.workers)
    host = socket.gethostname()
    shard = new_shard(directory)
    records = read_records(directory)
    rng = np.random.default_rng([args.seed, worker, workers, len(records)])
    deadline = time.time() + args.hours * 3600 if args.hours else None
    total = args.evaluations
    bar = _bar(total, args.hours, worker, args.quiet)
    done = 0
    vers = versions()
    print(f"collecting into {shard}", file=sys.stderr)
    try:
        while (total is None or done < total) and (deadline is None or time.time() < deadline):
            records = read_records(directory)
            choice = pick_next(records, rng, worker, workers)
            if choice is None:
                print("no cell left to evaluate", file=sys.stderr)
                break
            genome, seed, source = choice
            record = evaluate_record(evaluator, cfg, genome, seed, dict(
                source=source, config=cfg.name, config_hash=config_hash, config_dict=cfg.to_dict(), scene_key=key,
                hostname=host, command=command, versions=vers, torch=vers.get("torch")))
            record = _finite(record)
            append_record(shard, record)
            done += 1
            _advance(bar, deadline, args.hours, done)
    except KeyboardInterrupt:
        _close(bar)
        print(f"\ninterrupted: {done} evaluation(s) written to {shard}; the one in progress was dropped; "
              "rerun the same command to resume", file=sys.stderr)
        return 130
    _close(bar)
    print(f"{done} evaluation(s) written to {shard}", file=sys.stderr)
    return 0


def _finite(obj):
    """NaN/inf -> None, so every line is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _bar(total, hours, position, quiet):
    if quiet:
        return None
    from tqdm import tqdm

    if total is not None:
        return tqdm(total=total, desc=f"bench w{position}", unit="eval", position=position, leave=True)
    if hours:
        return tqdm(total=round(hours * 3600), desc=f"bench w{position}", unit="s", position=position, leave=True)
    return tqdm(desc=f"bench w{position}", unit="eval", position=position, leave=True)


def _advance(bar, deadline, hours, done):
    if bar is None:
        return
    if bar.total is not None and bar.unit == "s":
        bar.n = min(bar.total, round(hours * 3600 - max(0.0, deadline - time.time())))
        bar.set_postfix(evals=done)
        bar.refresh()
    else:
        bar.update(1)


def _close(bar):
    if bar is not None:
        bar.close()


def spawn_workers(module: str, args, argv, evaluators, directory: Path) -> int:
    """Build the caches once here, then one process (and one shard) per worker: ``python -m module
    *argv --worker W`` with its share of ``--evaluations``. Shared by the bench and the study."""
    for evaluator in evaluators:
        if hasattr(evaluator, "build_caches"):
            evaluator.build_caches()
    procs = []
    for w in range(args.workers):
        sub = list(argv) + ["--worker", str(w)]
        if args.evaluations is not None:
            k = args.evaluations // args.workers + (1 if w < args.evaluations % args.workers else 0)
            if k == 0:
                continue
            sub += ["--evaluations", str(k)]
        procs.append(subprocess.Popen([sys.executable, "-m", module] + sub))
    rc = 0
    try:
        for p in procs:
            rc = max(rc, p.wait())
    except KeyboardInterrupt:  # the workers got the same SIGINT: let them finish their lines
        for p in procs:
            rc = max(rc, p.wait())
        print(f"interrupted; records so far are in {directory}", file=sys.stderr)
        return 130
    return rc


# --------------------------------------------------------------------------- info


def seed_spearman(cells: dict) -> float:
    """Mean Spearman rho of val mIOU between seed pairs (0-1, 0-2, 1-2) over cells with 3 seeds; NaN below 3 cells."""
    from scipy import stats

    multi = [c["seeds"] for c in cells.values()
             if all(c["seeds"].get(s) is not None for s in SEEDS)]
    if len(multi) < 3:
        return math.nan
    rhos = []
    for a, b in ((0, 1), (0, 2), (1, 2)):
        x = np.array([s[a] for s in multi])
        y = np.array([s[b] for s in multi])
        if np.ptp(x) > 0 and np.ptp(y) > 0:
            rhos.append(float(stats.spearmanr(x, y).statistic))
    return statistics.fmean(rhos) if rhos else math.nan


def summary(records: list[dict]) -> dict[str, Any]:
    cells = cell_table(records)
    sources = Counter(r.get("source", "?") for r in records)
    rho = seed_spearman(cells)
    return {
        "cells": len(cells),
        "multi_seed_cells": sum(1 for c in cells.values() if len(c["seeds"]) >= len(SEEDS)),
        "evaluations": len(records),
        "failed": sum(1 for r in records if not _ok(r)),
        "sources": {s: sources.get(s, 0) for s in list(SOURCES) + sorted(set(sources) - set(SOURCES))},
        "seed_spearman": rho,
    }


def info(args: argparse.Namespace) -> int:
    root = Path(args.data)
    dirs = sorted(d for d in root.iterdir() if d.is_dir() and any(d.glob("*.jsonl"))) if root.is_dir() else []
    if not dirs:
        print(f"no records under {root}")
        return 1
    for d in dirs:
        records = read_records(d)
        s = summary(records)
        shards = defaultdict(int)
        for p in d.glob("*.jsonl"):
            shards[p.name] += 1
        print(f"{d.name}  ({len(shards)} shard(s))")
        print(f"cells: {s['cells']}")
        print(f"multi-seed cells: {s['multi_seed_cells']}")
        print(f"evaluations: {s['evaluations']}")
        print(f"failed: {s['failed']}")
        print("sources: " + ", ".join(f"{k} {v}" for k, v in s["sources"].items()))
        from benchmarks.surrogate import MIN_CELLS, heldout_spearman

        sur = heldout_spearman(records, min_cells=MIN_CELLS)
        print(f"surrogate spearman (held-out): {'n/a' if math.isnan(sur) else f'{sur:.2f}'}")
        rho = s["seed_spearman"]
        print(f"seed-to-seed spearman: {'n/a' if math.isnan(rho) else f'{rho:.2f}'}")
        print()
    return 0


def import_cli(args: argparse.Namespace) -> int:
    from benchmarks.bench_import import ImportRefused, import_storage
    from strategies.storage import StorageError

    try:
        counts = import_storage(args.storage, args.data, args.study, args.scene_key)
    except (StorageError, KeyError, ImportRefused) as e:
        print(f"python -m benchmarks.bench import: error: {e}", file=sys.stderr)
        return 2
    for directory, n in sorted(counts["written"].items()):
        print(f"imported {n} record(s) into {Path(args.data) / directory}")
    for why, n in sorted(counts["skipped"].items()):
        print(f"skipped {n} trial(s): {why}")
    if not counts["written"]:
        print("nothing imported")
    return 0


# --------------------------------------------------------------------------- CLI


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="evaluate cells and append records (resumable)")
    c.add_argument("--config", default="cpu", help="proxy config (default cpu)")
    c.add_argument("--workers", type=int, default=1, help="worker processes, one shard each (default 1)")
    budget = c.add_mutually_exclusive_group()
    budget.add_argument("--hours", type=float, default=None, help="stop starting evaluations after this long")
    budget.add_argument("--evaluations", type=int, default=None, help="stop after this many evaluations (all workers)")
    c.add_argument("--data", default=DEFAULT_DATA, help=f"records root (default {DEFAULT_DATA})")
    c.add_argument("--seed", type=int, default=0, help="seed of the cell picking (use another one on each machine)")
    c.add_argument("--eval-every", type=int, default=100, help="learning-curve step (default 100)")
    c.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    c.add_argument("--cache-dir", default=None, help="dataset and feature cache (default: the project's)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    c.add_argument("--evaluator", default="proxy", help=argparse.SUPPRESS)  # module:factory(cfg, cache_dir=, device=)
    i = sub.add_parser("info", help="summarise the records, per directory")
    i.add_argument("--data", default=DEFAULT_DATA, help=f"records root (default {DEFAULT_DATA})")
    m = sub.add_parser("import", help="records from the proxy trials a study storage already holds (benchmarks.bench_import)")
    m.add_argument("storage", help="journal file or Optuna storage URL")
    m.add_argument("--study", action="append", default=None, help="only this study (repeatable; default all)")
    m.add_argument("--data", default=DEFAULT_DATA, help=f"records root (default {DEFAULT_DATA})")
    m.add_argument("--scene-key", default=None,
                   help="scene set of trials that predate recording their data; believed only where the bench's "
                        "records of the same (cell, seed) agree bit for bit")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    if args.command == "info":
        if __name__ == "__main__":  # `bench info | head`: stop quietly when the reader goes away
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        return info(args)
    if args.command == "import":
        return import_cli(args)
    if args.workers < 1:
        parser().error("--workers must be >= 1")
    if args.worker is not None and not 0 <= args.worker < args.workers:
        parser().error("--worker must be in [0, --workers)")
    return collect(args, argv)


if __name__ == "__main__":
    sys.exit(main())
