"""Studies and the worker loop: budget, resume, stale trials, failures, dedupe.

Budget semantics (one number, counted in trials of the study):

- a trial *uses* budget when it is COMPLETE (including ``--dedupe`` hits, which cost no
  evaluation but are a proposal of the strategy) or FAILED by its evaluation (exception,
  NaN, out of memory; the reason is on the trial);
- a trial whose worker died (stale heartbeat, SIGKILL) or was interrupted (Ctrl-C) does not:
  it is marked FAIL with ``failure_kind`` "stale"/"interrupted" and re-run with the same
  params as a new trial (``retry_of``); after ``max_retry`` re-runs of one cell it counts as
  a failed evaluation;
- a worker starts a trial only while used + running < budget, deciding under the storage's
  budget lock (see ``strategies.storage``); so N workers end with exactly ``budget``
  used trials, and re-running the command continues the study up to the budget.

Trial schema (user attributes; ``analysis`` reads them): ``genome``, ``genome_hash``,
``json`` (DeepLab JSON), ``origin`` ("random" | "mutation" | "tpe"), ``parent`` (trial
number or None), every key of the objective's ``result.to_dict()`` (proxy: ``miou``,
``per_class_iou``, ``params``, ``flops``, ``train_seconds``, ...), on failure
``failure_reason`` (one line) and ``failure_kind``, with dedupe ``dedupe_of``, on re-runs
``retry_of``; evolution adds ``tournament`` (the aspirants' trial numbers).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, Trial, TrialState

from dpc.genome import DEFAULT_BRANCHES, Genome

from .heartbeat import BEAT_KEY, OWNER_KEY, Heartbeat, claim, owner_record, release, stale_reason
from .interrupts import deferred_interrupts
from .objectives import EvaluationFailure, Objective, as_mapping, failure_reason, one_line
from .optuna_adapter import FIXED_PARAMS_KEY, pop_waiting, start_trial, storage_of, trial_id
from .settings import SearchSettings
from .space import search_space, whole_cell
from .storage import StorageError, StorageHandle

log = logging.getLogger(__name__)

RETRIES_KEY = "dpc:retries"
REQUEUED_KINDS = ("stale", "interrupted")
STUDY_KEYS = ("strategy", "seed", "objective", "config", "branches", "dataset", "pruner", "pruner_params", "budget_unit",
              "eval_every")
STUDY_DEFAULTS = {"pruner": "none", "pruner_params": {}, "budget_unit": "evaluations"}  # what studies made before them ran with
ZERO_COST_KEYS = ("train_seconds", "eval_seconds")
# Trial attrs the worker loop and samplers own; the rest came from the objective's result.
OWN_KEYS = frozenset(
    {"genome", "genome_hash", "json", "origin", "parent", "tournament", "retry_of", "dedupe_of", "failure_reason", "failure_kind"}
)


class SearchError(RuntimeError):
    """A search that cannot start or go on; the message is one line."""


# -- budget -----------------------------------------------------------------------------------
@dataclass
class BudgetStatus:
    complete: int = 0
    failed: int = 0  # failed evaluations (count against the budget)
    requeued: int = 0  # failed by a dead or interrupted worker, re-run (do not count)
    running: int = 0
    waiting: int = 0
    best: float | None = None
    best_trial: FrozenTrial | None = field(default=None, repr=False)
    pruned: int = 0  # of ``complete``: stopped early by the pruner
    compute: float = 0.0  # full-evaluation equivalents spent: each trial's ``compute`` (1 unless pruned)

    @property
    def used(self) -> int:
        return self.complete + self.failed

    def spent(self, unit: str = "evaluations") -> float:
        """Budget spent, counted in trials (``evaluations``) or in full-evaluation ``equivalents``."""
        return round(self.compute, 9) if unit == "equivalents" else self.used  # 1/3 + 2/3 is 1 here

    @classmethod
    def of(cls, trials: list[FrozenTrial]) -> "BudgetStatus":
        s = cls()
        for t in trials:
            if t.state == TrialState.COMPLETE or t.state == TrialState.PRUNED:
                s.complete += 1
                s.pruned += t.state == TrialState.PRUNED
                s.compute += _compute(t)
                if t.state == TrialState.COMPLETE and t.value is not None and (
                    s.best is None or t.value > s.best or (t.value == s.best and t.number < s.best_trial.number)
                ):
                    s.best, s.best_trial = t.value, t
            elif t.state == TrialState.FAIL:
                if t.user_attrs.get("failure_kind") in REQUEUED_KINDS:
                    s.requeued += 1
                else:
                    s.failed += 1
                    s.compute += _compute(t)
            elif t.state == TrialState.RUNNING:
                s.running += 1
            elif t.state == TrialState.WAITING:
                s.waiting += 1
        return s


def _compute(t: FrozenTrial) -> float:
    c = t.user_attrs.get("compute")
    return float(c) if isinstance(c, (int, float)) and not isinstance(c, bool) and 0 <= c <= 1 else 1.0


def budget_status(study: Study) -> BudgetStatus:
    return BudgetStatus.of(study.get_trials(deepcopy=False))


# -- study creation and resume ----------------------------------------------------------------------
def open_study(
    handle: StorageHandle,
    name: str,
    attrs: Mapping[str, Any],
    strategy_params: Mapping[str, Any],
    explicit: Mapping[str, Any] = (),
) -> tuple[Study, dict[str, Any]]:
    """Create the study or load it for resume; returns it and the strategy params to use.

    ``attrs`` (strategy, seed, budget, objective, config, branches, command) are stored on a
    new study; on resume they must match (budget may change), and the stored
    ``strategy_params`` are kept unless a flag in ``explicit`` contradicts them (an error).
    """
    try:
        exists = any(s.study_name == name for s in handle.storage.get_all_studies())
        if exists:  # loading writes nothing (create_study(load_if_exists) appends a record each run)
            study = optuna.load_study(study_name=name, storage=handle.storage, sampler=optuna.samplers.RandomSampler())
        else:
            study = optuna.create_study(
                storage=handle.storage, study_name=name, direction="maximize", load_if_exists=True,
                sampler=optuna.samplers.RandomSampler(),
            )
    except StorageError:
        raise
    except Exception as e:
        raise SearchError(f"cannot open study {name!r} in {handle.display}: {failure_reason(e)}") from None
    if study.direction != StudyDirection.MAXIMIZE:
        raise SearchError(f"study {name!r} in {handle.display} minimises; dpc-nas studies maximise")
    stored = study.user_attrs
    if "strategy_params" not in stored:
        # New, or its creation was cut short (a kill between its first writes): write every
        # attribute again. ``strategy_params`` goes last, so its presence means "complete".
        for key, value in attrs.items():
            study.set_user_attr(key, value)
        study.set_user_attr("strategy_params", dict(strategy_params))
        return study, dict(strategy_params)
    for key in STUDY_KEYS:
        was = stored.get(key, STUDY_DEFAULTS.get(key))
        if key in attrs and was != attrs[key]:
            raise SearchError(
                f"study {name!r} in {handle.display} was run with {key}={was!r}, not {attrs[key]!r}; "
                "pass the same value, or another --study/--experiment"
            )
    params = dict(stored.get("strategy_params") or {})
    for key, value in dict(explicit).items():
        if key in params and params[key] != value:
            raise SearchError(
                f"study {name!r} was run with {key}={params[key]!r}, not {value!r}; "
                "strategy settings cannot change on resume (use another --study)"
            )
    if "budget" in attrs and stored.get("budget") != attrs["budget"]:
        log.info("study %s: budget %s -> %s", name, stored.get("budget"), attrs["budget"])
        study.set_user_attr("budget", attrs["budget"])
    return study, params


# -- stale and interrupted trials ----------------------------------------------------------------------
def requeue(study: Study, trial: FrozenTrial, kind: str, reason: str, max_retry: int) -> bool:
    """Fail a trial whose worker is gone (kind "stale") or was interrupted; call under the lock.

    The cell is then *pending*: the next worker to start a trial re-runs it (``pending_reruns``)
    in the same write that starts the re-run. A worker that died counts as one retry of the
    cell; after ``max_retry`` of them the cell counts as a failed evaluation. Interruptions
    (Ctrl-C, SIGTERM) never count. Returns False if the trial was finished meanwhile, or given up.
    """
    storage = storage_of(study)
    retries = int(trial.system_attrs.get(RETRIES_KEY, 0))
    give_up = kind == "stale" and retries >= max_retry
    try:
        if give_up:
            storage.set_trial_user_attr(trial_id(trial), "failure_reason", one_line(f"{reason}; given up after {retries} re-runs"))
            storage.set_trial_user_attr(trial_id(trial), "failure_kind", "error")
        else:
            storage.set_trial_user_attr(trial_id(trial), "failure_reason", one_line(reason))
            storage.set_trial_user_attr(trial_id(trial), "failure_kind", kind)
        if not storage.set_trial_state_values(trial_id(trial), TrialState.FAIL):
            return False
    except UpdateFinishedTrialError:
        return False
    if give_up:
        log.warning("trial %d: %s; given up after %d re-runs", trial.number, reason, retries)
        return False
    if not whole_cell(trial.params, branches_of(study)):  # died before its whole cell was drawn: nothing to re-run, the slot is free
        log.warning("trial %d: %s (before drawing a cell)", trial.number, reason)
        return False
    log.warning("trial %d: %s; its cell will be re-run", trial.number, reason)
    return True


def branches_of(study: Study) -> int:
    return int(study.user_attrs.get("branches") or DEFAULT_BRANCHES)


def pending_reruns(trials: list[FrozenTrial], branches: int = DEFAULT_BRANCHES) -> list[FrozenTrial]:
    """Failed-by-their-worker trials whose cell has not been re-run yet, oldest first."""
    rerun = {t.user_attrs.get("retry_of") for t in trials}
    return [
        t for t in trials
        if t.state == TrialState.FAIL and whole_cell(t.params, branches) and t.number not in rerun
        and t.user_attrs.get("failure_kind") in REQUEUED_KINDS
    ]


def start_rerun(study: Study, failed: FrozenTrial, space, owner: dict[str, Any] | None = None) -> Trial:
    """Start the re-run of a pending cell, owner and heartbeat included, in one write."""
    retries = int(failed.system_attrs.get(RETRIES_KEY, 0)) + (failed.user_attrs.get("failure_kind") == "stale")
    # Everything it was started with (a search's origin/parent/tournament; a queue cell's eval_seed and
    # its own attrs: without its eval_seed a re-run would train with the default seed), not how it failed.
    drop = ("failure_reason", "failure_kind", "retry_of", "dedupe_of")
    user_attrs = {k: v for k, v in failed.user_attrs.items() if k not in drop}
    user_attrs["retry_of"] = failed.number
    system_attrs = {FIXED_PARAMS_KEY: dict(failed.params), RETRIES_KEY: retries,
                    OWNER_KEY: owner or owner_record(), BEAT_KEY: time.time()}
    return start_trial(study, space, params=failed.params, user_attrs=user_attrs, system_attrs=system_attrs)


def requeue_stale(study: Study, trials: list[FrozenTrial], grace: float, max_retry: int) -> list[int]:
    """Fail every RUNNING trial whose worker is gone; returns their numbers."""
    now = time.time()
    handled = []
    for t in trials:
        if t.state == TrialState.RUNNING:
            reason = stale_reason(t, grace, now)
            if reason is None and OWNER_KEY not in t.system_attrs and FIXED_PARAMS_KEY in t.system_attrs:
                # An enqueued trial is popped and claimed under this same lock: seen unclaimed
                # here, its worker stopped between the two writes.
                reason = "its worker stopped between starting the enqueued trial and claiming it"
            if reason is not None:
                requeue(study, t, "stale", f"stale: {reason}", max_retry)
                handled.append(t.number)
    return handled


# -- one trial ------------------------------------------------------------------------------------
def find_equivalent(study: Study, genome_hash: str, number: int) -> FrozenTrial | None:
    """The first COMPLETE trial (not itself a dedupe hit) of an equivalent cell."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.number != number and t.user_attrs.get("genome_hash") == genome_hash and "dedupe_of" not in t.user_attrs:
            return t
    return None


