"""The proxy-vs-full study's collector: evaluations that accumulate across sessions and machines.

``python -m benchmarks.study collect --hours 0.2`` picks the study's cells (``plan``), then evaluates
what is missing, one JSON line per evaluation appended (and fsynced) to a shard of
``study/records/<full config>-<full hash>-<scene key>/``: each cell ``--proxy-seeds`` times with the
proxy (its val mIOU is the proxy's score) and ``--full-seeds`` times with the full task (its test
mIOU is the full task's score), and once with DPC-Bench's zero-cost predictors (synflow, NASWOT;
task ``zero_cost``). Rerunning resumes; shards from any machine merge (first record
of each (hash, task, seed) wins); ``python -m analysis.fullstudy --data DIR`` recomputes the result.

A proxy evaluation is a DPC-Bench evaluation: a (cell, seed) that the bench directory of the proxy
config (same config hash on this device, same scene set) already holds is copied into the study,
not retrained (``from_bench`` names its shard), and one the study trains is appended to the bench
too, learning curve and all (``bench_source`` says how the cell was chosen). ``python -m
benchmarks.study import STORAGE`` adds the full-task trials that a storage already holds (e.g. the
full task's noise study) where their config hash and scene set match.

Cells (``--cells N``, default 50, plus ASPP and the paper's top-1): up to half from the top quarter
of the bench by mean val mIOU (role ``top``), the rest drawn evenly over the remaining bench
(``stratified``: sorted by val, every k-th), and uniform random cells (``random``) where the bench
holds too few. The plan is written to ``plan.json`` and only grows: a later run with a larger
``--cells`` appends cells by the same rule from the bench as it is then; planned cells keep their
role. ``--plan-from OTHER/plan.json`` starts a new study with another's cells, so that two full
tasks can be compared on the same cells (``analysis.fullstudy --versus``).

Order of work (``todo``, recomputed after each evaluation from every worker's records): every proxy
seed first (a sixth of a full evaluation, and the noisier task: the best searched cell is only known
once its proxy seeds are), then every full seed of ASPP and the proxy's best searched cell (the
headline test needs two of each), then the full task round by round, every cell's first seed before
any second, so a study cut short is still a study; ``--first full`` puts the proxy last (a GPU's
second full task on the CPU study's plan). ``--workers N`` splits the plan between N processes (cells I,
I+N, ...; one shard each), spawned here, or one per machine or terminal with ``--worker I``.
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
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import numpy as np

from .bench import (
    DEFAULT_DATA,
    append_record,
    bench_config,
    directory_name,
    evaluate_record,
    evaluator_device_type,
    load_factory,
    new_shard,
    read_records,
    read_shard,
    scene_set_key,
    spawn_workers,
    versions,
)

DEFAULT_OUT = "study/records"
REFERENCE_CELLS = (("aspp", "aspp"), ("top1", "top1_cityscapes"))  # (role, zoo name)
PROXY_FIELDS = ("genome", "canonical_hash", "seed", "source", "config", "config_hash", "scene_key", "error", "val_miou",
                "test_miou", "params", "flops", "train_seconds", "eval_seconds", "device", "precision",
                "hostname", "command", "versions", "date")


def bench_cells(records: list[dict]) -> list[tuple[str, float]]:
    """(genome, mean val mIOU) of the bench's cells, best first."""
    vals: dict[str, list] = {}
    genome: dict[str, str] = {}
    for r in records:
        if r.get("error") is None and isinstance(r.get("val_miou"), (int, float)):
            vals.setdefault(r["canonical_hash"], []).append(r["val_miou"])
            genome[r["canonical_hash"]] = r["genome"]
    return sorted(((genome[h], float(np.mean(v))) for h, v in vals.items()), key=lambda t: -t[1])


