"""Several candidates in flight on one device: packed worker processes vs one serial process.

    python -m benchmarks.gpu_pack [--config cpu] [--cells 24] [--workers N|auto] [--device cuda|cpu] [--out DIR]

Evaluates one fixed list of uniform random cells (``dpc.mutation.sample_genome`` from
``np.random.default_rng(0)``, training seed 0 each) twice in one run, with the search's own
queue (``strategies.cells.evaluate_cells``, a fresh journal in a temporary folder):

1. **packed**: ``evaluate_cells(..., workers=N)``, N worker processes on the same device, each
   with its own float16 copy of the features (``--workers auto``: ``strategies.workers.auto_workers``);
2. **serial**: the same cells with ``workers=1``, one after another in this process;
3. **seed noise**: the first ``--noise-cells`` cells once more serially with seed 1.

It prints a markdown table (wall time and candidates/hour of each pass; "steady" counts from
the first trial's start to the last one's end, i.e. without process start-up and feature
loading), the per-cell mIOU of both passes, and a last line
``packed: X candidates/hour, serial: Y candidates/hour (Zx), |packed - serial| mIOU mean A (seed-to-seed B)``,
and writes the numbers with their provenance to ``DIR/gpu_pack-<config>.json`` (rewritten after
each pass, so a run cut short by a time limit leaves what it finished).

``--device cpu`` hides CUDA from this process and its workers (``CUDA_VISIBLE_DEVICES=""``):
``--device cpu --config test --cells 4 --workers 2`` is the dry run (seconds, on any machine).
On the CPU the serial pass runs with the packed workers' torch thread count (cores // N) unless
``--serial-threads`` says otherwise: torch's CPU reductions depend on the thread count (1 vs 2
threads changed a `test` cell's mIOU in the 5th digit), and with equal threads packed and serial
results are bit-identical. On a GPU they need not be (bf16 autocast, nondeterministic kernels):
what matters is |packed - serial| next to the seed-to-seed spread. On CUDA the serial pass keeps
torch's default threads (today's serial run) and the parent samples the device's free memory
during the packed pass (``gpu_peak_bytes_per_worker``: the measurement behind
``strategies.workers.WORKER_GPU_BYTES``).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

PROG = "python -m benchmarks.gpu_pack"
NOISE_SEED = 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="cpu", help="proxy config (default cpu)")
    p.add_argument("--cells", type=int, default=24, help="random cells, each evaluated by both passes (default 24)")
    p.add_argument("--workers", default="auto", help="packed worker processes, or auto (default: from free GPU memory)")
    p.add_argument("--device", choices=("cuda", "cpu"), help="default: cuda when available, else cpu")
    p.add_argument("--noise-cells", type=int, default=4, help=f"first cells re-trained serially with seed {NOISE_SEED} (default 4)")
    p.add_argument("--serial-threads", type=int, help="torch threads of the serial pass (default: the workers' on the "
                   "CPU, torch's default on CUDA)")
    p.add_argument("--cache-dir", help="dataset/feature cache directory (default $DPC_NAS_CACHE or ~/.cache/dpc-nas)")
    p.add_argument("--out", default="runs/gpu_pack", help="folder of the JSON (default runs/gpu_pack)")
    args = p.parse_args(argv)
    if args.cells < 1 or args.noise_cells < 0:
        p.error("need --cells >= 1 and --noise-cells >= 0")
    if args.workers != "auto":
        try:
            args.workers = int(args.workers)
        except ValueError:
            p.error(f"--workers: expected a positive integer or auto, got {args.workers!r}")
        if args.workers < 1:
            p.error(f"--workers: expected a positive integer or auto, got {args.workers}")
    if args.serial_threads is not None and args.serial_threads < 1:
        p.error("--serial-threads must be >= 1")
    return args


def random_cells(n: int, seed: int = 0) -> list:
    """``n`` distinct uniform random 5-branch cells (a repeat would be one queue entry)."""
    from dpc.mutation import sample_genome

    rng = np.random.default_rng(seed)
    out, seen = [], set()
    while len(out) < n:
        g = sample_genome(rng, 5)
        if g.canonical_hash() not in seen:
            seen.add(g.canonical_hash())
            out.append(g)
    return out


class MemorySampler:
    """Lowest free memory of the current CUDA device while it runs (a thread, every 0.2 s)."""

    def __init__(self) -> None:
        import torch

        self.torch = torch
        self.before = torch.cuda.mem_get_info()[0]
        self.lowest = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.lowest = min(self.lowest, self.torch.cuda.mem_get_info()[0])
            except Exception:  # a sampling failure must never stop the benchmark
                return

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def run_pass(journal: str, study: str, cells: list, config: str, workers: int, cache_dir: str | None) -> dict[str, Any]:
    """Evaluate ``cells`` into a new study; wall time and each cell's result by its queue key."""
    import optuna
    from optuna.trial import TrialState

    from strategies.cells import evaluate_cells, trial_key
    from strategies.heartbeat import OWNER_KEY
    from strategies.storage import open_storage

    t0 = time.perf_counter()
    interrupted, error = False, None
    try:
        evaluate_cells(journal, study, cells, "proxy", config=config, workers=workers, progress=False,
                       cache_dir=cache_dir, max_attempts=1)
    except KeyboardInterrupt:  # a time limit: keep the cells that finished
        interrupted = True
    except Exception as e:  # e.g. a worker that died (SearchError): keep the cells that finished, say why
        error = " ".join(f"{type(e).__name__}: {e}".split())[:500]
    wall = time.perf_counter() - t0
    try:
        trials = optuna.load_study(study_name=study, storage=open_storage(journal).storage).get_trials(deepcopy=False)
    except KeyError:  # interrupted before the study existed
        trials = []
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    per_cell = {trial_key(t): dict(miou=float(t.value), train_loss=t.user_attrs.get("train_loss"),
                                   train_seconds=t.user_attrs.get("train_seconds"),
                                   eval_seconds=t.user_attrs.get("eval_seconds"), device=t.user_attrs.get("device"),
                                   seconds=(t.datetime_complete - t.datetime_start).total_seconds())
                for t in done}
    n = len(done)
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds() if done else 0.0
    return dict(
        workers=workers, cells=len(cells), complete=n, failed=len(failed), interrupted=interrupted, error=error,
        failure_reasons=sorted({str(t.user_attrs.get("failure_reason")) for t in failed}),
        wall_seconds=round(wall, 3), candidates_per_hour=round(n * 3600 / wall, 1) if n else 0.0,
        steady_seconds=round(span, 3), steady_candidates_per_hour=round(n * 3600 / span, 1) if n and span > 0 else 0.0,
        mean_seconds_per_candidate=round(statistics.fmean(c["seconds"] for c in per_cell.values()), 3) if n else None,
        devices=sorted({str(c["device"]) for c in per_cell.values()}),
        processes_used=len({(t.system_attrs.get(OWNER_KEY) or {}).get("pid") for t in done}),
        per_cell=per_cell,
    )