def _set_attrs(study: Study, trial: Trial, attrs: Mapping[str, Any]) -> None:
    for key, value in attrs.items():
        storage_of(study).set_trial_user_attr(trial_id(trial), key, value)


def storage_failure(e: BaseException) -> StorageError | None:
    """A storage write that failed (full or read-only disk, lost database) as one line."""
    if isinstance(e, StorageError):
        return e
    if isinstance(e, OSError):
        from .journal import os_error_text

        return StorageError(f"storage write failed: {os_error_text(e)}")
    try:
        from sqlalchemy.exc import SQLAlchemyError
    except ImportError:  # pragma: no cover - optuna depends on sqlalchemy
        return None
    if isinstance(e, SQLAlchemyError):
        return StorageError(f"storage write failed: {failure_reason(e)}")
    return None


def run_trial(study: Study, trial: Trial, objective: Objective, settings: SearchSettings, heartbeat: bool) -> tuple[str, str | None]:
    """Evaluate one asked trial and tell the study; returns (state name, failure reason)."""
    genome = Genome.from_params(trial.params)
    genome_hash = genome.canonical_hash()
    try:
        _set_attrs(study, trial, {"genome": str(genome), "genome_hash": genome_hash, "json": genome.to_json()})
    except UpdateFinishedTrialError:  # already failed as stale by another worker
        return "LOST", None
    source = find_equivalent(study, genome_hash, trial.number) if settings.dedupe else None
    try:
        if source is not None:
            attrs = {k: v for k, v in source.user_attrs.items() if k not in OWN_KEYS}
            attrs.update({k: 0.0 for k in ZERO_COST_KEYS if k in attrs})
            attrs["dedupe_of"] = source.number
            value = float(source.value)
        else:
            def report(step: int, value: float) -> None:
                try:  # intermediate values are for plots and the pruner; a failed write must never fail an evaluation
                    trial.report(float(value), int(step))
                except Exception as e:
                    log.debug("trial %d: report(%s, %s) failed: %s", trial.number, step, value, e)
                    return
                reached[0] = int(step)
                if prune and int(step) < (objective.steps or 0) and trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at step {step}")  # inside the evaluator's loop: training stops

            prune, reached = settings.pruner != "none", [0]

            seed = trial.user_attrs.get("eval_seed")  # a queue cell re-trained with its own seed
            if heartbeat:
                with Heartbeat(storage_of(study), trial_id(trial), settings.heartbeat):
                    outcome = objective.evaluate(genome, callback=report, seed=seed)
            else:
                outcome = objective.evaluate(genome, callback=report, seed=seed)
            attrs, value = outcome.attrs, outcome.value
    except (KeyboardInterrupt, SystemExit):
        raise
    except optuna.TrialPruned as e:
        attrs = {**as_mapping(getattr(e, "attrs", None) or {}), "pruned_step": reached[0],
                 "compute": reached[0] / objective.steps if objective.steps else 1.0}
        if not _finish(study, trial, attrs, state=TrialState.PRUNED):
            return "LOST", None
        log.info("trial %d pruned at step %d", trial.number, reached[0])
        return "PRUNED", None
    except EvaluationFailure as e:
        return _fail(study, trial, e.reason)
    except Exception as e:  # the objective's own errors are the trial's, not the study's
        log.debug("trial %d failed", trial.number, exc_info=True)
        return _fail(study, trial, failure_reason(e))
    try:
        finished = _finish(study, trial, attrs, value=value)
    except Exception as e:
        err = storage_failure(e)
        if err is None:
            raise
        raise StorageError(
            f"{err}; trial {trial.number} ({genome}, value {value:.4f}) was not recorded: "
            "re-run the same command when storage is writable (that cell is evaluated again)"
        ) from None
    if not finished:
        log.warning("trial %d was failed as stale by another worker while it ran (grace too short?); its re-run replaces it", trial.number)
        return "LOST", None
    return "COMPLETE", None


