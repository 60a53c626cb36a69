"""One training run of a segmentation model for a fixed iteration budget, then mIOU.

The same loop serves the proxy (inputs = cached backbone features, model = head +
classifier) and the full task (inputs = images, model = backbone + head + classifier):
only the ``Split.prepare`` function that turns stored inputs into model inputs differs.
The head is a DPC cell or any module (``proxy.head``); the loop does not know which.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dpc import kernels
from dpc.genome import Genome

from .config import EvalConfig
from .errors import NaNLossError
from .head import build_head
from .metrics import IGNORE_INDEX, confusion_matrix, iou_per_class, mean_iou

log = logging.getLogger(__name__)
ProgressCallback = Callable[[int, float], None]


class SegmentationHead(nn.Module):
    """A head plus the 1x1 classifier that DeepLab puts after the cell.

    ``head`` is a genome (built as the DPC cell), a head factory ``in_channels -> nn.Module``
    (``proxy.head``), or a module already built; its output must have ``cfg.concat_channels``
    channels. The head is built before the classifier (the order the seeded weights follow).
    """

    def __init__(self, head: "Genome | nn.Module | Callable[[int], nn.Module]", in_channels: int, num_classes: int, cfg: EvalConfig):
        super().__init__()
        self.cell = head if isinstance(head, nn.Module) else build_head(head, in_channels, cfg)
        self.classifier = nn.Conv2d(cfg.concat_channels, num_classes, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.cell(features))


@dataclass
class Split:
    """Stored inputs and full-resolution labels (both on the training device)."""

    inputs: torch.Tensor  # (N, C, h, w) cached features, or (N, 3, H, W) uint8 images
    labels: torch.Tensor  # (N, H, W) uint8, 255 = ignore
    prepare: Callable[[torch.Tensor], torch.Tensor] = lambda x: x.float()
    mirrored: Optional[torch.Tensor] = None  # inputs of the mirrored images (the proxy's cached flip)

    def __len__(self) -> int:
        return self.inputs.shape[0]


@dataclass
class TrainOutcome:
    miou: float  # on val: the search signal
    per_class_iou: list[float]
    train_seconds: float
    eval_seconds: float
    iterations: int
    train_loss: float  # mean loss over the last 10% of steps
    test_miou: Optional[float] = None  # on test (reporting only), after the last step
    test_per_class_iou: Optional[list[float]] = None


def poly_lr(base: float, step: int, total: int, power: float) -> float:
    return base * (1 - step / total) ** power


def _upsample(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    # align_corners: DeepLab's crops are 16k+1 pixels, so corner pixels map to corner features
    return kernels.resize_bilinear(logits.float(), size)


def _autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate_miou(model: nn.Module, split: Split, num_classes: int, cfg: EvalConfig, batch_size: int = 8) -> tuple[float, list[float]]:
    model.eval()
    device = split.labels.device
    cm = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
    s = cfg.eval_stride
    for start in range(0, len(split), batch_size):
        labels = split.labels[start : start + batch_size, ::s, ::s]
        with _autocast(device, cfg.amp):
            logits = model(split.prepare(split.inputs[start : start + batch_size]))
        pred = kernels.argmax_channels(_upsample(logits, labels.shape[-2:]))
        cm += confusion_matrix(pred, labels, num_classes)
    iou = iou_per_class(cm)
    return mean_iou(cm), [float(v) for v in iou]


def train_and_evaluate(
    model: nn.Module,
    param_groups: list[dict],
    train: Split,
    val: Split,
    num_classes: int,
    cfg: EvalConfig,
    seed: int,
    callback: Optional[ProgressCallback] = None,
    test: Optional[Split] = None,
) -> TrainOutcome:
    """``cfg.optimizer`` (Adam, or the paper's SGD + momentum) with poly decay for ``cfg.iterations``
    steps; NaN loss raises NaNLossError. ``callback`` sees val mIOU only; the test split (if
    given) is scored once, after training, and never reaches the callback. ``cfg.kernels`` picks
    the fast CPU kernels or the ``nn`` reference (``dpc.kernels``)."""
    with kernels.using(cfg.kernels):
        return _train_and_evaluate(model, param_groups, train, val, num_classes, cfg, seed, callback, test)


def _train_and_evaluate(model, param_groups, train, val, num_classes, cfg, seed, callback, test) -> TrainOutcome:
    device = train.labels.device
    rng = np.random.default_rng(seed)
    if cfg.optimizer == "adam":
        optimizer = torch.optim.Adam(param_groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    s = cfg.loss_stride
    order = np.empty(0, dtype=np.int64)
    start_time = time.perf_counter()
    eval_seconds = 0.0
    losses: list[float] = []
    model.train()
    for step in range(cfg.iterations):
        if len(order) < cfg.batch_size:
            order = np.concatenate([order, rng.permutation(len(train))])
        idx, order = order[: cfg.batch_size], order[cfg.batch_size :]
        index = torch.from_numpy(idx).to(device)
        x = train.inputs.index_select(0, index)
        y = train.labels.index_select(0, index)
        if cfg.crop and cfg.end_to_end and cfg.crop < min(y.shape[-2:]):
            top = int(rng.integers(y.shape[-2] - cfg.crop + 1))
            left = int(rng.integers(y.shape[-1] - cfg.crop + 1))
            x = x[..., top : top + cfg.crop, left : left + cfg.crop]
            y = y[..., top : top + cfg.crop, left : left + cfg.crop]
        y = y[:, ::s, ::s]
        if cfg.flip != "none":
            flip = torch.from_numpy(rng.random(len(idx)) < 0.5).to(device)
            if train.mirrored is not None:  # the features of the mirrored images (an image flip)
                flipped = train.mirrored.index_select(0, index)
            elif cfg.flip == "mirrored-images" and not cfg.end_to_end:
                raise ValueError("flip 'mirrored-images' needs the cached features of the mirrored images (Split.mirrored)")
            else:  # images end to end (an image flip), or "mirror-features" (not one)
                flipped = x.flip(-1)
            x = torch.where(flip[:, None, None, None], flipped, x)
            y = torch.where(flip[:, None, None], y.flip(-1), y)
        for group, base in zip(optimizer.param_groups, base_lrs):
            group["lr"] = poly_lr(base, step, cfg.iterations, cfg.poly_power)
        with _autocast(device, cfg.amp):
            logits = model(train.prepare(x))
        loss = F.cross_entropy(_upsample(logits, y.shape[-2:]), y.long(), ignore_index=IGNORE_INDEX)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise NaNLossError(f"loss became {value} at step {step} of {cfg.iterations}")
        losses.append(value)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if callback is not None and cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < cfg.iterations:
            t0 = time.perf_counter()
            miou, _ = evaluate_miou(model, val, num_classes, cfg)
            eval_seconds += time.perf_counter() - t0
            model.train()
            callback(step + 1, miou)
    train_seconds = time.perf_counter() - start_time - eval_seconds
    t0 = time.perf_counter()
    miou, per_class = evaluate_miou(model, val, num_classes, cfg)
    eval_seconds += time.perf_counter() - t0
    if callback is not None:
        callback(cfg.iterations, miou)
    test_miou = test_per_class = None
    if test is not None:
        t0 = time.perf_counter()
        test_miou, test_per_class = evaluate_miou(model, test, num_classes, cfg)
        eval_seconds += time.perf_counter() - t0
    tail = losses[-max(1, len(losses) // 10) :]
    return TrainOutcome(miou, per_class, train_seconds, eval_seconds, cfg.iterations, sum(tail) / len(tail),
                        test_miou, test_per_class)
