"""The Dense Prediction Cell as a PyTorch module, built like DeepLab's reference.

Every op outputs ``channels`` followed by BN + ReLU, convs have no bias, BN eps 1e-5;
the concatenation of all branches goes through dropout and a 1x1 projection (BN + ReLU).
Output spatial size always equals the input size: atrous convs pad by their rate (zero
padding, so a rate larger than the map only sees the centre tap) and pooling kernels are
ceil(size / grid) <= size, so no op can fail on a small map.
"""
from __future__ import annotations

import torch
from torch import nn

from . import kernels
from .genome import FEATURES, Genome
from .ops import Op, pooling_kernel

BN_EPS = 1e-5


def conv_bn_relu(cin: int, cout: int, kernel: int = 1, dilation: tuple[int, int] = (1, 1), groups: int = 1) -> nn.Sequential:
    padding = (dilation[0] * (kernel // 2), dilation[1] * (kernel // 2))
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=padding, dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(cout, eps=BN_EPS),
        nn.ReLU(inplace=True),
    )


class SeparableConv(nn.Sequential):
    """Depthwise 3x3 atrous (BN, ReLU) then pointwise 1x1 (BN, ReLU): utils.split_separable_conv2d."""

    def __init__(self, cin: int, cout: int, rate: tuple[int, int]):
        depthwise = nn.Sequential(kernels.DepthwiseConv3x3(cin, rate), nn.BatchNorm2d(cin, eps=BN_EPS), nn.ReLU(inplace=True))
        super().__init__(depthwise, conv_bn_relu(cin, cout, 1))


class PyramidPooling(nn.Module):
    """Sliding average pool (kernel = size / grid, stride 1, VALID), 1x1 conv, resize back."""

    def __init__(self, cin: int, cout: int, grid: tuple[int, int]):
        super().__init__()
        self.grid = grid
        self.conv = conv_bn_relu(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        kernel = (pooling_kernel(h, self.grid[0]), pooling_kernel(w, self.grid[1]))
        y = self.conv(kernels.avg_pool_valid(x, kernel))
        return kernels.resize_bilinear(y, (h, w))


# the module builders of the built-in op families (named in dpc.ops's table)
def conv1x1(cin: int, cout: int, size: tuple[int, ...], rate_multiplier: int = 1) -> nn.Module:
    return conv_bn_relu(cin, cout, 1)


def separable(cin: int, cout: int, rate: tuple[int, ...], rate_multiplier: int = 1) -> nn.Module:
    return SeparableConv(cin, cout, (rate[0] * rate_multiplier, rate[1] * rate_multiplier))


def pyramid_pooling(cin: int, cout: int, grid: tuple[int, ...], rate_multiplier: int = 1) -> nn.Module:
    return PyramidPooling(cin, cout, (grid[0], grid[1]))


def build_op(op: Op, cin: int, cout: int, rate_multiplier: int = 1) -> nn.Module:
    """The module of ``op``, from its family's builder."""
    return op.family.module(cin, cout, op.size, rate_multiplier)


class DensePredictionCell(nn.Module):
    """``rate_multiplier`` = 2 at output stride 8, as the reference's conv_rate_multiplier."""

    def __init__(
        self,
        genome: Genome,
        in_channels: int,
        channels: int = 256,
        concat_channels: int = 256,
        dropout: float = 0.1,
        rate_multiplier: int = 1,
    ):
        super().__init__()
        if in_channels < 1 or channels < 1 or concat_channels < 1:
            raise ValueError(f"channel counts must be positive, got in={in_channels}, channels={channels}, concat={concat_channels}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.genome = genome
        self.inputs = [br.input for br in genome.branches]
        self.branches = nn.ModuleList(
            build_op(br.op, in_channels if br.input == FEATURES else channels, channels, rate_multiplier)
            for br in genome.branches
        )
        self.dropout = kernels.Dropout(dropout)
        self.project = conv_bn_relu(channels * len(genome), concat_channels, 1)
        self.out_channels = concat_channels
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        outputs: list[torch.Tensor] = []
        for inp, op in zip(self.inputs, self.branches):
            outputs.append(op(features if inp == FEATURES else outputs[inp]))
        return self.project(self.dropout(torch.cat(outputs, dim=1)))
