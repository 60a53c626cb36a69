"""Evaluate a fixed list of cells into an Optuna study: resumable and parallel.

Used for the correlation study (top and random cells of a search, re-evaluated on the
full task) and for the reference cells of a comparison (the zoo's ASPP and top-1). The
cells are enqueued as WAITING trials; workers pop them one at a time (Optuna's own
atomic pop, so two workers never take the same trial), evaluate, and tell the result.

Resume: ``plan`` is idempotent. A cell with a COMPLETE, WAITING or live RUNNING trial is
left alone; one whose trials all failed (or were left RUNNING by a worker process that
no longer exists on this machine) is enqueued again, up to ``max_attempts``.
"""
from __future__ import annotations

import logging
import math
import os
import socket
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from .load import open_storage

log = logging.getLogger(__name__)

Evaluate = Callable[[Any], Any]  # genome -> float | result with .miou/.to_dict() | dict


@dataclass(frozen=True)
class Cell:
    """A cell to evaluate, with the user attrs its trial carries (group, proxy value, ...)."""

    genome: Any  # dpc.genome.Genome
    attrs: Mapping[str, Any]

    @property
    def key(self) -> str:
        return self.genome.canonical_hash()


def _space(branches: int) -> dict[str, CategoricalDistribution]:
    from dpc.ops import OP_NAMES

    d: dict[str, CategoricalDistribution] = {}
    for b in range(branches):
        d[f"b{b}_input"] = CategoricalDistribution(list(range(-1, b)))
        d[f"b{b}_op"] = CategoricalDistribution(list(OP_NAMES))
    return d


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _stale(trial: optuna.trial.FrozenTrial) -> bool:
    """A RUNNING trial whose worker process on this host is gone (crash, kill -9)."""
    host, _, pid = str(trial.user_attrs.get("worker", "")).rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def plan(study: optuna.Study, cells: Iterable[Cell], max_attempts: int = 2) -> dict[str, int]:
    """Enqueue every cell that still needs a result; returns counts for the log/CLI."""
    by_key: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for t in study.get_trials(deepcopy=False):
        key = t.user_attrs.get("genome_hash")
        if key:
            by_key.setdefault(key, []).append(t)
    counts = dict(done=0, queued=0, running=0, enqueued=0, given_up=0, reclaimed=0)
    for cell in cells:
        trials = by_key.get(cell.key, [])
        states = [t.state for t in trials]
        if TrialState.COMPLETE in states:
            counts["done"] += 1
            continue
        if TrialState.WAITING in states:
            counts["queued"] += 1
            continue
        running = [t for t in trials if t.state == TrialState.RUNNING]
        live = [t for t in running if not _stale(t)]
        if live:
            counts["running"] += 1
            continue
        for t in running:  # the worker died: fail the trial so it is not counted as running
            study._storage.set_trial_user_attr(t._trial_id, "failure_reason", "worker process died")
            study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
            counts["reclaimed"] += 1
        if len(trials) >= max_attempts:
            counts["given_up"] += 1
            continue
        attrs = {"genome": str(cell.genome), "genome_hash": cell.key, "json": cell.genome.to_json(), **cell.attrs}
        study.enqueue_trial(cell.genome.to_params(), user_attrs=attrs)
        counts["enqueued"] += 1
    return counts


def _value_and_attrs(ret: Any) -> tuple[float, dict[str, Any]]:
    """Accept what evaluators return: a float, a result object, or a dict with 'miou'."""
    if hasattr(ret, "miou"):
        attrs = ret.to_dict() if hasattr(ret, "to_dict") else {"miou": ret.miou}
        return float(ret.miou), attrs
    if isinstance(ret, Mapping):
        return float(ret["miou"]), dict(ret)
    return float(ret), {}


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        return v.item()
    return v


