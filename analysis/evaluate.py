"""Evaluate a fixed list of cells into an Optuna study: resumable and parallel.

Used for the correlation study (top and random cells of a search, re-evaluated on the
full task) and for the reference cells of a comparison (the zoo's ASPP and top-1). The
cells are enqueued as WAITING trials; workers pop them one at a time (Optuna's own
atomic pop, so two workers never take the same trial), evaluate, and tell the result.

Resume: ``plan`` is idempotent. A cell with a COMPLETE, WAITING or live RUNNING trial is
left alone; one whose trials all failed, or were left RUNNING by a dead worker (the
heartbeat of ``strategies.heartbeat``: its process is gone from this machine, or it has
not beaten for ``grace`` seconds), is enqueued again, until ``max_attempts`` of its
evaluations failed by themselves (dead or interrupted workers' trials do not count).
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from .load import REQUEUED_KINDS, open_storage

log = logging.getLogger(__name__)

Evaluate = Callable[[Any], Any]  # genome -> float | result with .miou/.to_dict()


@dataclass(frozen=True)
class Cell:
    """A cell to evaluate, with the user attrs its trial carries (group, proxy value, ...)."""

    genome: Any  # dpc.genome.Genome
    attrs: Mapping[str, Any]

    @property
    def key(self) -> str:
        return self.genome.canonical_hash()


HEARTBEAT_S = 20.0  # a running trial rewrites its heartbeat this often
GRACE_S = 180.0  # ... and is stale (its worker gone) after this long without one


def plan(study: optuna.Study, cells: Iterable[Cell], max_attempts: int = 2, grace: float = GRACE_S) -> dict[str, int]:
    """Enqueue every cell that still needs a result; returns counts for the log/CLI."""
    from strategies.heartbeat import stale_reason

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
        running = [(t, stale_reason(t, grace)) for t in trials if t.state == TrialState.RUNNING]
        if any(reason is None for _, reason in running):
            counts["running"] += 1
            continue
        for t, reason in running:  # its worker is gone: fail the trial, then enqueue the cell again
            try:
                study._storage.set_trial_user_attr(t._trial_id, "failure_reason", reason)
                study._storage.set_trial_user_attr(t._trial_id, "failure_kind", "stale")
                study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
                counts["reclaimed"] += 1
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # finished meanwhile
        # evaluations that failed on their own; a dead or interrupted worker's trial does not count
        failed = sum(1 for t in trials if t.state == TrialState.FAIL and t.user_attrs.get("failure_kind") not in REQUEUED_KINDS)
        if failed >= max_attempts:
            counts["given_up"] += 1
            continue
        attrs = {"genome": str(cell.genome), "genome_hash": cell.key, "json": cell.genome.to_json(), **cell.attrs}
        study.enqueue_trial(cell.genome.to_params(), user_attrs=attrs)
        counts["enqueued"] += 1
    return counts


def run_queue(study: optuna.Study, objective: Any, on_done: Callable[[], None] | None = None,
              heartbeat: float = HEARTBEAT_S) -> int:
    """Pop and evaluate WAITING trials until none is left; returns how many this worker did.

    ``objective`` is a ``strategies.objectives.Objective`` or anything it resolves (a
    callable ``genome -> float | result``). A failing evaluation becomes a FAIL trial with
    ``failure_reason`` and the loop goes on; Ctrl-C fails the current trial
    ("interrupted"), so a rerun enqueues its cell again.
    """
    from dpc.genome import Genome
    from strategies.heartbeat import Heartbeat, claim
    from strategies.space import search_space
    from strategies.objectives import failure_reason, resolve_objective

    objective = resolve_objective(objective)
    objective.prepare()
    storage = study._storage
    n = 0
    while True:
        trial_id = study._pop_waiting_trial_id()  # atomic: the same pop Study.ask() uses
        if trial_id is None:
            return n
        claim(storage, trial_id)
        trial = optuna.Trial(study, trial_id)
        fixed = storage.get_trial_system_attrs(trial_id).get("fixed_params", {})
        branches = sum(1 for k in fixed if k.endswith("_op"))
        try:
            params = {name: trial.suggest_categorical(name, d.choices) for name, d in search_space(branches).items()}
            genome = Genome.from_params(params)
            with Heartbeat(storage, trial_id, heartbeat):
                outcome = objective.evaluate(genome)
        except KeyboardInterrupt:
            trial.set_user_attr("failure_reason", "interrupted")
            trial.set_user_attr("failure_kind", "interrupted")
            study.tell(trial, state=TrialState.FAIL)
            raise
        except Exception as e:  # noqa: BLE001 - one bad cell must not stop the queue
            reason = failure_reason(e)
            log.warning("trial %d failed: %s", trial.number, reason)
            trial.set_user_attr("failure_reason", reason)
            trial.set_user_attr("failure_kind", "error")
            study.tell(trial, state=TrialState.FAIL)
        else:
            for k, v in outcome.attrs.items():
                if k != "genome":
                    trial.set_user_attr(k, v)  # already plain JSON (outcome_of)
            study.tell(trial, outcome.value)
        n += 1
        if on_done is not None:
            on_done()


# -- resolving an objective by name, in every worker process ------------------------------------
def make_objective(objective: str, config: str | None = None, eval_seed: int | None = None) -> Any:
    """``full`` / ``proxy`` (with a config name), ``synthetic[:...]`` or ``module:callable``,
    resolved by ``strategies.objectives`` (torch is imported only for full/proxy)."""
    from strategies.objectives import resolve_objective

    return resolve_objective(objective, config=config, eval_seed=eval_seed)


def _worker(storage: str, study_name: str, objective: str, config: str | None, eval_seed: int | None) -> int:
    logging.basicConfig(level=logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        import torch

        torch.set_num_threads(1)  # process-level parallelism: one thread each is faster on CPUs
    except ImportError:  # pragma: no cover
        pass
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    return run_queue(study, make_objective(objective, config, eval_seed))


def evaluate_cells(
    storage: str | Path | BaseStorage,
    study_name: str,
    cells: list[Cell],
    objective: str | Evaluate,
    config: str | None = None,
    eval_seed: int | None = None,
    workers: int = 1,
    study_attrs: Mapping[str, Any] | None = None,
    progress: bool = True,
    max_attempts: int = 2,
) -> optuna.Study:
    """Create/load ``study_name``, enqueue what ``cells`` still need, evaluate them.

    With ``workers > 1`` each worker is a process that resolves ``objective`` by name
    (so ``storage`` must be a file or URL, and ``objective`` a string).
    """
    if workers > 1 and (not isinstance(objective, str) or isinstance(storage, BaseStorage)):
        raise ValueError("workers > 1 need a storage path/URL and an objective name")
    st = open_storage(storage, create=True)
    study = optuna.create_study(storage=st, study_name=study_name, direction="maximize", load_if_exists=True)
    from strategies.objectives import as_mapping

    for k, v in as_mapping(study_attrs or {}).items():
        study.set_user_attr(k, v)
    counts = plan(study, cells, max_attempts=max_attempts)
    log.info("study %s: %s", study_name, counts)
    todo = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
    if todo == 0:
        return study
    bar = _bar(todo, study_name, progress)
    try:
        if workers <= 1:
            obj = make_objective(objective, config, eval_seed) if isinstance(objective, str) else objective
            run_queue(study, obj, on_done=lambda: bar.update(1))
        else:
            make_objective(objective, config, eval_seed).prepare()  # build dataset/cache once, not in every worker
            ctx = get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futures = [pool.submit(_worker, str(storage), study_name, objective, config, eval_seed) for _ in range(workers)]
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
