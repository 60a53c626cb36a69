"""The Dense Prediction Cell search space: operations, genome, encodings, module, cost.

``DensePredictionCell`` is imported lazily: everything else is pure Python and numpy, so
search code and analysis that never build a module do not pay for ``import torch``.
"""
from .cost import CellCost, cell_cost
from .genome import FEATURES, Branch, Genome, GenomeError, genomes_equivalent, parse_genome, space_size
from .mutation import mutate, neighbours, sample_genome
from .ops import GRIDS, NUM_OPS, OP_NAMES, OPS, RATES, Op, op_from_name
from .zoo import ZOO, load_cell, zoo_cell

__all__ = [
    "Branch", "CellCost", "DensePredictionCell", "FEATURES", "GRIDS", "Genome", "GenomeError",
    "NUM_OPS", "OPS", "OP_NAMES", "Op", "RATES", "ZOO", "cell_cost", "genomes_equivalent",
    "load_cell", "mutate", "neighbours", "op_from_name", "parse_genome", "sample_genome", "space_size", "zoo_cell",
]


def __getattr__(name: str):
    if name == "DensePredictionCell":
        from .cell import DensePredictionCell

        return DensePredictionCell
    raise AttributeError(f"module 'dpc' has no attribute {name!r}")
