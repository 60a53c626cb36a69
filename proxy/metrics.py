"""mIOU from one confusion matrix accumulated over the whole validation set.

Per-image averaging would weight small images' rare classes as much as whole datasets;
DeepLab and the Cityscapes/VOC benchmarks accumulate first. A class absent from both
truth and prediction over the whole set has an undefined IoU (0/0): it is reported as
NaN and left out of the mean, so a validation set that happens to lack a class does not
drag every cell down equally. Pixels labelled ``ignore_index`` count for nothing.
"""
from __future__ import annotations

import numpy as np
import torch

IGNORE_INDEX = 255


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Rows = truth, columns = prediction; int64 on the inputs' device."""
    valid = target != ignore_index
    t = target[valid].long()
    p = pred[valid].long()
    if t.numel() and (int(t.max()) >= num_classes or int(t.min()) < 0):
        raise ValueError(f"label {int(t.max())} outside 0..{num_classes - 1} (and not the ignore label {ignore_index})")
    return torch.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_per_class(confusion: np.ndarray | torch.Tensor) -> np.ndarray:
    cm = np.asarray(confusion.cpu() if isinstance(confusion, torch.Tensor) else confusion, dtype=np.float64)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def mean_iou(confusion: np.ndarray | torch.Tensor) -> float:
    iou = iou_per_class(confusion)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0
