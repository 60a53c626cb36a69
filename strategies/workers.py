"""``--workers N``: N worker processes on this machine, each the CLI with ``--worker-index``.

Processes, not threads: Optuna ignores sampler seeds with ``n_jobs > 1`` and training holds
the GIL between kernels. Every worker reopens the study from storage (so a worker that dies
costs only its running trial), pins itself to GPU ``index % n_gpus`` when CUDA has several
devices, and on the CPU runs ``cores // N`` torch threads (two single-thread workers gave
~1.4x the throughput of one two-thread process on 2 cores). The parent only watches the
study to draw the progress bar.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
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