def compare(cells: list, packed: dict | None, serial: dict | None, noise: dict | None) -> dict[str, Any]:
    """Per cell |packed - serial| and |seed 0 - seed 1| (mean, max) over the cells both have."""
    from strategies.cells import Cell

    out: dict[str, Any] = {}
    if packed and serial:
        keys = [Cell(g, {}, 0).key for g in cells]
        diffs = [abs(packed["per_cell"][k]["miou"] - serial["per_cell"][k]["miou"]) for k in keys
                 if k in packed["per_cell"] and k in serial["per_cell"]]
        if diffs:
            out.update(packed_vs_serial_mean=statistics.fmean(diffs), packed_vs_serial_max=max(diffs),
                       packed_vs_serial_cells=len(diffs), packed_equals_serial=sum(d == 0.0 for d in diffs))
        if packed["candidates_per_hour"] and serial["candidates_per_hour"]:
            out["speedup"] = packed["candidates_per_hour"] / serial["candidates_per_hour"]
        if packed["steady_candidates_per_hour"] and serial["steady_candidates_per_hour"]:
            out["steady_speedup"] = packed["steady_candidates_per_hour"] / serial["steady_candidates_per_hour"]
    if serial and noise:
        pairs = [(serial["per_cell"].get(Cell(g, {}, 0).key), noise["per_cell"].get(Cell(g, {}, NOISE_SEED).key))
                 for g in cells]
        seed_diffs = [abs(a["miou"] - b["miou"]) for a, b in pairs if a and b]
        if seed_diffs:
            out.update(seed_noise_mean=statistics.fmean(seed_diffs), seed_noise_max=max(seed_diffs),
                       seed_noise_cells=len(seed_diffs))
    return out


