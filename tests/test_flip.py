"""The proxy's flip equals an image flip: it trains on the cached features of mirrored images.

A mirrored feature map is not the feature map of the mirrored image (the backbone's kernels are
not symmetric), which is why the old "mirror-features" flip was not the full task's augmentation.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dpc import zoo_cell
from proxy.backbone import build_backbone, preprocess
from proxy.config import get_config
from proxy.evaluator import ProxyEvaluator
from proxy.mirror import MirroredDataset


def test_the_mirror_dataset_flips_images_and_masks_left_to_right(test_evaluator):
    ds = test_evaluator._load_datasets()[0]
    m = MirroredDataset(ds)
    image, mask = ds[3]
    mi, mm = m[3]
    assert np.array_equal(mi, image[:, ::-1]) and np.array_equal(mm, mask[:, ::-1])
    assert m.name != ds.name and len(m) == len(ds) and m.num_classes == ds.num_classes


def test_cached_mirrored_features_are_the_mirrored_images_features_not_a_mirrored_map(test_evaluator):
    assert test_evaluator.config.flip == "none"  # the proxy's default (disk), see proxy.config
    ev = ProxyEvaluator(get_config("test").replace(flip="mirrored-images"), device="cpu",
                        datasets=test_evaluator._load_datasets(), cache_dir=test_evaluator.cache_dir).prepare()
    train = ev._train
    assert train.mirrored is not None and train.mirrored.shape == train.inputs.shape
    ds = ev._load_datasets()[0]
    model = build_backbone(ev.config.backbone, ev.config.output_stride, pretrained=True).eval()
    with torch.inference_mode():
        direct = model(preprocess(np.stack([MirroredDataset(ds)[i][0] for i in (0, 1)]), torch.device("cpu")))
    cached = train.mirrored[:2].float()
    assert torch.allclose(cached, direct.to(torch.float16).float(), atol=2e-2, rtol=2e-2)
    mirrored_map = train.inputs[:2].float().flip(-1)
    gap = (mirrored_map - cached).abs().mean() / cached.abs().mean()
    assert gap > 0.05, f"a mirrored feature map was within {gap:.3f} of the mirrored image's features"


@pytest.mark.parametrize("flip", ["mirror-features"])
def test_other_flip_modes_train(test_evaluator, flip):
    ev = ProxyEvaluator(get_config("test").replace(flip=flip), device="cpu",
                        datasets=test_evaluator._load_datasets(), cache_dir=test_evaluator.cache_dir)
    r = ev.evaluate(zoo_cell("weak"), seed=0)
    assert 0 <= r.miou <= 1 and ev._train.mirrored is None
    assert r.config_hash != get_config("test").hash("cpu")  # another flip is another config
    assert get_config("full-test").flip == "mirrored-images" and get_config("full-test").end_to_end  # real images


def test_unknown_flip_is_refused():
    with pytest.raises(ValueError, match="flip must be one of none, mirrored-images, mirror-features"):
        get_config("test").replace(flip=True)
