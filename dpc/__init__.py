"""The Dense Prediction Cell search space: operations, genome, encodings, module, cost.

The operations are a table of op families (``dpc.ops``); ``register_family`` adds one.

``DensePredictionCell`` is imported lazily: everything else is pure Python and numpy, so
search code and analysis that never build a module do not pay for ``import torch``.
"""
from .cost import CellCost, cell_cost
from .genome import FEATURES, Branch, Genome, GenomeError, genomes_equivalent, parse_genome, space_size
from .mutation import mutate, neighbours, sample_genome
from .ops import GRIDS, RATES, Op, OpCost, OpFamily, SyntheticRole, op_from_name, register_family, unregister_family
from .zoo import ZOO, load_cell, zoo_cell

__all__ = [
    "Branch", "CellCost", "DensePredictionCell", "FEATURES", "GRIDS", "Genome", "GenomeError",
    "NUM_OPS", "OPS", "OP_NAMES", "Op", "OpCost", "OpFamily", "RATES", "SyntheticRole", "ZOO", "cell_cost",
    "genomes_equivalent", "load_cell", "mutate", "neighbours", "op_from_name", "parse_genome", "register_family",
    "sample_genome", "space_size", "unregister_family", "zoo_cell",
]
_LIVE = ("NUM_OPS", "OPS", "OP_NAMES")  # read from dpc.ops at each access: register_family changes them


def __getattr__(name: str):
    if name in _LIVE:
        from . import ops

        return getattr(ops, name)
    if name == "DensePredictionCell":
        from .cell import DensePredictionCell

        return DensePredictionCell
    raise AttributeError(f"module 'dpc' has no attribute {name!r}")
