"""The genome space as Optuna distributions, and the genome <-> trial conversions.

Branch b has two categorical parameters: ``b{b}_input`` over [-1, 0, .., b-1] (-1 is the
backbone feature map) and ``b{b}_op`` over the operation names in ``dpc.ops`` order (the 81
built-in ones, then those of any registered op family, appended).
Every strategy suggests exactly these parameters, so all studies share one trial schema
and a trial's params are always ``Genome.to_params()`` of the evaluated cell.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping

from optuna.distributions import BaseDistribution, CategoricalDistribution

from dpc import ops
from dpc.genome import DEFAULT_BRANCHES, FEATURES, Genome


@lru_cache(maxsize=None)
def _space(branches: int, op_names: tuple[str, ...]) -> tuple[tuple[str, CategoricalDistribution], ...]:
    if branches < 1:
        raise ValueError(f"number of branches must be >= 1, got {branches}")
    items: list[tuple[str, CategoricalDistribution]] = []
    for b in range(branches):
        items.append((f"b{b}_input", CategoricalDistribution(list(range(FEATURES, b)))))
        items.append((f"b{b}_op", CategoricalDistribution(list(op_names))))
    return tuple(items)


def search_space(branches: int = DEFAULT_BRANCHES) -> dict[str, BaseDistribution]:
    """Ordered ``{param name: distribution}`` for a cell of ``branches`` branches."""
    return dict(_space(branches, ops.OP_NAMES))


def genome_of(params: Mapping[str, Any]) -> Genome:
    """The genome a trial's params encode (``GenomeError`` if they are not a cell); memoised, as
    samplers parse their whole history at every proposal (genomes are immutable)."""
    try:
        key = tuple(sorted(params.items()))
        hash(key)
    except TypeError:
        return Genome.from_params(params)
    return _genome_of(key)


@lru_cache(maxsize=65536)
def _genome_of(items: tuple) -> Genome:
    return Genome.from_params(dict(items))


def whole_cell(params: Mapping[str, Any], branches: int) -> bool:
    """True when params hold every ``b{i}_input``/``b{i}_op`` of a ``branches``-branch cell.

    A worker killed while its sampler's params were being written leaves a part of a cell: that
    trial drew nothing (its re-run would mix two cells) and does not shift later draws.
    """
    return all(f"b{b}_input" in params and f"b{b}_op" in params for b in range(branches))
