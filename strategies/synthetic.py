"""Cheap synthetic objectives with a known optimum: for tests and for comparing strategies
in seconds instead of GPU-days.

``structured`` scores a cell like a caricature of the DPC landscape, with structure that
a search can exploit and that uniform sampling rarely hits:

- each op has a score ``u``: separable convs peak smoothly around a seeded atrous rate
  (rh, rw), pyramid pooling around a seeded grid, the 1x1 conv is mediocre, plus a small
  seeded rugged part (so neighbouring rates differ a little, as real cells do);
- each branch that reads another branch gets a chaining bonus ``v(parent op, op)``: a
  separable conv reading a separable conv scores when its rate is the parent's shifted by a
  seeded offset (cascaded atrous convs growing the receptive field, as in the paper's best
  cell); reading the backbone features gives a small flat bonus.

Each op family's part (peak, width, centre range, bonus from F, chaining, relay) is its
``synthetic`` field in ``dpc.ops``, so a registered family joins the landscape (which then
differs from the 81-op one, as the space does).

score = sum over branches of u(op_b) + v(op of b's input, op_b), divided by the maximum, so
the optimum is exactly 1.0 and every score lies in [0, 1]. The score depends only on the
labelled tree of the cell, so equivalent cells (same canonical hash) score the same. The
maximum is computed exactly: for each of the B! wirings a max-sum pass over the tree.

All objectives here are deterministic functions of (seed, cell): the optional ``noise`` is
drawn from the cell's canonical hash, as a proxy with a fixed training seed would be.
Spec strings (``--objective synthetic:NAME,key=value``): ``structured`` (default),
``slow`` (adds ``sleep`` seconds per call, default 0.5), ``failing`` (raises for a
``fail_rate`` fraction of cells, default 0.25, and returns NaN for a ``nan_rate`` fraction,
default 0). Keys for all: ``seed`` (0), ``noise`` (0.0), ``branches`` (5).

Options are checked when the objective is built, with the limits in the one-line
ObjectiveError: ``seed`` an integer >= 0, ``branches`` an integer in 1..8 (the exact optimum
enumerates all B! wirings: 8 takes seconds, 9 a minute), ``noise`` finite >= 0, ``sleep``
finite in [0, 3600] seconds, ``fail_rate`` and ``nan_rate`` in [0, 1]; integers reject 2.9 and
True, numbers NaN and infinity; unknown or repeated keys are errors.
"""
from __future__ import annotations

import itertools
import math
import re
import time
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from dpc import ops as table
from dpc.genome import DEFAULT_BRANCHES, FEATURES, Branch, Genome
from dpc.ops import brief

from .objectives import ObjectiveError

MAX_SYNTHETIC_BRANCHES = 8
MAX_SLEEP = 3600.0
MAX_SEED = 2**64 - 1


