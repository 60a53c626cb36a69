"""EfficientNet-Lite backbone: real weights, output strides, the atrous identity, preprocessing."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from proxy.backbone import (
    backbone_flops,
    block_specs,
    build_backbone,
    feature_channels,
    preprocess,
    weights_fingerprint,
)

IMAGENET_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def lite0() -> dict[int, torch.nn.Module]:
    return {os_: build_backbone("lite0", os_) for os_ in (8, 16, 32)}


def _chelsea(size: int) -> np.ndarray:
    """Centre square crop of scikit-image's cat photo, resized to ``size`` (bicubic)."""
    img = data.chelsea()
    h, w = img.shape[:2]
    s = min(h, w)
    crop = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return np.asarray(Image.fromarray(crop).resize((size, size), Image.BICUBIC))


@pytest.mark.parametrize("name, resolution, channels, blocks, params", [
    ("lite0", 224, 320, 16, 4_652_008),
    ("lite2", 260, 352, 21, 6_092_072),
])
def test_real_weights_classify_a_cat(name, resolution, channels, blocks, params):
    model = build_backbone(name, output_stride=32)  # loads the packaged state dict strictly
    assert model.out_channels == channels == feature_channels(name)
    assert len(model._blocks) == blocks and model.resolution == resolution
    assert sum(p.numel() for p in model.parameters()) == params
    with torch.inference_mode():
        probs = model.classify(preprocess(_chelsea(resolution))).softmax(1)[0]
    top = int(probs.argmax())
    assert top in IMAGENET_CATS, f"{name} top-1 is class {top} ({float(probs[top]):.2f})"
    assert float(probs[IMAGENET_CATS.start:IMAGENET_CATS.stop].sum()) > 0.8


def test_lite2_block_table_from_state_dict_shapes():
    specs = block_specs("lite2", 32)
    stage_out = [s.out_ch for s in specs]
    # width 1.1 rounded to multiples of 8; depth 1.2 (ceil) except the fixed first/last stage
    assert stage_out == [16] + [24] * 3 + [48] * 3 + [88] * 4 + [120] * 4 + [208] * 5 + [352]
    assert [s.kernel for s in specs] == [3] + [3] * 3 + [5] * 3 + [3] * 4 + [5] * 4 + [5] * 5 + [3]
    assert weights_fingerprint("lite2").startswith("24666229:")


@pytest.mark.parametrize("os_, size", [(8, (17, 13)), (16, (9, 7)), (32, (5, 4))])
def test_feature_shape_on_odd_size(lite0, os_, size):
    x = preprocess(np.zeros((2, 129, 97, 3), np.uint8))
    with torch.inference_mode():
        y = lite0[os_](x)
    assert tuple(y.shape) == (2, 320, *size)
    assert lite0[os_].output_stride == os_ and lite0[os_].name == "lite0"


@pytest.mark.parametrize("hw", [(129, 97), (128, 96)])
def test_dilated_features_subsample_to_the_stride32_network(lite0, hw):
    """Atrous algorithm: OS 16 / 8 features, subsampled, equal the non-dilated network's exactly."""
    gen = torch.Generator().manual_seed(0)
    x = preprocess(torch.randint(0, 256, (1, *hw, 3), dtype=torch.uint8, generator=gen))
    with torch.inference_mode():
        ref = lite0[32](x)
        for os_ in (16, 8):
            dense, r = lite0[os_](x), 32 // os_
            errs = [float((dense[..., oy::r, ox::r] - ref).abs().max())
                    for oy in range(r) for ox in range(r) if dense[..., oy::r, ox::r].shape == ref.shape]
            assert min(errs) < 1e-4 * float(ref.abs().max()), (os_, errs)
    assert all(s.dilation == 1 for s in lite0[32].specs)
    # OS 8: block 5 and block 11 lose their stride; each keeps the current rate, later blocks double it
    assert [s.dilation for s in lite0[8].specs] == [1] * 6 + [2] * 6 + [4] * 4
    assert [s.stride for s in lite0[8].specs] == [1, 2, 1, 2, 1] + [1] * 11


def test_flops_match_a_hook_count(lite0):
    count = 0

    def hook(mod, inp, out):
        nonlocal count
        count += out.numel() * mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]

    handles = [m.register_forward_hook(hook) for m in lite0[16].modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        with torch.inference_mode():
            lite0[16](preprocess(np.zeros((1, 129, 97, 3), np.uint8)))
    finally:
        for h in handles:
            h.remove()
    assert backbone_flops("lite0", 129, 97, 16) == count
    assert 0.37e9 < backbone_flops("lite0", 224, 224, 32, include_head=True) < 0.41e9  # ~0.39 B published


def test_preprocess_layouts_and_values():
    img = np.array([[[0, 127, 255]]], np.uint8)  # 1x1 HWC
    x = preprocess(img)
    assert x.shape == (1, 3, 1, 1) and x.dtype == torch.float32
    assert torch.allclose(x.flatten(), torch.tensor([-127 / 128, 0.0, 1.0]))
    batch = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    nchw = torch.from_numpy(batch).permute(0, 3, 1, 2)
    assert torch.equal(preprocess(batch), preprocess(nchw))
    with pytest.raises(ValueError, match="3 channels"):
        preprocess(np.zeros((2, 4, 5, 6), np.uint8))


@pytest.mark.parametrize("kwargs, match", [({"name": "lite9"}, "lite9"), ({"output_stride": 12}, "12")])
def test_bad_arguments_name_the_problem(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_backbone(**kwargs, pretrained=False)
