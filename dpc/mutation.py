"""Uniform sampling and single-step mutations over the genome space (numpy Generator).

Mutations always return a valid genome different from the parent: local search and
evolution would otherwise waste evaluations on unchanged children.
"""
from __future__ import annotations

from typing import Iterator, Literal

import numpy as np

from . import ops
from .genome import DEFAULT_BRANCHES, FEATURES, Branch, Genome
from .ops import Op

MutationKind = Literal["op", "input"]


def sample_genome(rng: np.random.Generator, branches: int = DEFAULT_BRANCHES) -> Genome:
    """Uniform over all B! x N^B genomes (N = 81 built-in ops): branch b's input uniform over b + 1 choices."""
    table, n = ops.OPS, ops.NUM_OPS
    return Genome(tuple(Branch(int(rng.integers(-1, b)), table[int(rng.integers(n))]) for b in range(branches)))


def op_choices(op: Op, same_family: bool = False, nearby: bool = False) -> list[Op]:
    """The ops a mutation of ``op`` may pick; never contains ``op`` itself. ``nearby``: the
    family's neighbourhood of ``op``; ``same_family``: the family's other ops (each falls back
    to the next when empty: a family of one op has neither)."""
    if nearby:
        choices = op.family.neighbours(op)
        if choices:
            return choices
    if same_family:
        choices = [o for o in op.family.ops if o != op]
        if choices:
            return choices
    return [o for o in ops.OPS if o != op]


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

    ``same_family`` keeps the op's family; ``nearby`` moves within its neighbourhood (by default
    one rate or grid axis one step).
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
        for op in ops.OPS:
            if op != br.op:
                yield _replace(genome, b, Branch(br.input, op))
    for b, br in enumerate(genome.branches):
        for i in range(FEATURES, b):
            if i != br.input:
                yield _replace(genome, b, Branch(i, br.op))
