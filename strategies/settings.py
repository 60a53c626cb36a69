"""One settings object for a search: built by the CLI (or ``search(**kwargs)``), validated once,
and handed whole to every worker process as JSON, so no flag can be dropped on the way."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from dpc.genome import DEFAULT_BRANCHES, MAX_BRANCHES

MAX_BUDGET = 10_000_000
MAX_HEARTBEAT_S = 3600.0  # also the longest poll
MAX_GRACE_S = 7 * 86400.0
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"  # experiment and study names (no '..' either): no paths
BUDGET_UNITS = ("evaluations", "equivalents")
HEARTBEAT_S, GRACE_S = 10.0, 60.0  # the one set of timing defaults (searches and cell queues)


@dataclass(frozen=True)
class SearchSettings:
    """Everything a worker needs besides the study itself. ``budget=None``: the objective's."""

    strategy: str | None = "random"  # None: a queue of enqueued cells (strategies.cells), no sampler
    budget: int | None = None
    seed: int = 0
    objective: str = "proxy"  # a spec string (workers rebuild the objective from it)
    config: str | None = None
    dataset: str | None = None  # scenes[:PRESET] | voc:PATH | cityscapes:PATH (proxy/full only)
    experiment: str | None = None
    study: str | None = None
    storage: str | None = None  # journal path or URL; None: in memory
    workers: int = 1
    dedupe: bool = False
    branches: int = DEFAULT_BRANCHES
    eval_seed: int | None = None
    cache_dir: str | None = None
    threads: int | None = None
    heartbeat: float = HEARTBEAT_S  # seconds between trial heartbeats
    grace: float = GRACE_S  # seconds without heartbeat before a trial is re-run
    max_retry: int = 2  # re-runs of a cell whose worker died, before it counts as failed
    poll: float = 1.0  # seconds between checks while other workers' trials run
    max_consecutive_failures: int = 10
    strategy_params: Mapping[str, Any] = field(default_factory=dict)  # explicit settings only
    command: str | None = None
    pruner: str = "none"  # strategies.pruners: none | median | asha | hyperband
    pruner_params: Mapping[str, Any] = field(default_factory=dict)  # explicit pruner settings only
    budget_unit: str = "evaluations"  # or "equivalents": steps trained / steps of a full evaluation, summed
    eval_every: int | None = None  # the evaluator's intermediate val mIOU every N steps (None: the config's)

    def __post_init__(self) -> None:
        for name in ("storage", "cache_dir"):  # paths travel as strings (JSON to the workers)
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                object.__setattr__(self, name, os.fspath(value))
        _int(self, "seed", 0, 2**64 - 1)
        if self.budget is not None:
            _int(self, "budget", 1, MAX_BUDGET)
        _int(self, "workers", 1, 1024)
        _int(self, "branches", 1, MAX_BRANCHES)
        _int(self, "max_retry", 0, 1000)
        _int(self, "max_consecutive_failures", 1, MAX_BUDGET)
        if self.threads is not None:
            _int(self, "threads", 1, 1024)
        if self.eval_seed is not None:
            _int(self, "eval_seed", 0, 2**64 - 1)
        for name, high in (("heartbeat", MAX_HEARTBEAT_S), ("grace", MAX_GRACE_S), ("poll", MAX_HEARTBEAT_S)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and 0 < value <= high):
                raise ValueError(f"{name} must be a number of seconds in (0, {high:g}], got {value!r}")
        if self.grace <= self.heartbeat:
            raise ValueError(f"grace ({self.grace:g} s) must be longer than heartbeat ({self.heartbeat:g} s)")
        for name in ("experiment", "study"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, str) and re.fullmatch(NAME_PATTERN, value, re.ASCII)
                                          and ".." not in value):
                raise ValueError(f"{name} must match {NAME_PATTERN} without '..' (no paths), got {value!r}")
        if self.eval_every is not None:
            _int(self, "eval_every", 1, 10**9)
        if self.budget_unit not in BUDGET_UNITS:
            raise ValueError(f"budget_unit must be one of {', '.join(BUDGET_UNITS)}, got {self.budget_unit!r}")
        from .pruners import PRUNERS

        if self.pruner not in PRUNERS:
            raise ValueError(f"unknown pruner {self.pruner!r}; known: {', '.join(PRUNERS)}")
        if self.pruner_params is None:
            object.__setattr__(self, "pruner_params", {})
        if not isinstance(self.pruner_params, Mapping):
            raise ValueError(f"pruner_params must be a mapping, got {self.pruner_params!r}")
        object.__setattr__(self, "pruner_params", {k: v for k, v in dict(self.pruner_params).items() if v is not None})
        if self.strategy_params is None:
            object.__setattr__(self, "strategy_params", {})
        if not isinstance(self.strategy_params, Mapping):
            raise ValueError(f"strategy_params must be a mapping, got {self.strategy_params!r}")
        object.__setattr__(self, "strategy_params", {k: v for k, v in dict(self.strategy_params).items() if v is not None})

    def replace(self, **changes: Any) -> "SearchSettings":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "SearchSettings":
        data = json.loads(text)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown settings {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def of(cls, **kwargs: Any) -> "SearchSettings":
        """Settings from keyword arguments, with a one-line error naming an unknown one."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(kwargs) - set(names))
        if unknown:
            raise TypeError(f"unknown search setting(s) {', '.join(unknown)}; known: {', '.join(names)}")
        return cls(**kwargs)


def _int(settings: SearchSettings, name: str, low: int, high: int) -> None:
    value = getattr(settings, name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