def _finish(study: Study, trial: Trial, attrs: Mapping[str, Any], value: float | None = None,
            state: TrialState | None = None) -> bool:
    """Record attrs and tell (COMPLETE with ``value``, PRUNED if ``state`` says so, else FAIL);
    False if another worker had already finished the trial (declared it stale)."""
    with deferred_interrupts():
        try:
            _set_attrs(study, trial, attrs)
        except UpdateFinishedTrialError:
            return False
        state = state or (TrialState.COMPLETE if value is not None else TrialState.FAIL)
        frozen = study.tell(trial, value, state=state, skip_if_finished=True)
    return frozen.state == state and (state != TrialState.FAIL or frozen.user_attrs.get("failure_kind") == "error")


def _fail(study: Study, trial: Trial, reason: str) -> tuple[str, str | None]:
    if not _finish(study, trial, {"failure_reason": reason, "failure_kind": "error"}):
        return "LOST", reason
    log.info("trial %d failed: %s", trial.number, reason)
    return "FAIL", reason


# -- the worker loop -------------------------------------------------------------------------------
def start_next(study: Study, space, trials: list[FrozenTrial], owner: dict[str, Any] | None,
               draw: bool = True) -> Trial | None:
    """Start the next trial (call under the lock): a pending re-run, an enqueued cell, or a
    new draw of the sampler. Re-runs and draws carry their owner in the write that creates
    them, so a worker killed at any instant is found at once; enqueued (WAITING) trials are
    Optuna's and need a second write, made before the lock is released."""
    pending = pending_reruns(trials, branches_of(study))
    if pending:
        return start_rerun(study, pending[0], space, owner)
    trial = pop_waiting(study, space)
    if trial is not None:
        if owner is not None:
            claim(storage_of(study), trial_id(trial), owner)
        return trial
    if not draw:
        release(owner)
        return None
    system_attrs = {OWNER_KEY: owner, BEAT_KEY: time.time()} if owner is not None else {}
    return start_trial(study, space, system_attrs=system_attrs)


