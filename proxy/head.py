"""What an evaluator trains: a DPC genome, or any head that another NAS space builds.

A *head* is the part between the backbone features and the classifier. The evaluators take
either a ``dpc.Genome`` (built as ``DensePredictionCell``, costs counted analytically by
``dpc.cell_cost``) or a *head factory*, ``in_channels -> nn.Module``, whose module maps
features ``(N, in_channels, h, w)`` to ``(N, head_channels, h, w)`` with ``head_channels =
config.concat_channels`` (``evaluator.head_channels``). The module takes the place of the
whole DPC cell, i.e. of the cell's branches, concatenation, dropout and 1x1 projection: the
evaluator adds the same things around either kind of head (the 1x1 classifier to the classes,
bilinear upsampling of the logits to the labels, loss, optimizer, schedule, flips, mIOU).
The factory is called once per evaluation, after the evaluation's seed is set, so its
initial weights follow the seed. A module's cost is measured: parameters counted from the
module, FLOPs from ``torch.utils.flop_counter.FlopCounterMode`` on one forward pass of one
image at the evaluated feature size (in eval mode, without gradients; the same count as
``dpc.cell_cost``: 2 x multiply-adds of matmuls and convolutions; pooling, normalisation,
activations and resizing count nothing). Neither count includes the classifier, for either
kind of head.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

import torch
from torch import nn

from dpc import kernels
from dpc.cell import DensePredictionCell
from dpc.cost import cell_cost
from dpc.genome import Genome

from .config import EvalConfig
from .errors import EvaluationError

HeadFactory = Callable[[int], nn.Module]
Head = Union[Genome, HeadFactory]


class HeadError(EvaluationError, ValueError):
    """A head factory gave no module, or a module whose output has the wrong shape."""


@dataclass(frozen=True)
class HeadCost:
    params: int
    flops: int


def describe(head: Head) -> str:
    """The genome string, or the factory's qualified name (for logs and the CLI)."""
    if isinstance(head, Genome):
        return str(head)
    module = getattr(head, "__module__", None)
    name = getattr(head, "__qualname__", None) or type(head).__qualname__
    return f"{module}.{name}" if module else name


def build_head(head: Head, in_channels: int, cfg: EvalConfig) -> nn.Module:
    """The module for ``head`` (fresh weights drawn from torch's current RNG)."""
    if isinstance(head, Genome):
        return DensePredictionCell(head, in_channels, cfg.channels, cfg.concat_channels, cfg.dropout, cfg.rate_multiplier)
    if isinstance(head, nn.Module):
        raise TypeError(
            f"evaluate() takes a Genome or a factory in_channels -> nn.Module, not a module instance "
            f"({type(head).__name__}): every evaluation builds fresh weights, e.g. evaluate(lambda c: MyHead(c))"
        )
    if not callable(head):
        raise TypeError(f"evaluate() takes a Genome or a factory in_channels -> nn.Module, got {type(head).__name__}")
    module = head(in_channels)
    if not isinstance(module, nn.Module):
        raise HeadError(f"head factory {describe(head)} returned {type(module).__name__}, not an nn.Module")
    return module


def head_cost(
    head: Head, module: nn.Module, in_channels: int, feature_size: tuple[int, int], cfg: EvalConfig, device: torch.device
) -> HeadCost:
    """Analytic for a genome; for any other head, measured (and its output shape checked)."""
    if isinstance(head, Genome):
        c = cell_cost(head, in_channels, *feature_size, cfg.channels, cfg.concat_channels)
        return HeadCost(c.params, c.flops)
    return measure_module(module, in_channels, feature_size, cfg.concat_channels, device, name=describe(head))


def measure_module(
    module: nn.Module,
    in_channels: int,
    feature_size: tuple[int, int],
    out_channels: int,
    device: "torch.device | str" = "cpu",
    name: str = "head",
) -> HeadCost:
    """Parameters and FLOPs of one forward at ``(1, in_channels, h, w)``; HeadError on a wrong output shape.

    The forward pass runs in eval mode (BN running statistics untouched), without gradients and
    with torch's RNG state restored afterwards, so it changes neither the module nor the seeded
    training that follows.
    """
    from torch.utils.flop_counter import FlopCounterMode

    device = torch.device(device)
    params = sum(p.numel() for p in module.parameters() if p.requires_grad)
    shape = (1, in_channels, *feature_size)
    was_training = module.training
    counter = FlopCounterMode(display=False)
    try:
        # the nn formulation (dpc.kernels' reference): the fast one does pooling as matmuls
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad(), counter, \
                kernels.using("reference"):
            out = module.eval()(torch.zeros(shape, device=device))
    finally:
        module.train(was_training)
    expected = (1, out_channels, *feature_size)
    got = tuple(out.shape) if isinstance(out, torch.Tensor) else None
    if got != expected:
        what = f"shape {got}" if got is not None else f"a {type(out).__name__}, not a tensor"
        raise HeadError(
            f"head {name} gave {what} for features of shape {shape}; expected {expected} "
            f"(same height and width, config.concat_channels={out_channels} channels)"
        )
    return HeadCost(params=params, flops=int(counter.get_total_flops()))
