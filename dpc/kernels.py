"""Fast CPU formulations of the cell's slow ops, equal to the ``nn`` reference up to float rounding.

Why: on the CPU, PyTorch's sliding average pool costs O(HW * kernel area) (a grid-2 pool at
33x33 took 8x a 1x1 conv), the input gradient of a dilated depthwise conv falls back to a slow
generic kernel (5x its forward at rate 6), ``bernoulli_`` for dropout costs more than a 1x1 conv,
and bilinear resizing and ``argmax`` over channels are strided loops. Here:

- ``avg_pool_valid``: the box filter as two small matmuls with banded matrices (cost independent
  of the kernel size, forward and backward, by autograd);
- ``resize_bilinear``: ``align_corners=True`` bilinear resizing as two matmuls with
  interpolation matrices;
- ``depthwise_conv3x3``: forward and weight gradient by the native conv, input gradient as the
  native forward conv with the flipped kernel (the transpose of a stride-1 "same" conv);
- ``dropout``: the keep mask from 15 random bits per element, four elements per 64-bit draw
  (keep probability quantised to 1/32768);
- ``argmax_channels``: argmax over a contiguous last axis.

``kernels = "reference"`` (a config field; ``using("reference")`` here) runs the ``nn``
formulation everywhere, for checking. The fast forms apply to CPU tensors only: on CUDA the
reference kernels are fast, and matmuls there would run in bf16 under autocast.
"""
from __future__ import annotations

import contextlib
import functools
import math
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

KERNELS = ("fast", "reference")
_mode = "fast"


def mode() -> str:
    return _mode


def set_mode(name: str) -> None:
    global _mode
    if name not in KERNELS:
        raise ValueError(f"kernels must be one of {', '.join(KERNELS)}, got {name!r}")
    _mode = name


@contextlib.contextmanager
def using(name: str) -> Iterator[None]:
    """Run the block with ``name``'s kernels (``fast`` or ``reference``)."""
    before = _mode
    set_mode(name)
    try:
        yield
    finally:
        set_mode(before)


def _fast(x: torch.Tensor) -> bool:
    return _mode == "fast" and x.device.type == "cpu"


# -- resizing and pooling as matmuls ---------------------------------------------------------------
@functools.lru_cache(maxsize=256)
def _interpolation(n_in: int, n_out: int, dtype: torch.dtype) -> torch.Tensor:
    """(n_out, n_in): row i mixes the two inputs around i * (n_in - 1) / (n_out - 1)."""
    if n_in == 1 or n_out == 1:
        a = torch.zeros(n_out, n_in, dtype=torch.float64)
        a[:, 0] = 1.0  # align_corners with one output keeps the first input, as F.interpolate
        return a.to(dtype)
    pos = torch.arange(n_out, dtype=torch.float64) * ((n_in - 1) / (n_out - 1))
    lo = pos.floor().long().clamp(max=n_in - 2)
    frac = pos - lo
    a = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    a[rows, lo] = 1.0 - frac
    a[rows, lo + 1] += frac
    return a.to(dtype)


@functools.lru_cache(maxsize=256)
def _box(n: int, k: int, dtype: torch.dtype) -> torch.Tensor:
    """(n - k + 1, n): row i averages inputs i .. i + k - 1 (a VALID, stride-1 box filter)."""
    m = n - k + 1
    rows = torch.arange(m)[:, None]
    cols = torch.arange(n)[None, :]
    return (((cols >= rows) & (cols < rows + k)).to(torch.float64) / k).to(dtype)


def resize_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``F.interpolate(x, size, mode="bilinear", align_corners=True)`` for (N, C, h, w)."""
    if not _fast(x) or x.dtype != torch.float32:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    return _interpolation(h, size[0], x.dtype) @ x @ _interpolation(w, size[1], x.dtype).T


def avg_pool_valid(x: torch.Tensor, kernel: tuple[int, int]) -> torch.Tensor:
    """``F.avg_pool2d(x, kernel, stride=1)`` (no padding) for (N, C, H, W)."""
    if not _fast(x) or x.dtype != torch.float32:
        return F.avg_pool2d(x, kernel, stride=1)
    h, w = x.shape[-2:]
    return _box(h, kernel[0], x.dtype) @ x @ _box(w, kernel[1], x.dtype).T


# -- depthwise 3x3 atrous conv ----------------------------------------------------------------------
class _DepthwiseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, rate):
        ctx.save_for_backward(x, weight)
        ctx.rate = rate
        return F.conv2d(x, weight, padding=rate, dilation=rate, groups=x.shape[1])

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        rate, groups = ctx.rate, x.shape[1]
        grad = grad.contiguous()
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:  # the transpose of a stride-1 "same" conv: the flipped kernel
            grad_x = F.conv2d(grad, weight.flip(-1, -2), padding=rate, dilation=rate, groups=groups)
        if ctx.needs_input_grad[1]:
            grad_w = torch.ops.aten.convolution_backward(
                grad, x, weight, None, [1, 1], list(rate), list(rate), False, [0, 0], groups, [False, True, False])[1]
        return grad_x, grad_w, None


class DepthwiseConv3x3(nn.Conv2d):
    """Depthwise 3x3 atrous conv (zero padding = rate, no bias): an ``nn.Conv2d`` whose CPU
    backward avoids the slow dilated input-gradient kernel."""

    def __init__(self, channels: int, rate: tuple[int, int]):
        super().__init__(channels, channels, 3, padding=rate, dilation=rate, groups=channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _fast(x) or x.dtype != torch.float32:
            return super().forward(x)
        return _DepthwiseConv.apply(x, self.weight, tuple(self.dilation))


# -- dropout and argmax -----------------------------------------------------------------------------
_BITS = 15  # random bits per element: four 15-bit draws from one 63-bit random integer


def keep_mask(shape: torch.Size, p: float, device: torch.device | str = "cpu") -> tuple[torch.Tensor, float]:
    """A boolean keep mask with P(keep) = 1 - round(p * 2^15) / 2^15, and that probability."""
    n = math.prod(int(s) for s in shape)
    threshold = round(p * (1 << _BITS))
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_()  # uniform in [0, 2^63)
    bits = words.view(torch.int16)[:n].bitwise_and_(0x7FFF)
    return (bits >= threshold).view(shape), 1.0 - threshold / (1 << _BITS)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout``; on the CPU without a full-size ``bernoulli_`` draw."""
    if not training or p == 0.0:
        return x
    if not _fast(x):
        return F.dropout(x, p, training)
    keep, q = keep_mask(x.shape, p, x.device)
    return x * keep.to(x.dtype).mul_(1.0 / q)  # autograd saves only the mask (it needs no gradient)


class Dropout(nn.Dropout):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def argmax_channels(x: torch.Tensor) -> torch.Tensor:
    """``x.argmax(1)`` for (N, C, H, W)."""
    if not _fast(x):
        return x.argmax(1)
    return x.permute(0, 2, 3, 1).contiguous().argmax(-1)
