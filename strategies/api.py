"""``strategies.search(objective, strategy=..., budget=..., seed=...)``: the CLI as a function."""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

import optuna
from optuna.trial import FrozenTrial

from dpc.genome import Genome

from . import workers as _workers
from .base import check_seed
from .interrupts import deferred_interrupts
from .objectives import Objective, resolve_objective
from .pruners import eval_every_for, make_pruner, pruner_params
from .registry import get_strategy
from .registry import strategy_params as default_params
from .settings import SearchSettings
from .storage import StorageHandle, in_memory, open_storage
from .study import BudgetStatus, budget_status, open_study, run_worker

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
    settings: SearchSettings | None = field(default=None, repr=False)

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
    objective: str | Callable[..., Any] | Objective | None = None,
    strategy: str | None = None,
    budget: int | None = None,
    seed: int | None = None,
    *,
    settings: SearchSettings | None = None,
    on_progress: Callable[[BudgetStatus], None] | None = None,
    on_start: Callable[[optuna.Study, StorageHandle, bool, dict[str, Any]], None] | None = None,
    **kwargs: Any,
) -> SearchResult:
    """Run (or resume) a study of ``budget`` trials of ``strategy`` on ``objective``.

    ``objective``: a callable ``genome -> float | result``, or a spec string (``"proxy"``,
    ``"full"``, ``"synthetic[:NAME,...]"``, ``"module:callable"``). Every other setting is a
    field of ``SearchSettings`` (``storage``, ``workers``, ``dataset``, ``strategy_params``,
    ...), given as ``settings=`` and/or keyword arguments. ``workers > 1`` needs a spec string
    and a persistent ``storage``: the workers are processes that rebuild both from the settings.
    Strategy settings not in ``strategy_params`` get the budget-scaled defaults of their
    declarations (``Setting`` on each sampler).
    """
    changes = {k: v for k, v in {"strategy": strategy, "budget": budget, "seed": seed}.items() if v is not None}
    if isinstance(objective, str):
        changes["objective"] = objective
    if seed is not None:
        check_seed(seed)
    if "study_name" in kwargs:  # the name Optuna's create_study uses
        kwargs["study"] = kwargs.pop("study_name")
    base = dataclasses.asdict(settings or SearchSettings())
    s = SearchSettings.of(**{**base, **kwargs, **changes})  # only what is given overrides ``settings``
    strategy_entry = get_strategy(s.strategy)
    obj = resolve_objective(objective if objective is not None and not isinstance(objective, str) else s.objective,
                            config=s.config, eval_seed=s.eval_seed, cache_dir=s.cache_dir, threads=s.threads,
                            dataset=s.dataset, eval_every=s.eval_every)
    if s.pruner != "none":
        obj, s = _prunable(obj, s, objective)
    s = s.replace(objective=obj.spec, budget=obj.default_budget if s.budget is None else s.budget,
                  experiment=s.experiment or obj.name)
    params = default_params(s.strategy, s.budget, s.strategy_params)
    pruning = pruner_params(s.pruner, s.pruner_params)
    strategy_entry.sampler(seed=s.seed, branches=s.branches, **params)  # validate before touching storage
    if s.workers > 1 and obj.spec.startswith("python:"):
        raise ValueError("workers > 1 needs an objective spec string (the workers are processes that rebuild it)")
    if s.workers > 1 and in_memory(s.storage):
        raise ValueError(f"workers > 1 needs a storage every worker process can open (a journal file or a database "
                         f"URL); {s.storage or 'in memory'!s} is private to one process, so their results would be lost")
    name = s.study or default_study_name(s.experiment, s.strategy, s.seed)
    handle = open_storage(s.storage)
    attrs = {
        "strategy": s.strategy, "seed": s.seed, "budget": s.budget, "objective": obj.spec, "config": obj.config,
        "branches": s.branches, "command": s.command or _api_command(s, obj.spec),
        "pruner": s.pruner, "pruner_params": pruning, "budget_unit": s.budget_unit,
    }
    if s.dataset is not None:
        attrs["dataset"] = s.dataset
    if s.eval_every is not None:
        attrs["eval_every"] = s.eval_every
    with deferred_interrupts(), handle.lock(name):  # workers starting together agree on one study
        study, params = open_study(handle, name, attrs, params, s.strategy_params)
    resumed = budget_status(study).used > 0
    sampler = strategy_entry.sampler(seed=s.seed, branches=s.branches, **params)
    study = optuna.load_study(study_name=name, storage=handle.storage, sampler=sampler,
                              pruner=make_pruner(s.pruner, study.user_attrs.get("pruner_params", pruning)))
    if on_start is not None:
        on_start(study, handle, resumed, params)
    if s.workers == 1:
        obj.prepare()
        run_worker(study, handle, obj, s, s.budget, on_progress)
    else:
        obj.build()  # dataset and feature cache once, before any worker starts; the data stays with the workers
        worker = s.replace(study=name, workers=1, threads=s.threads or _workers.threads_per_worker(s.workers))
        _workers.launch(worker, s.workers, _workers.gpu_count(obj.spec), lambda: budget_status(study), on_progress,
                        poll=min(s.poll, 1.0))
    return SearchResult(study, handle.display, budget_status(study), params, obj.metric, obj, s)


def _prunable(obj: Objective, s: SearchSettings, given: Any) -> tuple[Objective, SearchSettings]:
    """The objective with intermediate values a pruner can act on: a config that only evaluates at
    the end gets ``eval_every`` = a sixth of its training (values unchanged, and so is the config hash)."""
    every = eval_every_for(obj, s.pruner, s.eval_every)
    if every == s.eval_every:
        return obj, s
    if given is not None and not isinstance(given, str):
        raise ValueError(f"--pruner {s.pruner}: objective {obj.spec} reports only its final value; resolve it with "
                         f"eval_every (e.g. {every}) or pass the spec string")
    log.warning("pruner %s: config %s evaluates only at the end; reporting val mIOU every %d steps (--eval-every)",
                s.pruner, obj.config, every)
    s = s.replace(eval_every=every)
    obj = resolve_objective(s.objective, config=s.config, eval_seed=s.eval_seed, cache_dir=s.cache_dir,
                            threads=s.threads, dataset=s.dataset, eval_every=every)
    return obj, s


def _api_command(s: SearchSettings, objective: str) -> str:
    return f"strategies.search({objective!r}, strategy={s.strategy!r}, budget={s.budget}, seed={s.seed})"


def run_queue(settings: SearchSettings, on_progress: Callable[[BudgetStatus], None] | None = None) -> BudgetStatus:
    """A worker of a queue study (``settings.strategy`` None): evaluate its enqueued cells and the
    re-runs of dead workers' trials until none is left; the study already exists."""
    if settings.study is None or settings.storage is None:
        raise ValueError("a queue worker needs settings.study and a persistent settings.storage")
    obj = resolve_objective(settings.objective, config=settings.config, eval_seed=settings.eval_seed,
                            cache_dir=settings.cache_dir, threads=settings.threads, dataset=settings.dataset,
                            eval_every=settings.eval_every)
    handle = open_storage(settings.storage)
    study = optuna.load_study(study_name=settings.study, storage=handle.storage, sampler=optuna.samplers.RandomSampler())
    obj.prepare()
    run_worker(study, handle, obj, settings, None, on_progress)
    return budget_status(study)
