"""Analytic cost of a cell, without building it: what a search can afford to compute often.

Each op's figures come from its family's ``cost`` in ``dpc.ops``. ``params`` counts every
trainable parameter of DensePredictionCell (conv weights and BN scale/shift); ``flops`` counts what torch.utils.flop_counter counts (2 x multiply-adds of
the convolutions; pooling, BN, ReLU and resize are not counted); ``paper_params`` and
``paper_madds`` follow Table 1 of the paper (conv weights only, no BN, no projection).
"""
from __future__ import annotations

from dataclasses import dataclass

from .genome import FEATURES, Genome


@dataclass(frozen=True)
class CellCost:
    params: int
    flops: int
    paper_params: int
    paper_madds: int

    @property
    def madds(self) -> int:
        return self.flops // 2


def cell_cost(
    genome: Genome,
    in_channels: int,
    height: int,
    width: int,
    channels: int = 256,
    concat_channels: int = 256,
) -> CellCost:
    """Cost for one image whose feature map is ``height`` x ``width``."""
    if height < 1 or width < 1:
        raise ValueError(f"feature size must be positive, got {height}x{width}")
    hw = height * width
    conv_w = 0  # conv weights of the branches (Table 1's params)
    bn = 0
    madds = 0
    for br in genome.branches:
        cin = in_channels if br.input == FEATURES else channels
        each = br.op.family.cost(cin, channels, br.op.size, height, width)  # the op's own BN included
        conv_w += each.weights
        bn += each.norm
        madds += each.madds
    proj_w = len(genome) * channels * concat_channels
    params = conv_w + bn + proj_w + 2 * concat_channels
    flops = 2 * (madds + hw * proj_w)
    return CellCost(params=params, flops=flops, paper_params=conv_w, paper_madds=madds)
