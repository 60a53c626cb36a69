"""``strategies.search(objective, strategy=..., budget=..., seed=...)``: the CLI as a function."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import optuna
from optuna.trial import FrozenTrial

from dpc.genome import DEFAULT_BRANCHES, Genome

from .base import check_seed
from .interrupts import deferred_interrupts
from .objectives import Objective, resolve_objective
from .registry import get_strategy, strategy_params as default_params
from .storage import StorageHandle, in_memory, open_storage
from .study import BudgetStatus, WorkerSettings, budget_status, open_study, run_worker
from . import workers as _workers

log = logging.getLogger(__name__)


def default_study_name(experiment: str, strategy: str, seed: int) -> str:
    return f"{experiment}-{strategy}-seed{seed}"


@dataclass
class SearchResult:
    study: optuna.Study
    storage: str  # where the study lives (display form, password hidden)
    status: BudgetStatus
    strategy_params: dict[str, Any]
    metric: str = "value"
    objective: Objective | None = field(default=None, repr=False)

    @property
    def best_trial(self) -> FrozenTrial | None:
        return self.status.best_trial

    @property
    def best_value(self) -> float | None:
        return self.status.best

    @property
    def best_genome(self) -> Genome | None:
        t = self.status.best_trial
        return None if t is None else Genome.from_params(t.params)


def search(
    objective: str | Callable[..., Any] | Objective,
    strategy: str = "random",
    budget: int | None = None,
    seed: int = 0,
    *,
    storage: str | os.PathLike | None = None,
    study_name: str | None = None,
    experiment: str | None = None,
    strategy_params: Mapping[str, Any] | None = None,
    dedupe: bool = False,
    branches: int = DEFAULT_BRANCHES,
    config: str | None = None,
    eval_seed: int | None = None,
    cache_dir: str | None = None,
    workers: int = 1,
    threads: int | None = None,
    heartbeat: float = 10.0,
    grace: float = 60.0,
    max_retry: int = 2,
    poll: float = 1.0,
    max_consecutive_failures: int = 10,
    command: str | None = None,
    on_progress: Callable[[BudgetStatus], None] | None = None,
    on_start: Callable[[optuna.Study, StorageHandle, bool, dict[str, Any]], None] | None = None,
) -> SearchResult:
    """Run (or resume) a study of ``budget`` trials of ``strategy`` on ``objective``.

    ``objective``: a callable ``genome -> float | result``, or a spec string (``"proxy"``,
    ``"full"``, ``"synthetic[:NAME,...]"``, ``"module:callable"``); ``workers > 1`` needs a
    spec string and a persistent ``storage`` (the workers are processes that rebuild it).
    ``storage``: None (in memory), a journal file path or an Optuna RDB URL. Strategy
    settings not in ``strategy_params`` get the budget-scaled defaults of ``strategies.registry``.
    """
    seed = check_seed(seed)
    get_strategy(strategy)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if branches < 1:
        raise ValueError(f"branches must be >= 1, got {branches}")
    obj = resolve_objective(objective, config=config, eval_seed=eval_seed, cache_dir=cache_dir, threads=threads)
    budget = obj.default_budget if budget is None else int(budget)
    settings = WorkerSettings(budget, dedupe, heartbeat, grace, max_retry, poll, max_consecutive_failures)
    explicit = {k: v for k, v in dict(strategy_params or {}).items() if v is not None}
    params = default_params(strategy, budget, explicit)
    get_strategy(strategy).sampler(seed=seed, branches=branches, **params)  # validate before touching storage
    if workers > 1 and obj.spec.startswith("python:"):
        raise ValueError("workers > 1 needs an objective spec string (the workers are processes that rebuild it)")
    if workers > 1 and in_memory(storage):
        raise ValueError(f"workers > 1 needs a storage every worker process can open (a journal file or a database "
                         f"URL); {storage or 'in memory'!s} is private to one process, so their results would be lost")
    experiment = experiment or obj.name
    name = study_name or default_study_name(experiment, strategy, seed)
    handle = open_storage(storage)
    attrs = {
        "strategy": strategy, "seed": seed, "budget": budget, "objective": obj.spec, "config": obj.config,
        "branches": branches, "command": command or _api_command(strategy, budget, seed, obj.spec),
    }
    with deferred_interrupts(), handle.lock(name):  # workers starting together agree on one study
        study, params = open_study(handle, name, attrs, params, explicit)
    resumed = budget_status(study).used > 0
    sampler = get_strategy(strategy).sampler(seed=seed, branches=branches, **params)
    study = optuna.load_study(study_name=name, storage=handle.storage, sampler=sampler)
    if on_start is not None:
        on_start(study, handle, resumed, params)
    obj.prepare()  # dataset and feature cache once, before any worker forks
    if workers == 1:
        run_worker(study, handle, obj, settings, branches, on_progress)
    else:
        n_gpus = _workers.gpu_count(obj.spec)
        argvs = [
            _workers.cli_argv(
                {
                    "strategy": strategy, "objective": obj.spec, "config": obj.config, "budget": budget, "seed": seed,
                    "study": name, "storage": str(storage), "branches": branches, "eval_seed": eval_seed,
                    "cache_dir": cache_dir, "heartbeat": heartbeat, "grace": grace, "max_retry": max_retry,
                    "poll": poll, "threads": threads or _workers.threads_per_worker(workers), "worker_index": i,
                },
                flags=["dedupe"] if dedupe else [],
            )
            for i in range(workers)
        ]
        envs = [_workers.worker_env(i, n_gpus) for i in range(workers)]
        _workers.launch(argvs, envs, lambda: budget_status(study), on_progress, poll=min(poll, 1.0))
    return SearchResult(study, handle.display, budget_status(study), params, obj.metric, obj)


def _api_command(strategy: str, budget: int, seed: int, objective: str) -> str:
    return f"strategies.search({objective!r}, strategy={strategy!r}, budget={budget}, seed={seed})"
