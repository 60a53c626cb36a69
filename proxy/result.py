"""What an evaluation returns: plain data that any NAS code (or an Optuna trial) can store."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class EvalResult:
    """``miou`` is the validation mIOU, the only value a search sees; ``test_miou`` is scored on
    the test split, which no strategy, sampler or pruner sees (None without a test split)."""

    miou: float
    per_class_iou: list[float]  # NaN where a class is absent from truth and prediction
    params: int  # trainable parameters of the head, classifier excluded (dpc.cell_cost; counted for a module)
    flops: int  # FLOPs of the head for one image at the evaluated feature size (measured for a module)
    train_seconds: float
    eval_seconds: float
    iterations: int
    train_loss: float  # mean training loss over the last 10% of steps
    device: str
    seed: int
    config: str  # config name
    config_hash: str  # the config's fields plus device type and precision (EvalConfig.hash)
    genome: str | None  # the genome string; None for a head that is not a DPC genome (proxy.head)
    test_miou: float | None = None
    test_per_class_iou: list[float] | None = None
    precision: str = "fp32"  # "fp32", or "bf16-autocast" on CUDA with amp
    # The data it trained and was scored on: the datasets' names, which carry the scene key of the
    # embedded scenes ("scenes-<key>-train,...") or a folder's fingerprint; results on other data
    # are never pooled (DPC-Bench imports check it).
    data: str | None = None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["per_class_iou"] = [None if v != v else round(v, 6) for v in self.per_class_iou]
        if self.test_per_class_iou is not None:
            d["test_per_class_iou"] = [None if v != v else round(v, 6) for v in self.test_per_class_iou]
        return d

    def __float__(self) -> float:
        return self.miou