def _int_option(value: object, key: str, lo: int, hi: int, hi_text: str | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise ObjectiveError(f"{key} must be an integer in {lo}..{hi_text or hi}, got {brief(value, 40)}")
    return int(value)


def _number_option(value: object, key: str, lo: float, hi: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ObjectiveError(f"{key} must be {what}, got {brief(value, 40)}")
    x = float(value)
    if not (math.isfinite(x) and lo <= x <= hi):
        raise ObjectiveError(f"{key} must be {what}, got {brief(value, 40)}")
    return x


class SyntheticFailure(RuntimeError):
    """Raised by the ``failing`` objective, as an evaluator raises on a NaN loss."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _op_coords() -> tuple[np.ndarray, np.ndarray]:
    """Per op: its family's index in the table and its (row, col) index on the first two axes."""
    family = np.zeros(table.NUM_OPS, dtype=int)
    coord = np.zeros((table.NUM_OPS, 2))
    for i, op in enumerate(table.OPS):
        family[i] = table.FAMILIES.index(op.family)
        xy = op.family.coords(op)[:2]
        coord[i, : len(xy)] = xy
    return family, coord


@dataclass
class StructuredObjective:
    """``genome -> score in [0, 1]``, known optimum 1.0; microseconds per call."""

    seed: int = 0
    noise: float = 0.0
    branches: int = DEFAULT_BRANCHES
    metric: str = field(default="score", init=False)

    def __post_init__(self) -> None:
        self.check()
        rng = np.random.default_rng([int(self.seed), 7919])
        self.ops, n = table.OPS, table.NUM_OPS
        self.f_index = n  # row of v for "the input is the backbone features"
        family, coord = _op_coords()
        roles = [f.synthetic for f in table.FAMILIES]
        centres = {k: rng.uniform(*r.centre, size=2) for k, r in enumerate(roles) if r.centre is not None}
        u = np.zeros(n)
        for k, r in enumerate(roles):
            mine = family == k
            if r.centre is None:
                u[mine] = r.peak
            else:
                u[mine] = r.peak * np.exp(-((coord[mine] - centres[k]) ** 2).sum(1) / (2 * r.width**2))
        u += 0.2 * rng.random(n)
        offset = np.array([rng.integers(1, 3), rng.integers(-2, 3)], dtype=float)
        v = np.zeros((n + 1, n))
        shift = coord[None, :, :] - coord[:, None, :] - offset  # child - parent - offset
        chain = 0.8 * np.exp(-(shift**2).sum(-1) / (2 * 1.2**2))
        chains = np.array([r.chains for r in roles])[family]
        v[:n] = np.where(chains[:, None] & (family[:, None] == family[None, :]), chain, 0.0)
        for k, r in enumerate(roles):
            if r.relay:
                v[:n][family == k] = r.relay * u[None, :]  # after e.g. a 1x1 conv: a little of the op's own score
        v[self.f_index] = np.array([r.from_features for r in roles])[family]
        self.u, self.v = u, v

    def check(self) -> None:
        """Every option within its limits (ObjectiveError naming them otherwise)."""
        self.seed = _int_option(self.seed, "seed", 0, MAX_SEED, "2^64-1")
        self.branches = _int_option(self.branches, "branches", 1, MAX_SYNTHETIC_BRANCHES)
        self.noise = _number_option(self.noise, "noise", 0.0, math.inf, "a finite number >= 0")

    def raw(self, genome: Genome) -> float:
        total = 0.0
        for br in genome.branches:
            op = br.op.index
            parent = self.f_index if br.input == FEATURES else genome.branches[br.input].op.index
            total += self.u[op] + self.v[parent, op]
        return float(total)

    def __call__(self, genome: Genome) -> float:
        if len(genome) != self.branches:
            raise ValueError(f"expected a {self.branches}-branch cell, got {len(genome)} branches")
        value = self.raw(genome) / self._optimum[0]
        if self.noise:
            h = int(genome.canonical_hash(), 16)
            value += self.noise * float(np.random.default_rng([int(self.seed), h]).standard_normal())
        return value

    evaluate = __call__

    def known_optimum(self) -> tuple[float, Genome]:
        """(1.0, a cell that reaches it); without noise no cell scores higher."""
        return 1.0, self._optimum[1]

    @cached_property
    def _optimum(self) -> tuple[float, Genome]:
        best_value, best_genome = -math.inf, None
        for inputs in itertools.product(*(range(FEATURES, b) for b in range(self.branches))):
            value, ops = self._best_ops(list(inputs))
            if value > best_value:
                best_value, best_genome = value, Genome(tuple(Branch(i, self.ops[o]) for i, o in zip(inputs, ops)))
        return best_value, best_genome

    def _best_ops(self, inputs: list[int]) -> tuple[float, list[int]]:
        """Max-sum over the tree of one wiring: best(node, op) = u(op) + sum over children
        of max over their op of v(op, child op) + best(child, child op)."""
        n = len(inputs)
        children: dict[int, list[int]] = {node: [] for node in range(FEATURES, n)}
        for b, i in enumerate(inputs):
            children[i].append(b)
        best = {}
        choice = {}  # (child) -> argmax child op for each parent op (one row per op)
        for node in reversed(range(n)):
            vec = self.u.copy()
            for c in children[node]:
                m = self.v[: self.f_index] + best[c][None, :]
                choice[c] = m.argmax(1)
                vec += m.max(1)
            best[node] = vec
        total = 0.0
        ops = [0] * n
        for c in children[FEATURES]:
            m = self.v[self.f_index] + best[c]
            ops[c] = int(m.argmax())
            total += float(m.max())
        for b in range(n):  # parents precede children, so their op is set first
            if inputs[b] != FEATURES:
                ops[b] = int(choice[b][ops[inputs[b]]])
        return total, ops


@dataclass
class SlowObjective(StructuredObjective):
    """``structured`` plus a sleep per call: lets tests kill a worker mid-trial."""

    sleep: float = 0.5

    def check(self) -> None:
        super().check()
        self.sleep = _number_option(self.sleep, "sleep", 0.0, MAX_SLEEP, f"a number of seconds in [0, {MAX_SLEEP:g}]")

    def __call__(self, genome: Genome) -> float:
        time.sleep(self.sleep)
        return super().__call__(genome)

    evaluate = __call__


@dataclass
class FailingObjective(StructuredObjective):
    """``structured`` that raises for a fixed fraction of cells and returns NaN for another,
    chosen by canonical hash (so a cell always fails the same way)."""

    fail_rate: float = 0.25
    nan_rate: float = 0.0

    def check(self) -> None:
        super().check()
        self.fail_rate = _number_option(self.fail_rate, "fail_rate", 0.0, 1.0, "a fraction in [0, 1]")
        self.nan_rate = _number_option(self.nan_rate, "nan_rate", 0.0, 1.0, "a fraction in [0, 1]")

    def __call__(self, genome: Genome) -> float:
        x = int(genome.canonical_hash()[:8], 16) / 16**8
        if x < self.fail_rate:
            raise SyntheticFailure(f"synthetic failure for cell {genome.canonical_hash()}")
        if x < self.fail_rate + self.nan_rate:
            return math.nan
        return super().__call__(genome)

    evaluate = __call__


SYNTHETIC = {"structured": StructuredObjective, "slow": SlowObjective, "failing": FailingObjective}
_FIELD_TYPES = {"seed": int, "noise": float, "branches": int, "sleep": float, "fail_rate": float, "nan_rate": float}


_INT_RE = re.compile(r"[+]?[0-9]{1,30}", re.ASCII)
_FLOAT_RE = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,4})?", re.ASCII)


