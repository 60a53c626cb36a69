"""Optuna storage -> tidy records: one row per trial, one per study.

Analysis reads only what the worker loops write (study and trial user attributes, trial
params, timestamps), so any study that follows the project's trial schema can be
analysed, whichever strategy or evaluator produced it.
"""
from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
# Failed trials whose worker died or was interrupted: re-run as a new trial by the worker
# loop (strategies.study), so they spent no budget and are not evaluations.
REQUEUED_KINDS = ("stale", "interrupted")


class AnalysisError(ValueError):
    """Bad input to an analysis (missing storage, unknown or empty study): one-line message."""


def read_storage(spec: str | Path | BaseStorage, create: bool = False) -> BaseStorage:
    """The storage a URL or journal path names, opened by ``strategies.storage.open_storage``
    (the workers' opener: crash-safe journal, database drivers); with ``create=False`` a missing
    file is an ``AnalysisError`` rather than a silently empty study."""
    if isinstance(spec, BaseStorage):
        return spec
    from strategies.storage import StorageError, open_storage

    try:
        return open_storage(spec, must_exist=not create).storage
    except StorageError as e:
        raise AnalysisError(str(e)) from None


@dataclass(frozen=True)
class StudyRecord:
    """A study and the attributes the worker loop stored on it."""

    name: str
    strategy: str | None
    seed: int | None
    budget: int | None
    objective: str | None
    config: str | None
    command: str | None
    n_trials: int
    n_complete: int
    user_attrs: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def pruner(self) -> str:
        return str(self.user_attrs.get("pruner") or "none")

    @property
    def arm(self) -> str | None:
        """What the analysis compares: the strategy, with its pruner when it has one (``evolution+median``)."""
        return self.strategy if self.strategy is None or self.pruner == "none" else f"{self.strategy}+{self.pruner}"

    @property
    def experiment(self) -> str:
        """``{experiment}`` of the default name ``{experiment}-{strategy}-seed{seed}`` (with a pruner,
        ``{experiment}-{strategy}-{pruner}-seed{seed}``, as ``benchmarks.compare`` names them)."""
        for suffix in (f"-{self.strategy}-{self.pruner}-seed{self.seed}", f"-{self.strategy}-seed{self.seed}"):
            if self.strategy is not None and self.name.endswith(suffix):
                return self.name[: -len(suffix)]
        return self.name


@dataclass(frozen=True)
class TrialRecord:
    """One trial. ``value`` is the objective (mIOU, maximised); NaN unless COMPLETE.

    ``n_params`` and ``flops`` are the evaluated cell's cost as the evaluator measured
    it (None when the objective stores none, e.g. the synthetic one). ``elapsed`` is
    seconds from the study's first trial start to this trial's completion: the x of a
    wall-clock curve; for a replayed objective whose trials carry ``simulated_seconds``
    (``--objective bench``) it is the simulated clock instead (``simulated`` True): the sum
    of ``simulated_seconds`` of the trials up to this one in number order, as if one worker
    had trained them one after another.
    """

    study: str
    strategy: str | None
    seed: int | None
    number: int
    state: str
    value: float
    genome: str | None
    genome_hash: str | None
    n_params: int | None
    flops: int | None
    train_seconds: float | None
    eval_seconds: float | None
    datetime_start: dt.datetime | None
    datetime_complete: dt.datetime | None
    elapsed: float | None
    duration: float | None
    origin: str | None
    trial_params: dict[str, Any] = field(default_factory=dict, repr=False)
    user_attrs: dict[str, Any] = field(default_factory=dict, repr=False)
    simulated: bool = False

    @property
    def complete(self) -> bool:
        return self.state == "COMPLETE" and math.isfinite(self.value)

    @property
    def finished(self) -> bool:
        return self.state in ("COMPLETE", "FAIL", "PRUNED")

    @property
    def compute(self) -> float:
        """Full-evaluation equivalents this trial trained (``compute``: below 1 when pruned)."""
        c = self.user_attrs.get("compute")
        return float(c) if isinstance(c, (int, float)) and not isinstance(c, bool) and 0 <= c <= 1 else 1.0

    @property
    def spent(self) -> bool:
        """Used one unit of budget: finished, and not a re-run dead/interrupted worker's trial."""
        return self.finished and not (self.state == "FAIL" and self.user_attrs.get("failure_kind") in REQUEUED_KINDS)


def _int_or_none(v: Any) -> int | None:
    try:
        return None if v is None else int(v)
    except (TypeError, ValueError):
        return None


def _float_or_none(v: Any) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def _genome_string(t: FrozenTrial) -> str | None:
    """The stored genome string, else the one the params encode (studies made elsewhere)."""
    g = t.user_attrs.get("genome")
    if isinstance(g, str):
        return g
    if any(k.endswith("_op") for k in t.params):
        try:
            from dpc.genome import Genome

            return str(Genome.from_params(t.params))
        except ValueError:
            return None
    return None


def study_names(storage: str | Path | BaseStorage) -> list[str]:
    st = read_storage(storage)
    return sorted(s.study_name for s in st.get_all_studies())


