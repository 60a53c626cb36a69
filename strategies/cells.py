"""Evaluate a fixed list of cells into an Optuna study, with the search's own worker loop.

Used for the correlation study (top and random cells of a search, re-evaluated on the full
task), the re-training of incumbents with fresh seeds (``strategies.incumbent``) and the
reference cells of a comparison (the zoo's ASPP and top-1). The cells are
enqueued as trials with fixed params (Optuna's WAITING trials) and run by
``strategies.study.run_worker`` with no budget: the loop of every search, so one policy for
owners, heartbeats, dead workers' re-runs and interrupts, one set of timing defaults
(``strategies.settings``), one storage opener, and workers are the same processes
(``python -m strategies.run --worker-settings ...``).

Resume: ``plan`` is idempotent. A cell with a COMPLETE, WAITING or RUNNING trial, or one whose
worker died (re-run by the loop), is left alone; one whose evaluations failed by themselves is
enqueued again until ``max_attempts`` of them failed.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from strategies import workers as _workers
from strategies.interrupts import deferred_interrupts
from strategies.objectives import as_mapping, resolve_objective
from strategies.settings import SearchSettings
from strategies.storage import StorageHandle, open_storage, thread_lock
from strategies.study import REQUEUED_KINDS, budget_status, pending_reruns, requeue_stale, run_worker

log = logging.getLogger(__name__)

Evaluate = Callable[[Any], Any]  # genome -> float | result with .miou/.to_dict()


@dataclass(frozen=True)
class Cell:
    """A cell to evaluate, with the user attrs its trial carries (group, proxy value, ...);
    ``seed``: the training seed of this evaluation (None: the objective's)."""

    genome: Any  # dpc.genome.Genome
    attrs: Mapping[str, Any]
    seed: int | None = None

    @property
    def key(self) -> str:
        return self.genome.canonical_hash() + ("" if self.seed is None else f":{self.seed}")


def trial_key(t: optuna.trial.FrozenTrial) -> str | None:
    """The ``Cell.key`` a queue trial was enqueued for (genome hash, and its seed if it has one)."""
    key = t.user_attrs.get("genome_hash")
    seed = t.user_attrs.get("eval_seed")
    return None if key is None else key + ("" if seed is None else f":{seed}")


def plan(study: optuna.Study, cells: Iterable[Cell], max_attempts: int = 2, grace: float | None = None,
         branches: int = 5) -> dict[str, int]:
    """Enqueue every cell that still needs a result (call under the study's lock); returns counts."""
    reclaimed = requeue_stale(study, study.get_trials(deepcopy=False), grace or SearchSettings().grace, max_retry=1000)
    trials = study.get_trials(deepcopy=False)
    pending = {t.number for t in pending_reruns(trials, branches)}
    by_key: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for t in trials:
        key = trial_key(t)
        if key:
            by_key.setdefault(key, []).append(t)
    counts = dict(done=0, queued=0, running=0, enqueued=0, given_up=0, reclaimed=len(reclaimed))
    for cell in cells:
        mine = by_key.get(cell.key, [])
        states = [t.state for t in mine]
        if TrialState.COMPLETE in states:
            counts["done"] += 1
        elif TrialState.WAITING in states or any(t.number in pending for t in mine):
            counts["queued"] += 1
        elif TrialState.RUNNING in states:
            counts["running"] += 1
        elif sum(t.state == TrialState.FAIL and t.user_attrs.get("failure_kind") not in REQUEUED_KINDS
                 for t in mine) >= max_attempts:
            counts["given_up"] += 1
        else:
            attrs = {"genome": str(cell.genome), "genome_hash": cell.genome.canonical_hash(), "json": cell.genome.to_json(),
                     **cell.attrs}
            if cell.seed is not None:
                attrs["eval_seed"] = int(cell.seed)
            study.enqueue_trial(cell.genome.to_params(), user_attrs=attrs)
            counts["enqueued"] += 1
    return counts


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
    dataset: str | None = None,
    cache_dir: str | None = None,
) -> optuna.Study:
    """Create/load ``study_name``, enqueue what ``cells`` still need, evaluate them.

    With ``workers > 1`` each worker is a process that resolves ``objective`` by name
    (so ``storage`` must be a file or URL, and ``objective`` a string).
    """
    if workers > 1 and (not isinstance(objective, str) or isinstance(storage, BaseStorage)):
        raise ValueError("workers > 1 need a storage path/URL and an objective name")
    branches = {len(c.genome) for c in cells} or {5}
    if len(branches) > 1:
        raise ValueError(f"cells of one study must have one number of branches, got {sorted(branches)}")
    obj = resolve_objective(objective, config=config, eval_seed=eval_seed, cache_dir=cache_dir, dataset=dataset)
    settings = SearchSettings(strategy=None, objective=obj.spec, config=obj.config, dataset=dataset, study=study_name,
                              storage=None if isinstance(storage, BaseStorage) else str(storage), eval_seed=eval_seed,
                              cache_dir=cache_dir, branches=branches.pop(), workers=workers)
    handle = (StorageHandle(storage, None, thread_lock(), persistent=False) if isinstance(storage, BaseStorage)
              else open_storage(storage))
    with deferred_interrupts(), handle.lock(study_name):
        study = optuna.create_study(storage=handle.storage, study_name=study_name, direction="maximize",
                                    load_if_exists=True, sampler=optuna.samplers.RandomSampler())
        for k, v in as_mapping(study_attrs or {}).items():
            study.set_user_attr(k, v)
        counts = plan(study, cells, max_attempts=max_attempts, branches=settings.branches)
    log.info("study %s: %s", study_name, counts)
    todo = counts["enqueued"] + counts["queued"] + counts["running"]
    if todo == 0:
        return study
    bar = _bar(todo, study_name, progress)
    start = budget_status(study)

    def on_progress(status) -> None:
        bar.n = min(todo, status.complete + status.failed - start.complete - start.failed)
        bar.refresh()

    try:
        if workers <= 1:
            obj.prepare()
            run_worker(study, handle, obj, settings, None, on_progress)
        else:
            obj.build()  # dataset and feature cache once, before any worker starts; the data stays with the workers
            threads = _workers.threads_per_worker(workers)
            _workers.launch(settings.replace(workers=1, threads=threads), workers, _workers.gpu_count(obj.spec),
                            lambda: budget_status(study), on_progress)
    finally:
        bar.close()
    return study


def _bar(total: int, name: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=name, unit="cell", disable=not enabled, leave=False)
