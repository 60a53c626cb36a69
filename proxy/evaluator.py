"""ProxyEvaluator: score a head by training only the head on cached backbone features.

No Optuna here: ``ProxyEvaluator("cpu").evaluate(genome)`` works from any NAS code.
A head is a DPC genome or, for another search space, a factory ``in_channels -> nn.Module``
whose module gives ``evaluator.head_channels`` channels at the feature size (``proxy.head``):
both go through the same cache, training loop, mIOU and ``EvalResult``.
The dataset and the feature cache are built once (``prepare``) and shared by every
evaluation of the process; a failed evaluation (NaN loss, GPU out of memory, a head of the
wrong output shape) raises an ``EvaluationError`` and leaves the evaluator usable.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from dpc.genome import Genome

from .config import EvalConfig, get_config
from .errors import GPUOutOfMemoryError
from .head import Head, build_head, head_cost
from .result import EvalResult
from .train import ProgressCallback, SegmentationHead, Split, train_and_evaluate

log = logging.getLogger(__name__)


def pick_device(device: "str | torch.device | None" = None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class _Evaluator:
    """Shared by the proxy and the full evaluator: subclasses load splits and build models."""

    full = False

    def __init__(
        self,
        config: "str | EvalConfig | None" = None,
        cache_dir: "str | Path | None" = None,
        device: "str | torch.device | None" = None,
        dataset: Optional[str] = None,
        datasets: Optional[Sequence] = None,
    ):
        self.config = get_config(config, full=self.full)
        self.cache_dir = cache_dir
        self.device = pick_device(device)
        self.dataset_spec = dataset
        self._datasets = datasets
        self._train: Optional[Split] = None
        self._val: Optional[Split] = None
        self._test: Optional[Split] = None  # reporting only: never reaches a callback
        self.num_classes = 0
        self.class_names: list[str] = []
        self.in_channels = 0
        self.feature_size = (0, 0)

    def _load_datasets(self):
        if self._datasets is None:
            from .sources import load_datasets

            self._datasets = load_datasets(self.dataset_spec, self.config.scenes, self.cache_dir)
        return self._datasets

    def prepare(self) -> "_Evaluator":
        """Build or load the dataset and cached features once; idempotent."""
        if self._train is None:
            splits = self._load_splits()
            self._train, self._val = splits[0], splits[1]
            self._test = splits[2] if len(splits) > 2 else None
        return self

    def build_caches(self) -> "_Evaluator":
        """Build (or check) on disk what ``prepare`` loads, without loading it onto the device: the
        parent of several worker processes calls this, so only the workers hold the data (on a
        GPU, one copy per worker instead of one more in the parent)."""
        self._load_datasets()
        return self

    def _load_splits(self) -> list[Split]:  # pragma: no cover - abstract
        """train, val and (when the dataset has one) test."""
        raise NotImplementedError

    def _build_model(self, head: nn.Module) -> tuple[nn.Module, list[dict]]:  # pragma: no cover
        """The trained model around ``head`` (classifier, backbone for the full task) and its param groups."""
        raise NotImplementedError

    @property
    def head_channels(self) -> int:
        """Channels a head must output (the classifier's input): ``config.concat_channels``."""
        return self.config.concat_channels

    def evaluate(self, head: Head, seed: Optional[int] = None, callback: Optional[ProgressCallback] = None) -> EvalResult:
        """Train ``head`` (a Genome, or a factory ``in_channels -> nn.Module``) and score it.

        For a factory, ``result.genome`` is None; ``params``/``flops`` are measured on its module
        (``proxy.head``). A module of the wrong output shape raises ``HeadError`` before training.
        """
        self.prepare()
        cfg = self.config
        seed = cfg.seed if seed is None else int(seed)
        torch.manual_seed(seed)
        model = module = None
        try:
            module = build_head(head, self.in_channels, cfg).to(self.device)
            cost = head_cost(head, module, self.in_channels, self.feature_size, cfg, self.device)
            model, groups = self._build_model(module)
            outcome = train_and_evaluate(model, groups, self._train, self._val, self.num_classes, cfg, seed, callback,
                                         test=self._test)
        except torch.OutOfMemoryError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else "out of memory"
            raise GPUOutOfMemoryError(f"out of memory on {self.device} with batch {cfg.batch_size}: {first}") from None
        finally:
            del model, module
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        return EvalResult(
            miou=outcome.miou,
            per_class_iou=outcome.per_class_iou,
            params=cost.params,
            flops=cost.flops,
            train_seconds=outcome.train_seconds,
            eval_seconds=outcome.eval_seconds,
            iterations=outcome.iterations,
            train_loss=outcome.train_loss,
            device=torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu",
            seed=seed,
            config=cfg.name,
            config_hash=cfg.hash(self.device.type),
            genome=str(head) if isinstance(head, Genome) else None,
            test_miou=outcome.test_miou,
            test_per_class_iou=outcome.test_per_class_iou,
            precision=cfg.precision(self.device.type),
            data=",".join(ds.name for ds in self._load_datasets()),
        )

    __call__ = evaluate


class ProxyEvaluator(_Evaluator):
    """The paper's proxy task: cached features, a single cell trained briefly, mIOU."""

    def _cached(self, ds):
        from .cache import load_or_build

        cfg = self.config
        return load_or_build(ds, backbone_name=cfg.backbone, output_stride=cfg.output_stride,
                             cache_dir=self.cache_dir, device=self.device)

    def build_caches(self) -> "ProxyEvaluator":
        for i, ds in enumerate(self._load_datasets()):
            self._cached(ds)
            if i == 0 and self.config.flip == "mirrored-images":
                from .mirror import MirroredDataset

                self._cached(MirroredDataset(ds))
        return self

    def _load_splits(self) -> list[Split]:
        cfg = self.config
        cached = self._cached
        splits = []
        for i, ds in enumerate(self._load_datasets()):
            c = cached(ds)
            # On the CPU the tensors read the copy-on-write memory map of the cache itself: a copy
            # doubled the resident memory (4.2 GB for one evaluation), and worker processes now
            # share one page-cached copy. Features stay float16, cast per batch.
            features = torch.from_numpy(np.asarray(c.features))
            labels = torch.from_numpy(np.asarray(c.labels))
            mirrored = None
            if i == 0 and cfg.flip == "mirrored-images":  # the train split's mirrored images, cached too
                from .mirror import MirroredDataset

                mirrored = torch.from_numpy(np.asarray(cached(MirroredDataset(ds)).features)).to(self.device)
            splits.append(Split(features.to(self.device), labels.to(self.device), mirrored=mirrored))
            self.num_classes, self.class_names = c.num_classes, list(c.class_names)
        self.in_channels = splits[0].inputs.shape[1]
        self.feature_size = tuple(splits[0].inputs.shape[-2:])
        return splits

    def _build_model(self, head: nn.Module) -> tuple[nn.Module, list[dict]]:
        model = SegmentationHead(head, self.in_channels, self.num_classes, self.config).to(self.device)
        return model, [{"params": list(model.parameters())}]