@dataclass
class WorkerStats:
    started: int = 0
    complete: int = 0
    failed: int = 0
    requeued_stale: list[int] = field(default_factory=list)


def run_worker(
    study: Study,
    handle: StorageHandle,
    objective: Objective,
    settings: SearchSettings,
    budget: int | None,
    on_progress: Callable[[BudgetStatus], None] | None = None,
) -> WorkerStats:
    """Start, evaluate, tell until the study's budget is used; safe with many workers.

    ``budget=None`` runs a queue instead of a search: only enqueued cells and re-runs, never
    a new draw of the sampler, until none is left (``strategies.cells`` uses it).
    """
    space = search_space(settings.branches)
    def lock():
        return handle.lock(study.study_name)

    stats = WorkerStats()
    in_a_row, last_reason = 0, ""
    while True:
        trial, owner = None, None
        try:
            with deferred_interrupts(), lock():
                trials = study.get_trials(deepcopy=False)
                if handle.persistent:
                    handled = requeue_stale(study, trials, settings.grace, settings.max_retry)
                    if handled:
                        stats.requeued_stale += handled
                        trials = study.get_trials(deepcopy=False)
                status = BudgetStatus.of(trials)
                if budget is None or status.spent(settings.budget_unit) + status.running < budget:
                    owner = owner_record() if handle.persistent else None
                    trial = start_next(study, space, trials, owner, draw=budget is not None)
            if on_progress is not None:
                on_progress(status)
            if trial is None:
                if status.running == 0:
                    return stats
                time.sleep(settings.poll)  # other workers' trials may still fail and be re-run
                continue
            stats.started += 1
            state, reason = run_trial(study, trial, objective, settings, heartbeat=handle.persistent)
            release(owner)
        except KeyboardInterrupt:
            release(owner)
            if trial is not None:
                with deferred_interrupts(), lock():
                    frozen = storage_of(study).get_trial(trial_id(trial))
                    if frozen.state == TrialState.RUNNING:
                        requeue(study, frozen, "interrupted", "interrupted (KeyboardInterrupt/SIGTERM)", settings.max_retry)
            raise
        except SearchError:
            release(owner)
            raise
        except Exception as e:
            release(owner)
            err = storage_failure(e)
            if err is None:
                raise
            if "re-run" not in str(err):
                err = StorageError(f"{err}; every completed trial is kept: re-run the same command once storage is writable")
            raise err from None
        if state in ("COMPLETE", "PRUNED"):
            stats.complete += 1
            in_a_row = 0
        elif state == "FAIL":
            stats.failed += 1
            in_a_row += 1
            last_reason = reason or ""
            if in_a_row >= settings.max_consecutive_failures:
                if on_progress is not None:
                    on_progress(budget_status(study))
                raise SearchError(f"stopping: {in_a_row} evaluations failed in a row (last: {last_reason})")