def run_queue(study: optuna.Study, evaluate: Evaluate, on_done: Callable[[], None] | None = None) -> int:
    """Pop and evaluate WAITING trials until none is left; returns how many this worker did.

    A failing evaluation becomes a FAIL trial with ``failure_reason``; the loop goes on.
    Ctrl-C marks the current trial FAIL ("interrupted") so a rerun enqueues it again.
    """
    from dpc.genome import Genome

    n = 0
    while True:
        trial_id = study._pop_waiting_trial_id()  # atomic: the same pop Study.ask() uses
        if trial_id is None:
            return n
        trial = optuna.Trial(study, trial_id)
        study._storage.set_trial_user_attr(trial_id, "worker", worker_id())
        fixed = study._storage.get_trial_system_attrs(trial_id).get("fixed_params", {})
        branches = sum(1 for k in fixed if k.endswith("_op"))
        try:
            params = {name: trial.suggest_categorical(name, d.choices) for name, d in _space(branches).items()}
            genome = Genome.from_params(params)
            ret = evaluate(genome)
            value, attrs = _value_and_attrs(ret)
        except KeyboardInterrupt:
            trial.set_user_attr("failure_reason", "interrupted")
            study.tell(trial, state=TrialState.FAIL)
            raise
        except Exception as e:  # noqa: BLE001 - one bad cell must not stop the queue
            reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}".rstrip(": ")
            log.warning("trial %d failed: %s", trial.number, reason)
            log.debug("%s", traceback.format_exc())
            trial.set_user_attr("failure_reason", reason)
            study.tell(trial, state=TrialState.FAIL)
        else:
            for k, v in attrs.items():
                if k not in ("genome",):
                    trial.set_user_attr(k, _jsonable(v))
            if not math.isfinite(value):
                trial.set_user_attr("failure_reason", f"non-finite value {value}")
                study.tell(trial, state=TrialState.FAIL)
            else:
                study.tell(trial, value)
        n += 1
        if on_done is not None:
            on_done()


# -- resolving an objective by name, in every worker process ------------------------------------
def make_evaluator(objective: str, config: str | None = None, seed: int = 0) -> Evaluate:
    """``full`` / ``proxy`` (with a config name), or anything ``strategies.objectives`` knows
    (``synthetic``, ``module:callable``). Imported lazily: torch only where needed."""
    if objective in ("full", "proxy"):
        if objective == "full":
            from proxy.full import FullEvaluator as E
        else:
            from proxy.evaluator import ProxyEvaluator as E
        ev = E(config=config)
        return lambda g: ev.evaluate(g, seed=seed)
    try:
        from strategies.objectives import resolve_objective
    except ImportError:  # pragma: no cover - strategies not installed
        resolve_objective = None
    if resolve_objective is not None:
        return resolve_objective(objective, config=config)
    if ":" in objective:
        import importlib

        mod, _, attr = objective.partition(":")
        return getattr(importlib.import_module(mod), attr)
    raise ValueError(f"unknown objective {objective!r}; expected full, proxy, synthetic or module:callable")


def _worker(storage: str, study_name: str, objective: str, config: str | None, seed: int) -> int:
    logging.basicConfig(level=logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        import torch

        torch.set_num_threads(1)  # process-level parallelism: one thread each is faster on CPUs
    except ImportError:  # pragma: no cover
        pass
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    return run_queue(study, make_evaluator(objective, config, seed))


def evaluate_cells(
    storage: str | Path | BaseStorage,
    study_name: str,
    cells: list[Cell],
    objective: str | Evaluate,
    config: str | None = None,
    seed: int = 0,
    workers: int = 1,
    study_attrs: Mapping[str, Any] | None = None,
    progress: bool = True,
    max_attempts: int = 2,
) -> optuna.Study:
    """Create/load ``study_name``, enqueue what ``cells`` still need, evaluate them.

    With ``workers > 1`` each worker is a process that resolves ``objective`` by name
    (so ``storage`` must be a file or URL, and ``objective`` a string).
    """
    st = open_storage(storage, create=True)
    study = optuna.create_study(storage=st, study_name=study_name, direction="maximize", load_if_exists=True)
    for k, v in (study_attrs or {}).items():
        study.set_user_attr(k, _jsonable(v))
    counts = plan(study, cells, max_attempts=max_attempts)
    log.info("study %s: %s", study_name, counts)
    todo = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
    if todo == 0:
        return study
    bar = _bar(todo, study_name, progress)
    try:
        if workers <= 1:
            evaluate = objective if callable(objective) else make_evaluator(objective, config, seed)
            run_queue(study, evaluate, on_done=lambda: bar.update(1))
        else:
            if callable(objective) or isinstance(storage, BaseStorage):
                raise ValueError("workers > 1 need a storage path/URL and an objective name")
            ctx = get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futures = [pool.submit(_worker, str(storage), study_name, objective, config, seed) for _ in range(workers)]
                while not all(f.done() for f in futures):
                    time.sleep(1.0)
                    left = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING)))
                    bar.n = todo - left
                    bar.refresh()
                for f in futures:
                    f.result()
            bar.n = todo
    finally:
        bar.close()
    return study


def _bar(total: int, name: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=name, unit="cell", disable=not enabled, leave=False)