def _option_value(key: str, text: str, name: str) -> int | float:
    """``seed=3`` -> 3: ASCII decimal integers for integer options, plain decimal numbers for the others."""
    t = text.strip()
    kind = _FIELD_TYPES[key]
    if kind is int:
        if not _INT_RE.fullmatch(t):
            raise ObjectiveError(f"bad value {brief(text, 40)} for {key} in synthetic:{name} (expected an integer)")
        return int(t)
    if not _FLOAT_RE.fullmatch(t):
        raise ObjectiveError(f"bad value {brief(text, 40)} for {key} in synthetic:{name} (expected a finite decimal number)")
    return float(t)


def parse_synthetic(spec: str = "") -> tuple[str, dict[str, int | float]]:
    """``"slow,sleep=0.2,seed=1"`` -> ``("slow", {"sleep": 0.2, "seed": 1})``, checked but not built:
    unknown names and keys, repeated keys and malformed values are ObjectiveError."""
    name, *pairs = [part.strip() for part in spec.split(",")] if spec else ["structured"]
    name = name or "structured"
    if name not in SYNTHETIC:
        raise ObjectiveError(f"unknown synthetic objective {brief(name, 40)}; known: {', '.join(SYNTHETIC)}")
    cls = SYNTHETIC[name]
    allowed = {f.name for f in cls.__dataclass_fields__.values() if f.init}
    kwargs: dict[str, int | float] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or key not in allowed:
            raise ObjectiveError(f"bad option {brief(pair, 40)} for synthetic:{name}; expected key=value with key in "
                                 f"{', '.join(sorted(allowed))}")
        if key in kwargs:
            raise ObjectiveError(f"option {key} given twice in synthetic:{name}")
        kwargs[key] = _option_value(key, value, name)
    return name, kwargs


def make_synthetic(spec: str = "") -> StructuredObjective:
    """``"slow,sleep=0.2,seed=1"`` -> SlowObjective(sleep=0.2, seed=1); ``""`` -> structured."""
    name, kwargs = parse_synthetic(spec)
    return SYNTHETIC[name](**kwargs)
