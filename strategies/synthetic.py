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
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from dpc.genome import DEFAULT_BRANCHES, FEATURES, Branch, Genome
from dpc.ops import GRIDS, NUM_OPS, OPS, RATES

F_INDEX = NUM_OPS  # row of v for "the input is the backbone features"


class SyntheticFailure(RuntimeError):
    """Raised by the ``failing`` objective, as an evaluator raises on a NaN loss."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _op_coords() -> tuple[np.ndarray, np.ndarray]:
    """Per op: kind code (0 conv1x1, 1 sep, 2 pool) and (row, col) index on its rate/grid axis."""
    kind = np.zeros(NUM_OPS, dtype=int)
    coord = np.zeros((NUM_OPS, 2))
    for i, op in enumerate(OPS):
        if op.kind == "sep3x3":
            kind[i] = 1
            coord[i] = (RATES.index(op.size[0]), RATES.index(op.size[1]))
        elif op.kind == "pool":
            kind[i] = 2
            coord[i] = (GRIDS.index(op.size[0]), GRIDS.index(op.size[1]))
    return kind, coord


@dataclass
class StructuredObjective:
    """``genome -> score in [0, 1]``, known optimum 1.0; microseconds per call."""

    seed: int = 0
    noise: float = 0.0
    branches: int = DEFAULT_BRANCHES
    metric: str = field(default="score", init=False)

    def __post_init__(self) -> None:
        if self.noise < 0:
            raise ValueError(f"noise must be >= 0, got {self.noise}")
        rng = np.random.default_rng([int(self.seed), 7919])
        kind, coord = _op_coords()
        sep, pool = kind == 1, kind == 2
        centre_sep = rng.uniform(1.0, 6.0, size=2)
        centre_pool = rng.uniform(0.0, 3.0, size=2)
        u = np.where(kind == 0, 0.4, 0.0)
        u[sep] = np.exp(-((coord[sep] - centre_sep) ** 2).sum(1) / (2 * 1.5**2))
        u[pool] = 0.6 * np.exp(-((coord[pool] - centre_pool) ** 2).sum(1) / (2 * 1.0**2))
        u += 0.2 * rng.random(NUM_OPS)
        offset = np.array([rng.integers(1, 3), rng.integers(-2, 3)], dtype=float)
        v = np.zeros((NUM_OPS + 1, NUM_OPS))
        shift = coord[None, :, :] - coord[:, None, :] - offset  # child - parent - offset
        chain = 0.8 * np.exp(-(shift**2).sum(-1) / (2 * 1.2**2))
        v[:NUM_OPS] = np.where(sep[:, None] & sep[None, :], chain, 0.0)
        v[:NUM_OPS][kind == 0] = 0.2 * u[None, :]  # after a 1x1 conv: a little of the op's own score
        v[F_INDEX] = np.where(sep, 0.3, 0.1)
        self.u, self.v = u, v

    def raw(self, genome: Genome) -> float:
        total = 0.0
        for br in genome.branches:
            op = br.op.index
            parent = F_INDEX if br.input == FEATURES else genome.branches[br.input].op.index
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
                best_value, best_genome = value, Genome(tuple(Branch(i, OPS[o]) for i, o in zip(inputs, ops)))
        return best_value, best_genome

    def _best_ops(self, inputs: list[int]) -> tuple[float, list[int]]:
        """Max-sum over the tree of one wiring: best(node, op) = u(op) + sum over children
        of max over their op of v(op, child op) + best(child, child op)."""
        n = len(inputs)
        children: dict[int, list[int]] = {node: [] for node in range(FEATURES, n)}
        for b, i in enumerate(inputs):
            children[i].append(b)
        best = {}
        choice = {}  # (child) -> argmax child op for each parent op (81 or 82 rows)
        for node in reversed(range(n)):
            vec = self.u.copy()
            for c in children[node]:
                m = self.v[:NUM_OPS] + best[c][None, :]
                choice[c] = m.argmax(1)
                vec += m.max(1)
            best[node] = vec
        total = 0.0
        ops = [0] * n
        for c in children[FEATURES]:
            m = self.v[F_INDEX] + best[c]
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


def make_synthetic(spec: str = "") -> StructuredObjective:
    """``"slow,sleep=0.2,seed=1"`` -> SlowObjective(sleep=0.2, seed=1); ``""`` -> structured."""
    name, *pairs = [part.strip() for part in spec.split(",")] if spec else ["structured"]
    name = name or "structured"
    if name not in SYNTHETIC:
        raise ValueError(f"unknown synthetic objective {name!r}; known: {', '.join(SYNTHETIC)}")
    cls = SYNTHETIC[name]
    allowed = {f.name for f in cls.__dataclass_fields__.values() if f.init}
    kwargs = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or key not in allowed:
            raise ValueError(f"bad option {pair!r} for synthetic:{name}; expected key=value with key in {', '.join(sorted(allowed))}")
        try:
            kwargs[key] = _FIELD_TYPES[key](value)
        except ValueError:
            raise ValueError(f"bad value {value!r} for {key} in synthetic:{name}") from None
    return cls(**kwargs)