def plan(cells: int, ranked: list[tuple[str, float]], seed: int = 0,
         planned: Optional[list[dict[str, str]]] = None) -> list[dict[str, str]]:
    """``planned`` (kept as is) grown to ``cells`` + 2: the references, up to half ``top`` cells from
    the bench's top quarter, ``stratified`` cells evenly over the rest of it, random to fill."""
    from dpc.genome import Genome
    from dpc.mutation import sample_genome
    from dpc.zoo import zoo_cell

    out = list(planned or [])
    seen = {Genome.parse(c["genome"]).canonical_hash() for c in out}
    for role, name in REFERENCE_CELLS:
        g = zoo_cell(name)
        if g.canonical_hash() not in seen:
            seen.add(g.canonical_hash())
            out.append({"genome": str(g), "role": role})
    quarter = max(1, len(ranked) // 4) if ranked else 0
    top_pool = [g for g, _ in ranked[:quarter] if Genome.parse(g).canonical_hash() not in seen]
    n_top = max(0, min(cells // 2 - sum(c["role"] == "top" for c in out), len(top_pool), cells + 2 - len(out)))
    out += [{"genome": g, "role": "top"} for g in top_pool[:n_top]]
    seen |= {Genome.parse(g).canonical_hash() for g in top_pool[:n_top]}
    rest = [g for g, _ in ranked if Genome.parse(g).canonical_hash() not in seen]
    n_strat = max(0, min(cells + 2 - len(out), len(rest)))
    if n_strat:
        idx = np.unique(np.linspace(0, len(rest) - 1, n_strat).round().astype(int))
        out += [{"genome": rest[i], "role": "stratified"} for i in idx]
        seen |= {Genome.parse(rest[i]).canonical_hash() for i in idx}
    rng = np.random.default_rng([seed, len(out)])
    while len(out) < cells + 2:
        g = sample_genome(rng)
        if g.canonical_hash() not in seen:
            seen.add(g.canonical_hash())
            out.append({"genome": str(g), "role": "random"})
    return out


def todo(cells: list[dict], done: set, proxy_seeds: int, full_seeds: int,
         worker: int = 0, workers: int = 1, first: Iterable[str] = (),
         proxy_first: bool = True) -> list[tuple[dict, str, int]]:
    """(cell, task, seed) still missing, the cheapest information first: every proxy seed (a sixth of
    a full evaluation, and the noisier task), then every full seed of the cells ``first`` names (the
    headline's ASPP and best searched cell), then the full task round by round (every cell's seed 0
    before any seed 1); ``proxy_first=False`` puts the proxy last (a second full task on a known plan,
    where the full seeds are the point). With ``workers`` > 1 only the plan's cells ``worker``,
    ``worker + workers``, ..."""
    from dpc.genome import Genome

    mine = [(c, Genome.parse(c["genome"]).canonical_hash()) for i, c in enumerate(cells) if i % workers == worker]
    first = set(first)
    proxy = [("proxy", s, c, h) for s in range(proxy_seeds) for c, h in mine]
    full = ([("full", s, c, h) for c, h in mine if h in first for s in range(full_seeds)]
            + [("full", s, c, h) for s in range(full_seeds) for c, h in mine if h not in first])
    order = proxy + full if proxy_first else full + proxy
    return [(c, task, s) for task, s, c, h in order if (h, task, s) not in done]


def headline_cells(records: list[dict], cells: list[dict]) -> list[str]:
    """Canonical hashes of ASPP and of the proxy's best searched cell so far, the headline test's pair."""
    from analysis.fullstudy import best_searched, cells_of

    roles = {c["genome"]: c["role"] for c in cells}
    seen = cells_of([dict(r, role=roles.get(r["genome"], r.get("role"))) for r in records], complete=False)
    best = best_searched([c for c in seen if c["genome"] in roles])
    return [c["hash"] for c in seen if c["role"] == "aspp"] + ([best["hash"]] if best else [])


def bench_source(role: str, seed: int) -> str:
    """The bench's ``source`` of a proxy evaluation the study trains: how the cell was chosen, as
    the bench's own collector would say it (``study``: picked by the study from elsewhere, e.g. the
    top of another device's bench), so the surrogate's leave-one-source-out stays meaningful."""
    if seed > 0:
        return "reseed"
    return {"random": "uniform", "aspp": "zoo", "top1": "zoo"}.get(role, "study")


def proxy_record(bench_rec: dict, role: str, bench_shard: str) -> dict[str, Any]:
    """The study's copy of a bench record (the proxy's score of one (cell, seed))."""
    rec = {k: bench_rec.get(k) for k in PROXY_FIELDS}
    rec.update(role=role, task="proxy", from_bench=bench_shard)
    return rec


def _records_with_shards(directory: Path) -> dict[tuple[str, int], tuple[dict, str]]:
    """(hash, seed) -> (record, its shard's path relative to the bench root) of a bench directory."""
    if not directory.is_dir():
        return {}
    return {(r["canonical_hash"], int(r["seed"])): (r, f"{directory.name}/{shard}")
            for r, shard in read_records(directory, with_shards=True)}


def load_plan(plan_path: Path, args: argparse.Namespace, ranked: list[tuple[str, float]], command: str) -> Optional[list[dict]]:
    """The study's cells: ``plan.json`` (else ``--plan-from``'s cells), grown to ``--cells`` from the
    bench's ``ranked`` cells and written back atomically; None after a one-line error."""
    if plan_path.exists():
        saved = json.loads(plan_path.read_text())
    elif args.plan_from:
        try:
            saved = {"cells": json.loads(Path(args.plan_from).read_text())["cells"], "plan_from": str(args.plan_from)}
        except (OSError, ValueError, KeyError) as e:
            print(f"python -m benchmarks.study: error: --plan-from {args.plan_from}: not a study's plan.json "
                  f"({type(e).__name__})", file=sys.stderr)
            return None
    else:
        saved = {"cells": [], "commands": []}
    cells = saved["cells"]
    if len(cells) < args.cells + 2 or not plan_path.exists():
        cells = plan(args.cells, ranked, args.seed, cells)
        saved = {**saved, "cells": cells,
                 "commands": saved.get("commands", [saved["command"]] if "command" in saved else []) + [command]}
        tmp = plan_path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(saved, indent=1))
        tmp.replace(plan_path)
    return cells


def collect(args: argparse.Namespace, argv: list[str]) -> int:
    from dpc.genome import Genome
    from proxy.config import get_config

    proxy_cfg, full_cfg = bench_config(args.config, args.eval_every), get_config(args.full_config, full=True)
    key = scene_set_key(full_cfg)
    if scene_set_key(proxy_cfg) != key:
        print(f"python -m benchmarks.study: error: the proxy config {proxy_cfg.name} and the full config "
              f"{full_cfg.name} use different scene sets ({scene_set_key(proxy_cfg)} vs {key})", file=sys.stderr)
        return 2
    factory: Callable = load_factory(args.evaluator)
    proxy_ev = factory(proxy_cfg, cache_dir=args.cache_dir, device=args.device)
    full_ev = _full_factory(args)(full_cfg, cache_dir=args.cache_dir, device=args.device)
    proxy_hash = proxy_cfg.hash(evaluator_device_type(proxy_ev))
    bench_dir = Path(args.bench) / directory_name(proxy_cfg.name, proxy_hash, key)
    directory = Path(args.data) / directory_name(full_cfg.name, full_cfg.hash(evaluator_device_type(full_ev)), key)
    directory.mkdir(parents=True, exist_ok=True)
    command = "python -m benchmarks.study " + shlex.join(argv)
    bench_held = _records_with_shards(bench_dir)

    cells = load_plan(directory / "plan.json", args, bench_cells([r for r, _ in bench_held.values()]), command)
    if cells is None:
        return 2
    if args.workers > 1 and args.worker is None:  # the plan is on disk: the workers share it
        return spawn_workers("benchmarks.study", args, argv, [proxy_ev, full_ev], directory)
    worker = args.worker or 0

    records = [r for shard in directory.glob("*.jsonl") for r in read_shard(shard)]
    done = {(r["canonical_hash"], r["task"], int(r["seed"])) for r in records}
    shard = new_shard(directory)
    vers = versions()
    copied = 0
    planned = {Genome.parse(c["genome"]).canonical_hash() for c in cells}
    imported = list({r["canonical_hash"]: {"genome": r["genome"], "role": r["role"]} for r in records
                     if r["task"] == "full" and r["canonical_hash"] not in planned}.values())  # e.g. a noise study's cells
    for cell, _task, seed in todo(cells + imported, done, args.proxy_seeds, 0, worker, args.workers):
        h = Genome.parse(cell["genome"]).canonical_hash()
        if (h, seed) in bench_held:
            rec, where = bench_held[(h, seed)]
            append_record(shard, proxy_record(rec, cell["role"], where))
            done.add((h, "proxy", seed))
            copied += 1
    if args.zero_cost:
        copied_scores = zero_cost_records(shard, [c for i, c in enumerate(cells) if i % args.workers == worker],
                                          done, proxy_cfg, key, args.cache_dir)
        print(f"zero-cost scores of {copied_scores} cell(s) written", file=sys.stderr)
    def pending() -> list[tuple[dict, str, int]]:  # re-read each time: the other workers' records count
        records = [r for shard in directory.glob("*.jsonl") for r in read_shard(shard)]
        done = {(r["canonical_hash"], r["task"], int(r["seed"])) for r in records}
        return todo(cells, done, args.proxy_seeds, args.full_seeds, worker, args.workers,
                    first=headline_cells(records, cells), proxy_first=args.first == "proxy")

    work = pending()
    deadline = time.time() + args.hours * 3600 if args.hours else math.inf
    print(f"study of {len(cells)} cells in {directory}: {copied} proxy evaluation(s) taken from {bench_dir}, "
          f"{len(work)} evaluations to go; writing {shard.name}", file=sys.stderr)
    n, bench_shard = 0, None
    while work and time.time() < deadline and (args.evaluations is None or n < args.evaluations):
        cell, task, seed = work[0]
        g = Genome.parse(cell["genome"])
        try:
            if task == "proxy":
                bench_dir.mkdir(parents=True, exist_ok=True)
                brec = evaluate_record(proxy_ev, proxy_cfg, g, seed, dict(
                    source=bench_source(cell["role"], seed), config=proxy_cfg.name, config_hash=proxy_hash, config_dict=proxy_cfg.to_dict(),
                    scene_key=key, hostname=socket.gethostname(), command=command, versions=vers,
                    torch=vers.get("torch")))
                bench_shard = bench_shard or new_shard(bench_dir)
                append_record(bench_shard, brec)
                rec = proxy_record(brec, cell["role"], f"{bench_dir.name}/{bench_shard.name}")
            else:
                rec = full_record(full_ev, full_cfg, g, seed, cell["role"], key, command, vers)
        except KeyboardInterrupt:
            print(f"interrupted: {n} evaluation(s) written to {shard}", file=sys.stderr)
            return 130
        append_record(shard, rec)
        n += 1
        print(f"{task} seed {seed} {cell['role']:<10} {g}: val {rec['val_miou']} test {rec['test_miou']}", file=sys.stderr)
        work = pending()
    print(f"{n} evaluation(s) written; {len(work)} to go", file=sys.stderr)
    return 0


def zero_cost_records(shard: Path, cells: list[dict], done: set, proxy_cfg, key: str, cache_dir=None) -> int:
    """One ``zero_cost`` record (seed 0) per cell that lacks one: DPC-Bench's cheap predictors
    (synflow; NASWOT on a seeded batch of the cached train features), at the proxy's feature shape."""
    from dpc.genome import Genome

    from .zero_cost import BATCH, naswot, synflow, train_features

    missing = [c for c in cells if (Genome.parse(c["genome"]).canonical_hash(), "zero_cost", 0) not in done]
    if not missing:
        return 0
    features = train_features(proxy_cfg, BATCH, seed=0, scene_key=key, cache_dir=cache_dir)
    for c in missing:
        g = Genome.parse(c["genome"])
        t0 = time.perf_counter()
        scores = {"synflow": synflow(g, proxy_cfg, features.shape[1], tuple(features.shape[-2:])),
                  "naswot": naswot(g, proxy_cfg, features)}
        append_record(shard, {"genome": str(g), "canonical_hash": g.canonical_hash(), "role": c["role"],
                              "task": "zero_cost", "seed": 0, "config": proxy_cfg.name, "scene_key": key,
                              "error": None, **{k: (v if math.isfinite(v) else None) for k, v in scores.items()},
                              "seconds": time.perf_counter() - t0,
                              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")})
        done.add((g.canonical_hash(), "zero_cost", 0))
    return len(missing)


def full_record(evaluator, cfg, genome, seed: int, role: str, key: str, command: str, vers: dict) -> dict[str, Any]:
    """One full-task evaluation as a study record; a failure (NaN loss) is recorded, not retried."""
    rec: dict[str, Any] = {"genome": str(genome), "canonical_hash": genome.canonical_hash(), "role": role, "task": "full",
                           "seed": seed, "config": cfg.name, "scene_key": key, "versions": vers,
                           "hostname": socket.gethostname(), "command": command}
    try:
        res = evaluator.evaluate(genome, seed=seed)
    except KeyboardInterrupt:
        raise
    except Exception as e:
        if type(e).__name__ == "GPUOutOfMemoryError":
            raise
        rec.update(error=f"{type(e).__name__}: {e}", val_miou=None, test_miou=None)
    else:
        rec.update(error=None, val_miou=res.miou, test_miou=res.test_miou, params=res.params, flops=res.flops,
                   train_seconds=res.train_seconds, eval_seconds=res.eval_seconds, config_hash=res.config_hash,
                   device=res.device, precision=res.precision)
    rec["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in rec.items()}


def import_storage(storage: str, data: str | Path, full_config: str) -> Counter:
    """Full-task trials of ``storage`` as study records in ``full_config``'s directory of their scene
    set, where the trial's config hash is today's hash of that config on its device type; a (cell,
    seed) the directory holds is not written again. Returns counts per directory and per reason skipped."""
    import optuna

    from dpc.genome import Genome
    from dpc.zoo import zoo_cell
    from proxy.config import get_config
    from strategies.storage import open_storage

    from .bench_import import scene_key_of

    cfg = get_config(full_config, full=True)
    store = open_storage(storage, must_exist=True).storage
    counts: Counter = Counter()
    shards: dict[Path, Path] = {}
    references = {zoo_cell(name).canonical_hash(): role for role, name in REFERENCE_CELLS}
    for summary in optuna.get_all_study_summaries(store):
        for t in optuna.load_study(study_name=summary.study_name, storage=store).get_trials(deepcopy=False):
            a = t.user_attrs
            device_type = "cpu" if a.get("device") == "cpu" else "cuda"
            key = scene_key_of(a.get("data"))
            if t.state != optuna.trial.TrialState.COMPLETE or a.get("config_hash") != cfg.hash(device_type):
                counts["skipped: not a complete trial of this config's hash"] += 1
                continue
            if key is None:
                counts["skipped: no embedded scene set recorded"] += 1
                continue
            directory = Path(data) / directory_name(cfg.name, a["config_hash"], key)
            g = Genome.parse(a["genome"])
            seed = int(a.get("seed", 0))
            held = {(r["canonical_hash"], r["task"], int(r["seed"])) for f in directory.glob("*.jsonl") for r in read_shard(f)}
            if (g.canonical_hash(), "full", seed) in held:
                counts["skipped: already held"] += 1
                continue
            plan_path = directory / "plan.json"
            roles = {Genome.parse(c["genome"]).canonical_hash(): c["role"]
                     for c in (json.loads(plan_path.read_text())["cells"] if plan_path.exists() else [])}
            role = roles.get(g.canonical_hash()) or references.get(g.canonical_hash(), "import")
            rec = {"genome": str(g), "canonical_hash": g.canonical_hash(), "role": role,
                   "task": "full", "seed": seed, "config": cfg.name, "scene_key": key, "versions": None,
                   "hostname": None, "command": summary.user_attrs.get("command"),
                   "imported_from": {"storage": str(storage), "study": summary.study_name, "trial": t.number},
                   "error": None, "val_miou": t.value, "test_miou": a.get("test_miou"), "params": a.get("params"),
                   "flops": a.get("flops"), "train_seconds": a.get("train_seconds"), "eval_seconds": a.get("eval_seconds"),
                   "config_hash": a["config_hash"], "device": a.get("device"), "precision": a.get("precision"),
                   "date": (t.datetime_complete or datetime.datetime.now()).astimezone(datetime.timezone.utc)
                   .isoformat(timespec="microseconds")}
            directory.mkdir(parents=True, exist_ok=True)
            shard = shards.setdefault(directory, directory / f"import-{new_shard(directory).name}")
            append_record(shard, rec)
            counts[str(directory)] += 1
    return counts


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
    c.add_argument("--first", choices=("proxy", "full"), default="proxy",
                   help="which task's seeds come first (default proxy: a sixth of the cost, and it picks the headline's "
                        "best searched cell; full for a second full task on a known plan, --plan-from)")
    c.add_argument("--hours", type=float, default=None, help="stop starting evaluations after this long")
    c.add_argument("--evaluations", type=int, default=None, help="stop after this many")
    c.add_argument("--bench", default=DEFAULT_DATA, help="DPC-Bench records to pick cells from (default bench/records)")
    c.add_argument("--data", default=DEFAULT_OUT, help=f"where the records go (default {DEFAULT_OUT})")
    c.add_argument("--seed", type=int, default=0, help="seed of the random cells' draw (default 0)")
    c.add_argument("--plan-from", default=None, metavar="PLAN_JSON",
                   help="a new study starts from this study's cells (e.g. a GPU full task on the CPU study's plan)")
    c.add_argument("--cache-dir", default=None)
    c.add_argument("--device", default=None)
    c.add_argument("--no-zero-cost", dest="zero_cost", action="store_false",
                   help="skip the cells' zero-cost scores (synflow, NASWOT: seconds a cell, but they need the proxy's features)")
    c.add_argument("--eval-every", type=int, default=100, help="the proxy's learning-curve step (default 100, as the bench)")
    c.add_argument("--workers", type=int, default=1,
                   help="processes sharing the plan, one shard each: spawned here, or one a machine with --worker")
    c.add_argument("--worker", type=int, default=None, help="this process's index, 0..workers-1 (default: spawn them all)")
    c.add_argument("--evaluator", default=None, help=argparse.SUPPRESS)  # module:factory for tests
    m = sub.add_parser("import", help="study records from the full-task trials a storage already holds")
    m.add_argument("storage", help="journal file or Optuna storage URL")
    m.add_argument("--full-config", default="cpu", help="full-task config (default cpu: full-cpu)")
    m.add_argument("--data", default=DEFAULT_OUT, help=f"where the records go (default {DEFAULT_OUT})")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = parser()
    args = p.parse_args(argv)
    if args.command == "import":
        from strategies.storage import StorageError

        try:
            counts = import_storage(args.storage, args.data, args.full_config)
        except (StorageError, ValueError) as e:
            print(f"python -m benchmarks.study import: error: {e}", file=sys.stderr)
            return 2
        for what, n in sorted(counts.items()):
            print(f"{what}: {n}" if what.startswith("skipped") else f"imported {n} record(s) into {what}")
        return 0
    for name in ("cells", "proxy_seeds", "full_seeds", "workers"):
        if getattr(args, name) < (0 if name == "cells" else 1):
            p.error(f"--{name.replace('_', '-')} must be >= {0 if name == 'cells' else 1}")
    if args.worker is not None and not 0 <= args.worker < args.workers:
        p.error(f"--worker must be in 0..{args.workers - 1}")
    return collect(args, argv)


if __name__ == "__main__":
    sys.exit(main())