def load_study_record(storage: BaseStorage, name: str, trials: list[FrozenTrial] | None = None) -> StudyRecord:
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise AnalysisError(f"unknown study {name!r}") from None
    ua = dict(study.user_attrs)
    trials = trials if trials is not None else study.get_trials(deepcopy=False)
    return StudyRecord(
        name=name,
        strategy=ua.get("strategy"),
        seed=_int_or_none(ua.get("seed")),
        budget=_int_or_none(ua.get("budget")),
        objective=None if ua.get("objective") is None else str(ua.get("objective")),
        config=None if ua.get("config") is None else str(ua.get("config")),
        command=ua.get("command"),
        n_trials=len(trials),
        n_complete=sum(t.state == TrialState.COMPLETE for t in trials),
        user_attrs=ua,
    )


def trial_records(name: str, trials: Iterable[FrozenTrial], strategy: str | None = None, seed: int | None = None) -> list[TrialRecord]:
    """Records of one study's trials, in trial-number order."""
    trials = sorted(trials, key=lambda t: t.number)
    starts = [t.datetime_start for t in trials if t.datetime_start is not None]
    t0 = min(starts) if starts else None
    simulated = any("simulated_seconds" in t.user_attrs for t in trials)
    clock = 0.0
    out = []
    for t in trials:
        ua = dict(t.user_attrs)
        if simulated:
            clock += _float_or_none(ua.get("simulated_seconds")) or 0.0
        value = float(t.value) if t.state == TrialState.COMPLETE and t.value is not None else math.nan
        end, start = t.datetime_complete, t.datetime_start
        out.append(TrialRecord(
            study=name, strategy=strategy, seed=seed, number=t.number, state=t.state.name, value=value,
            genome=_genome_string(t), genome_hash=ua.get("genome_hash"),
            n_params=_int_or_none(ua.get("params")), flops=_int_or_none(ua.get("flops")),
            train_seconds=_float_or_none(ua.get("train_seconds")), eval_seconds=_float_or_none(ua.get("eval_seconds")),
            datetime_start=start, datetime_complete=end,
            elapsed=(clock if end is not None else None) if simulated else
            (end - t0).total_seconds() if end is not None and t0 is not None else None,
            duration=(end - start).total_seconds() if end is not None and start is not None else None,
            origin=ua.get("origin"), trial_params=dict(t.params), user_attrs=ua, simulated=simulated,
        ))
    return out


def load_study(storage: str | Path | BaseStorage, name: str) -> tuple[StudyRecord, list[TrialRecord]]:
    st = read_storage(storage)
    try:
        study = optuna.load_study(study_name=name, storage=st)
    except KeyError:
        known = ", ".join(study_names(st)) or "none"
        raise AnalysisError(f"unknown study {name!r} (studies in storage: {known})") from None
    trials = study.get_trials(deepcopy=False)
    rec = load_study_record(st, name, trials)
    return rec, trial_records(name, trials, rec.arm, rec.seed)


def load_all(storage: str | Path | BaseStorage, names: Iterable[str] | None = None) -> tuple[list[StudyRecord], list[TrialRecord]]:
    """Every study in the storage (or the named ones) and all their trials."""
    st = read_storage(storage)
    studies, records = [], []
    for name in names if names is not None else study_names(st):
        s, r = load_study(st, name)
        studies.append(s)
        records.extend(r)
    return studies, records


def is_search(s: StudyRecord) -> bool:
    """A search study (strategy and seed recorded), not a reference or correlation study."""
    return s.strategy is not None and s.seed is not None and s.user_attrs.get("kind") is None


def experiment_names(studies: Iterable[StudyRecord]) -> list[str]:
    return sorted({s.experiment for s in studies if is_search(s)})


def load_experiment_searches(storage: str | Path | BaseStorage, experiment: str) -> tuple[list[StudyRecord], list[TrialRecord]]:
    """The search studies ``{experiment}-{strategy}-seed{seed}`` of a storage and their trials."""
    st = read_storage(storage)
    studies, records = load_all(st)
    chosen = [s for s in studies if is_search(s) and s.experiment == experiment]
    if not chosen:
        known = ", ".join(experiment_names(studies)) or "none"
        raise AnalysisError(f"unknown experiment {experiment!r} (experiments in storage: {known})")
    names = {s.name for s in chosen}
    return chosen, [r for r in records if r.study in names]


def best_complete(records: Iterable[TrialRecord], k: int | None = None, distinct: bool = True) -> list[TrialRecord]:
    """Complete trials sorted by value (best first); one per canonical cell if ``distinct``.

    A cell evaluated twice (a duplicate sample, or a re-evaluation) keeps its best trial,
    so a top-k never counts one architecture twice.
    """
    done = sorted((r for r in records if r.complete), key=lambda r: (-r.value, r.study, r.number))
    if distinct:
        seen: set[str] = set()
        unique = []
        for r in done:
            key = r.genome_hash or canonical_hash(r.genome) or f"{r.study}#{r.number}"
            if key not in seen:
                seen.add(key)
                unique.append(r)
        done = unique
    return done if k is None else done[:k]


def canonical_hash(genome: str | None) -> str | None:
    if genome is None:
        return None
    from dpc.genome import Genome, GenomeError

    try:
        return Genome.parse(genome).canonical_hash()
    except GenomeError:
        return None
