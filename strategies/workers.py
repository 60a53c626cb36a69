"""``--workers N``: N worker processes on this machine, each the CLI with ``--worker-index``.

Processes, not threads: Optuna ignores sampler seeds with ``n_jobs > 1`` and training holds
the GIL between kernels. Every worker reopens the study from storage (so a worker that dies
costs only its running trial), pins itself to GPU ``index % n_gpus`` when CUDA has several
devices, and on the CPU runs ``cores // N`` torch threads (two single-thread workers gave
~1.4x the throughput of one two-thread process on 2 cores). The parent only watches the
study to draw the progress bar.

Without ``--workers`` the CLI asks ``auto_workers``. On the CPU, for the proxy: one
single-thread process per core, as many as the available memory holds at ``CPU_WORKER_BYTES``
each (the peak RSS of one ``cpu`` evaluation, shared memory-mapped features counted in full);
other objectives: 1. On CUDA as many processes as the GPUs' free memory holds (each loads its
own float16 copy of the features), at most one per CPU core (each process drives its kernels
from one core). The CLI then caps N at the budget.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .settings import SearchSettings

from .study import BudgetStatus, SearchError

log = logging.getLogger(__name__)


def gpu_count(objective_spec: str) -> int:
    """CUDA devices, asked only for torch objectives (the synthetic path never imports torch)."""
    if objective_spec not in ("proxy", "full"):
        return 0
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:
        return 0


def worker_env(index: int, n_gpus: int) -> dict[str, str]:
    env = dict(os.environ)
    if n_gpus > 1:
        visible = env.get("CUDA_VISIBLE_DEVICES")
        ids = visible.split(",") if visible else [str(i) for i in range(n_gpus)]
        env["CUDA_VISIBLE_DEVICES"] = ids[index % len(ids)]
    return env


# GPU memory one worker process of a proxy/full evaluation needs, by (objective, config): an
# estimate, not a measurement. Proxy: its float16 feature cache held on the GPU (the `cpu` and
# `paper` configs share the Lite0 cache of the default scenes: 2.0 GB on disk, features and
# labels of the three splits) + the CUDA context (~0.5 GB) + a working allowance for the
# training step (`paper`: 256 channels and the loss at full label resolution, hence more).
# Full task: the backbone trained end to end on image crops (Lite2), activations dominate.
# benchmarks.gpu_pack measures the real per-worker use on a GPU (peak of the packed pass).
GIB = 1024**3
WORKER_GPU_BYTES: dict[tuple[str, str], int] = {
    ("proxy", "test"): 1 * GIB,
    ("proxy", "cpu"): 3 * GIB,
    ("proxy", "paper"): 6 * GIB,
    ("full", "test"): 2 * GIB,
    ("full", "cpu"): 12 * GIB,
    ("full", "paper"): 40 * GIB,
}
DEFAULT_WORKER_GPU_BYTES = 6 * GIB  # another config: the proxy's largest
GPU_MEMORY_FRACTION = 0.8  # of the free memory; the rest: the parent's own copy, fragmentation


CPU_WORKER_BYTES = 3 * GIB  # peak RSS of one `cpu` proxy evaluation: 2.8 GB measured (README)


def available_memory() -> int:
    """Bytes the kernel says are available (MemAvailable), else the physical memory."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def worker_gpu_bytes(objective_spec: str, config: str | None) -> int:
    """Estimated GPU memory of one worker process (``WORKER_GPU_BYTES``)."""
    return WORKER_GPU_BYTES.get((objective_spec, config or "cpu"), DEFAULT_WORKER_GPU_BYTES)


