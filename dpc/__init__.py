"""The Dense Prediction Cell search space: operations, genome, encodings, module, cost."""
from .cell import DensePredictionCell
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
