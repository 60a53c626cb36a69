"""Uniform sampling and single-step mutations over the genome space (numpy Generator).

Mutations always return a valid genome different from the parent: local search and
evolution would otherwise waste evaluations on unchanged children.
"""
from __future__ import annotations

from typing import Iterator, Literal

import numpy as np

from .genome import DEFAULT_BRANCHES, FEATURES, Branch, Genome
from .ops import GRIDS, NUM_OPS, OPS, RATES, Op

MutationKind = Literal["op", "input"]


def sample_genome(rng: np.random.Generator, branches: int = DEFAULT_BRANCHES) -> Genome:
    """Uniform over all B! x 81^B genomes: branch b's input uniform over b + 1 choices."""
    return Genome(
        tuple(Branch(int(rng.integers(-1, b)), OPS[int(rng.integers(NUM_OPS))]) for b in range(branches))
    )


def _nearby_ops(op: Op) -> list[Op]:
    """Ops of the same family whose rate/grid differs in one axis by one step."""
    if op.kind == "conv1x1":
        return []
    values = RATES if op.kind == "sep3x3" else GRIDS
    out = []
    for axis in (0, 1):
        i = values.index(op.size[axis])
        for j in (i - 1, i + 1):
            if 0 <= j < len(values):
                size = list(op.size)
                size[axis] = values[j]
                out.append(Op(op.kind, (size[0], size[1])))
    return out


def op_choices(op: Op, same_family: bool = False, nearby: bool = False) -> list[Op]:
    """The ops a mutation of ``op`` may pick; never contains ``op`` itself."""
    if nearby:
        choices = _nearby_ops(op)
        if choices:
            return choices
    if same_family and op.kind != "conv1x1":
        return [o for o in OPS if o.kind == op.kind and o != op]
    return [o for o in OPS if o != op]


def _replace(genome: Genome, b: int, branch: Branch) -> Genome:
    branches = list(genome.branches)
    branches[b] = branch
    return Genome(tuple(branches))


def mutate(
    genome: Genome,
    rng: np.random.Generator,
    kind: MutationKind | None = None,
    same_family: bool = False,
    nearby: bool = False,
) -> Genome:
    """Change one op, or one input (kind=None: each with probability 1/2).

    ``same_family`` keeps conv/sep/pool; ``nearby`` moves one rate or grid axis one step.
    An input mutation on a genome where no branch can rewire (B = 1) changes an op instead.
    """
    rewirable = [b for b in range(1, len(genome))]
    if kind is None:
        kind = "op" if not rewirable or rng.random() < 0.5 else "input"
    if kind == "input" and rewirable:
        b = int(rng.choice(rewirable))
        current = genome.branches[b].input
        choices = [i for i in range(FEATURES, b) if i != current]
        new_input = int(choices[int(rng.integers(len(choices)))])
        return _replace(genome, b, Branch(new_input, genome.branches[b].op))
    if kind not in ("op", "input"):
        raise ValueError(f"unknown mutation kind {kind!r} (expected 'op' or 'input')")
    b = int(rng.integers(len(genome)))
    choices = op_choices(genome.branches[b].op, same_family, nearby)
    new_op = choices[int(rng.integers(len(choices)))]
    return _replace(genome, b, Branch(genome.branches[b].input, new_op))


def neighbours(genome: Genome) -> Iterator[Genome]:
    """Every genome one mutation away (all op changes, then all input changes)."""
    for b, br in enumerate(genome.branches):
        for op in OPS:
            if op != br.op:
                yield _replace(genome, b, Branch(br.input, op))
    for b, br in enumerate(genome.branches):
        for i in range(FEATURES, b):
            if i != br.input:
                yield _replace(genome, b, Branch(i, br.op))