def provenance(argv: list[str], config: str, device_type: str) -> dict[str, Any]:
    import torch

    from proxy.config import get_config

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                                cwd=Path(__file__).resolve().parents[1]).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    cfg = get_config(config)
    return dict(
        command=shlex.join(["python", "-m", "benchmarks.gpu_pack", *argv]),
        config=cfg.name, config_hash=cfg.hash(device_type), precision=cfg.precision(device_type),
        device_type=device_type,
        device_name=torch.cuda.get_device_name() if device_type == "cuda" else cpu_name(),
        torch=torch.__version__, python=platform.python_version(), cpu_count=os.cpu_count(), git_commit=commit,
        date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return "cpu: " + line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu: " + (platform.processor() or platform.machine())


def _f(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def report_lines(result: dict[str, Any], cells: list) -> list[str]:
    from strategies.cells import Cell

    passes = result["passes"]
    lines = ["| pass | processes (that ran cells) | torch threads each | cells done | wall s | candidates/hour | steady s | "
             "steady candidates/hour | s per candidate |", "|---|---|---|---|---|---|---|---|---|"]
    for name in ("packed", "serial", "seed1"):
        p = passes.get(name)
        if p:
            lines.append(f"| {name} | {p['workers']} ({p['processes_used']}) | {p['threads']} | {p['complete']}/{p['cells']} | {p['wall_seconds']:.1f} | "
                         f"{p['candidates_per_hour']:.0f} | {p['steady_seconds']:.1f} | {p['steady_candidates_per_hour']:.0f} | "
                         f"{_f(p['mean_seconds_per_candidate'], 2)} |")
    lines += ["", "| # | cell | serial mIOU | packed mIOU | abs diff | seed 1 mIOU |", "|---|---|---|---|---|---|"]
    get = {name: (passes.get(name) or {}).get("per_cell", {}) for name in ("packed", "serial", "seed1")}
    for i, g in enumerate(cells):
        k0, k1 = Cell(g, {}, 0).key, Cell(g, {}, NOISE_SEED).key
        s, pk, n = get["serial"].get(k0), get["packed"].get(k0), get["seed1"].get(k1)
        d = abs(s["miou"] - pk["miou"]) if s and pk else None
        lines.append(f"| {i} | {g} | {_f(s and s['miou'])} | {_f(pk and pk['miou'])} | {_f(d, 6)} | {_f(n and n['miou'])} |")
    c = result["comparison"]
    packed, serial = passes.get("packed"), passes.get("serial")
    if packed and serial:
        lines += ["", f"packed: {packed['candidates_per_hour']:.0f} candidates/hour, serial: {serial['candidates_per_hour']:.0f} "
                  f"candidates/hour ({c.get('speedup', 0):.2f}x), |packed - serial| mIOU mean {_f(c.get('packed_vs_serial_mean'), 5)} "
                  f"(seed-to-seed {_f(c.get('seed_noise_mean'), 5)}); steady {packed['steady_candidates_per_hour']:.0f} vs "
                  f"{serial['steady_candidates_per_hour']:.0f} candidates/hour ({c.get('steady_speedup', 0):.2f}x)"]
    return lines


def write(out: Path, result: dict[str, Any]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"gpu_pack-{result['provenance']['config']}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    hidden = "CUDA_VISIBLE_DEVICES" in os.environ, os.environ.get("CUDA_VISIBLE_DEVICES")
    if args.device == "cpu":  # before CUDA is initialised: this process and every worker it starts
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    try:
        return _main(args, argv)
    finally:
        if args.device == "cpu":
            if hidden[0]:
                os.environ["CUDA_VISIBLE_DEVICES"] = hidden[1] or ""
            else:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)


def _main(args: argparse.Namespace, argv: list[str]) -> int:
    import logging

    import optuna
    import torch

    from proxy.evaluator import ProxyEvaluator
    from strategies.cells import Cell
    from strategies.workers import auto_workers, threads_per_worker

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        print(f"{PROG}: no CUDA device: --device cuda needs a GPU (--device cpu runs the same measurement on the CPU)",
              file=sys.stderr)
        return 2
    if device == "cpu" and torch.cuda.is_available():
        print(f"{PROG}: warning: CUDA was initialised before --device cpu could hide it; the workers still run on the CPU",
              file=sys.stderr)
    if device == "cuda" and torch.cuda.device_count() > 1:
        print(f"{PROG}: warning: {torch.cuda.device_count()} GPUs visible: the workers spread over them; "
              "CUDA_VISIBLE_DEVICES=0 measures one", file=sys.stderr)
    if args.workers == "auto" and device == "cuda":
        workers = min(auto_workers("proxy", args.config, report=print), args.cells)
    elif args.workers == "auto":  # auto_workers says 1 without CUDA (a search's default); here the point is packing
        workers = max(1, min(os.cpu_count() or 1, args.cells))
        print(f"workers: {workers} (auto on --device cpu: one per CPU core, at most one per cell)")
    else:
        workers = args.workers
    threads = threads_per_worker(workers)
    serial_threads = args.serial_threads or (threads if device == "cpu" else torch.get_num_threads())
    cells = random_cells(args.cells)
    noise_cells = cells[: args.noise_cells]
    out = Path(args.out)
    result: dict[str, Any] = dict(provenance=provenance(argv, args.config, device), workers=workers,
                                  workers_requested=args.workers, cells=[str(g) for g in cells],
                                  noise_seed=NOISE_SEED, passes={}, comparison={}, finished=False)
    print(f"{len(cells)} random cells, config {args.config} ({result['provenance']['config_hash']}), device "
          f"{result['provenance']['device_name']}; packed: {workers} processes x {threads} threads; serial: 1 process x "
          f"{serial_threads} threads", flush=True)

    threads_before = torch.get_num_threads()  # the serial pass sets this process's threads; restored
    tmp = tempfile.mkdtemp(prefix="gpu_pack-")
    journal = os.path.join(tmp, "gpu_pack.journal")
    status = 0
    try:
        t0 = time.perf_counter()  # dataset and feature cache, built once (untimed for both passes)
        ev = ProxyEvaluator(args.config, cache_dir=args.cache_dir, device=device).prepare()
        result["prepare_seconds"] = round(time.perf_counter() - t0, 3)
        del ev
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
        print(f"dataset and features ready in {result['prepare_seconds']:.1f} s", flush=True)
        seed0 = [Cell(g, {"index": i}, 0) for i, g in enumerate(cells)]
        plan = [("packed", seed0, workers, threads), ("serial", seed0, 1, serial_threads),
                ("seed1", [Cell(g, {"index": i}, NOISE_SEED) for i, g in enumerate(noise_cells)], 1, serial_threads)]
        for name, queue, n, th in plan:
            if not queue:
                continue
            print(f"{name}: {len(queue)} cells, {n} process{'es' if n > 1 else ''}...", flush=True)
            if n == 1:
                torch.set_num_threads(th)
            if name == "packed" and device == "cuda":
                with MemorySampler() as mem:
                    p = run_pass(journal, name, queue, args.config, n, args.cache_dir)
                used = mem.before - mem.lowest
                p.update(gpu_free_before_bytes=mem.before, gpu_peak_used_bytes=used,
                         gpu_peak_bytes_per_worker=used // n)
            else:
                p = run_pass(journal, name, queue, args.config, n, args.cache_dir)
            p["threads"] = th
            result["passes"][name] = p
            result["comparison"] = compare(cells, result["passes"].get("packed"), result["passes"].get("serial"),
                                           result["passes"].get("seed1"))
            write(out, result)
            print(f"{name}: {p['complete']}/{p['cells']} cells in {p['wall_seconds']:.1f} s "
                  f"({p['candidates_per_hour']:.0f} candidates/hour) on {', '.join(p['devices']) or '-'}"
                  + (f"; failed: {'; '.join(p['failure_reasons'])}" if p["failed"] else "")
                  + (f"; error: {p['error']}" if p["error"] else ""), flush=True)
            if p["interrupted"]:
                raise KeyboardInterrupt
            if p["complete"] < p["cells"]:
                status = 1
        result["finished"] = True
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; the JSON holds the cells that finished", file=sys.stderr)
        status = 130
    finally:
        path = write(out, result)
        shutil.rmtree(tmp, ignore_errors=True)
        torch.set_num_threads(threads_before)
    print()
    print("\n".join(report_lines(result, cells)))
    print(f"\njson: {path}")
    return status


if __name__ == "__main__":
    sys.exit(main())