def auto_workers_reason(objective_spec: str, config: str | None) -> tuple[int, str]:
    """``(N, why)``: what ``--workers`` means when not given (see ``auto_workers``)."""
    n_gpus = gpu_count(objective_spec)
    if n_gpus == 0:
        cores = os.cpu_count() or 1
        if objective_spec == "proxy" and cores > 1:
            avail = available_memory()
            fit = max(1, avail // CPU_WORKER_BYTES)
            n = min(cores, fit)
            limit = "CPU cores" if cores <= fit else "memory"
            return n, (f"workers: {n} (auto, no CUDA device: one single-thread process per core, bound by {limit}: "
                       f"{cores} cores, {avail / GIB:.1f} GiB available / {CPU_WORKER_BYTES / GIB:.0f} "
                       f"GiB per worker)")
        why = "no CUDA device" if objective_spec in ("proxy", "full") else f"objective {objective_spec} runs on the CPU"
        return 1, f"workers: 1 (auto: {why}; --workers N runs N processes)"
    import torch

    cores = os.cpu_count() or 1
    per = worker_gpu_bytes(objective_spec, config)
    free = min(torch.cuda.mem_get_info(i)[0] for i in range(n_gpus))
    fit = int(free * GPU_MEMORY_FRACTION // per)
    n = max(1, min(cores, n_gpus * fit))
    gpus = f"{n_gpus} GPUs x " if n_gpus > 1 else ""
    limit = "CPU cores" if cores < n_gpus * fit else "GPU memory"
    return n, (f"workers: {n} (auto, bound by {limit}: {gpus}{free / GIB:.1f} GiB free x {GPU_MEMORY_FRACTION:g} / "
               f"{per / GIB:.1f} GiB per {objective_spec}-{config or 'cpu'} worker = {n_gpus * fit}; {cores} CPU cores)")


def auto_workers(objective_spec: str, config: str | None, report: Callable[[str], None] | None = None) -> int:
    """Worker processes for ``--workers`` not given. On the CPU, or for an objective that is not
    proxy/full: 1 (today's behaviour). On CUDA: ``max(1, min(cpu cores, n_gpus * floor(free GPU
    memory * 0.8 / per-worker bytes)))``, the free memory that of the fullest GPU and the
    per-worker bytes ``worker_gpu_bytes`` (e.g. 3 GiB for the `cpu` proxy, 6 GiB for `paper`).
    ``report`` gets the one-line reason."""
    n, why = auto_workers_reason(objective_spec, config)
    if report is not None:
        report(why)
    return n


def threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def launch(
    settings: "SearchSettings",
    n: int,
    n_gpus: int,
    status: Callable[[], BudgetStatus],
    on_progress: Callable[[BudgetStatus], None] | None = None,
    poll: float = 1.0,
) -> None:
    """Run ``n`` workers to the end, each given the whole ``settings``; SearchError if any fails."""
    argvs = [worker_argv(settings, i) for i in range(n)]
    envs = [worker_env(i, n_gpus) for i in range(n)]
    procs = [subprocess.Popen(argv, env=env) for argv, env in zip(argvs, envs)]
    try:
        while any(p.poll() is None for p in procs):
            if on_progress is not None:
                on_progress(status())
            time.sleep(poll)
    except KeyboardInterrupt:
        # A terminal's Ctrl-C reached the workers too: they requeue their trial and exit.
        _wait(procs, 5.0)
        raise
    finally:
        _stop(procs, signal.SIGTERM, wait=30.0)
    if on_progress is not None:
        on_progress(status())
    bad = [(i, p.returncode) for i, p in enumerate(procs) if p.returncode != 0]
    if bad:
        raise SearchError(
            f"{len(bad)} of {len(procs)} workers failed (exit codes {', '.join(f'worker {i}: {rc}' for i, rc in bad)}); "
            "re-run the same command to resume"
        )


def _wait(procs: list[subprocess.Popen], seconds: float) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline and any(p.poll() is None for p in procs):
        time.sleep(0.1)


def _stop(procs: list[subprocess.Popen], sig: int, wait: float = 10.0) -> None:
    """Signal the workers still running (SIGTERM: they requeue their trial), then kill."""
    for p in procs:
        if p.poll() is None:
            try:
                p.send_signal(sig)
            except ProcessLookupError:
                pass
    deadline = time.time() + wait
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            log.warning("worker %d did not stop; killing it (its trial will be re-run)", p.pid)
            p.kill()
            p.wait()


def worker_argv(settings: "SearchSettings", index: int) -> list[str]:
    """``python -m strategies.run --worker-settings JSON --worker-index i``: the settings whole."""
    return [sys.executable, "-m", "strategies.run", "--worker-settings", settings.to_json(), "--worker-index", str(index)]
