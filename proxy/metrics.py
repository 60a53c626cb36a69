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
    """Rows = truth, columns = prediction; int64 on the inputs' device. Ignored pixels go to one
    extra bin that is dropped (boolean indexing cost more than the rest of the evaluation pass)."""
    t = target.reshape(-1).long()
    p = pred.reshape(-1).long()
    ignored = t == ignore_index
    lo, hi = int(t.min()) if t.numel() else 0, int(torch.where(ignored, 0, t).max()) if t.numel() else 0
    if lo < 0 or hi >= num_classes:
        bad = lo if lo < 0 else hi
        raise ValueError(f"label {bad} outside 0..{num_classes - 1} (and not the ignore label {ignore_index})")
    index = torch.where(ignored, num_classes * num_classes, t * num_classes + p)
    counts = torch.bincount(index, minlength=num_classes * num_classes + 1)
    return counts[: num_classes * num_classes].reshape(num_classes, num_classes)


def iou_per_class(confusion: np.ndarray | torch.Tensor) -> np.ndarray:
    cm = np.asarray(confusion.cpu() if isinstance(confusion, torch.Tensor) else confusion, dtype=np.float64)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def mean_iou(confusion: np.ndarray | torch.Tensor) -> float:
    iou = iou_per_class(confusion)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0
