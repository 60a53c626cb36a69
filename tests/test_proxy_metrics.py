"""mIOU from an accumulated confusion matrix."""
import numpy as np
import pytest
import torch

from proxy.metrics import confusion_matrix, iou_per_class, mean_iou


def test_confusion_matrix_counts_and_ignores_255():
    target = torch.tensor([[0, 0, 1, 255], [2, 2, 1, 1]])
    pred = torch.tensor([[0, 1, 1, 2], [2, 0, 1, 0]])
    cm = confusion_matrix(pred, target, 3).numpy()
    assert cm.tolist() == [[1, 1, 0], [1, 2, 0], [1, 0, 1]]
    assert cm.sum() == 7  # the 255 pixel is not counted


def test_iou_by_hand_and_absent_class_is_nan_and_excluded():
    cm = np.array([[3, 1, 0], [0, 2, 0], [0, 0, 0]])
    iou = iou_per_class(cm)
    assert iou[0] == pytest.approx(3 / 4) and iou[1] == pytest.approx(2 / 3) and np.isnan(iou[2])
    assert mean_iou(cm) == pytest.approx((3 / 4 + 2 / 3) / 2)
    # a class only predicted (never true) has IoU 0 and does count
    cm2 = np.array([[3, 1], [0, 0]])
    assert iou_per_class(cm2)[1] == 0 and mean_iou(cm2) == pytest.approx(3 / 8)


def test_accumulated_not_averaged_per_image():
    # image A: perfect on a tiny object; image B: misses a big object of the same class
    ta, pa = torch.tensor([1, 0, 0, 0]), torch.tensor([1, 0, 0, 0])
    tb, pb = torch.tensor([1, 1, 1, 0]), torch.tensor([0, 0, 0, 0])
    cm = confusion_matrix(pa, ta, 2) + confusion_matrix(pb, tb, 2)
    per_image = np.mean([mean_iou(confusion_matrix(pa, ta, 2)), mean_iou(confusion_matrix(pb, tb, 2))])
    assert mean_iou(cm) == pytest.approx(np.mean([4 / 7, 1 / 4]))
    assert mean_iou(cm) != pytest.approx(per_image)


def test_label_out_of_range_is_an_error():
    with pytest.raises(ValueError, match="label 5 outside"):
        confusion_matrix(torch.tensor([0]), torch.tensor([5]), 3)
