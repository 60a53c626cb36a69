"""Named evaluation settings; every field enters the config hash stored with each result.

``test`` keeps one evaluation under ~2 s for the test suite (it checks wiring: in 20
steps no cell learns more than background), ``cpu`` is the default (2-4
minutes an evaluation on 2 cores: 64 channels instead of 256, 600 iterations), ``paper``
follows the paper's proxy (256 channels, batch 8, SGD with momentum and poly lr from
0.01; its 30k iterations scaled down to what a GPU buys in minutes).

Why 600 iterations for ``cpu`` (chosen on 2,000 train scenes; the three-split dataset has 1,600
train + 100 val + 400 test, so 600 steps are 3 epochs, was 2.4): with 400 scenes and 300 iterations the
five-1x1 cell scored as well as ASPP (the heads were undertrained, and longer training
on 400 scenes overfitted: 1,500 iterations lowered the 1x1 cell from 0.222 to 0.186);
with 2,000 scenes and 900 iterations ASPP led by 0.05 mIOU. The README has the numbers.

Why Adam for ``test`` and ``cpu``: at a CPU budget of a few hundred steps, SGD with
momentum (lr 0.02 to 1.0 tried) never predicted a single digit pixel on the embedded
data (mIOU 0.079 = background only), while Adam at lr 0.01 did; both use the same poly
decay. The ``full`` configs are the "full task" of the correlation study: a bigger
backbone (Lite2 where installed) fine-tuned end to end with the cell at full image
resolution. With Adam the backbone trains at 1/100 of the head's rate: at 1/10 (Adam
at 1e-3 on pretrained weights) it forgot its features and predicted background only.
``full-cpu`` is the full task that goes with the ``cpu`` proxy; it is sized for a GPU
(about an hour a cell on 2 CPU cores).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

FLIPS = ("none", "mirrored-images", "mirror-features")


@dataclass(frozen=True)
class EvalConfig:
    name: str
    scenes: str = "default"  # preset of the embedded dataset (proxy.scenes.SCENE_PRESETS)
    backbone: str = "lite0"
    output_stride: int = 16
    end_to_end: bool = False  # False: train the head on cached features (the proxy)
    channels: int = 64
    concat_channels: int = 64
    dropout: float = 0.1
    iterations: int = 150
    batch_size: int = 8
    optimizer: str = "sgd"  # "sgd" (momentum) or "adam"; both with poly decay
    lr: float = 0.05
    backbone_lr_mult: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 4e-5
    poly_power: float = 0.9
    loss_stride: int = 4  # labels subsampled by this for the loss (1 = full resolution, as DeepLab)
    eval_stride: int = 1  # labels subsampled by this for mIOU (1 = full resolution)
    # Horizontal flip augmentation: "none"; "mirrored-images" (the proxy trains on the cached
    # features of the mirrored images, so it equals an image flip; end to end it flips the images);
    # "mirror-features" (the old one: mirrors cached feature maps, which is not an image flip).
    # The proxy configs do not flip: "mirrored-images" is the honest flip but its second train
    # cache (1.5 GB for cpu) breaks the 4 GB disk goal; benchmarks.flip measures what it buys.
    flip: str = "none"
    crop: int = 0  # end-to-end only: random square crops of this size for training (0: whole images)
    eval_every: int = 0  # intermediate mIOU for the callback every N steps (0: only at the end)
    seed: int = 0
    amp: bool = True  # mixed precision on CUDA (ignored on the CPU)
    # "fast": dpc.kernels' CPU formulations of pooling, resizing, depthwise backward, dropout and
    # argmax (equal to the nn ops up to float rounding); "reference": the nn ops, for checking.
    kernels: str = "fast"
    default_budget: int = 16  # evaluations a default search runs with this config
    default_reeval_seeds: int = 3  # fresh-seed re-trainings of a default search's best cell (strategies.run)

    def __post_init__(self) -> None:
        positive = ("output_stride", "channels", "concat_channels", "iterations", "batch_size", "loss_stride", "eval_stride")
        for field in positive:
            if getattr(self, field) < 1:
                raise ValueError(f"config {self.name!r}: {field} must be >= 1, got {getattr(self, field)}")
        if self.output_stride not in (8, 16, 32):
            raise ValueError(f"config {self.name!r}: output_stride must be 8, 16 or 32, got {self.output_stride}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"config {self.name!r}: optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.kernels not in ("fast", "reference"):
            raise ValueError(f"config {self.name!r}: kernels must be 'fast' or 'reference', got {self.kernels!r}")
        if self.flip not in FLIPS:
            raise ValueError(f"config {self.name!r}: flip must be one of {', '.join(FLIPS)}, got {self.flip!r}")
        if not 0 <= self.dropout < 1 or self.lr <= 0:
            raise ValueError(f"config {self.name!r}: need 0 <= dropout < 1 and lr > 0")

    @property
    def rate_multiplier(self) -> int:
        """Rates are defined at output stride 16 and doubled at 8 (the paper)."""
        return 2 if self.output_stride == 8 else 1

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def precision(self, device_type: str) -> str:
        """What the arithmetic really is: bf16 autocast on CUDA when ``amp``, else fp32."""
        return "bf16-autocast" if self.amp and device_type == "cuda" else "fp32"

    def hash(self, device_type: str | None = None, *, unhashed: frozenset = frozenset(
            ("name", "default_budget", "default_reeval_seeds", "eval_every"))) -> str:
        """Every field that can change a result: all but the name, the budget defaults and
        ``eval_every`` (it only says how often the callback hears val mIOU; evaluations with and
        without it agree bit for bit, tested), so a search's trials, a noise study's and DPC-Bench's
        records of one cell and seed share a hash. With ``device_type``, also the device type and the
        precision it implies, so CPU fp32 and GPU bf16 results never share a hash."""
        body = {k: v for k, v in self.to_dict().items() if k not in unhashed}
        if device_type is not None:
            body["device_type"] = device_type
            body["precision"] = self.precision(device_type)
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]

    def replace(self, **changes) -> "EvalConfig":
        return dataclasses.replace(self, **changes)


PROXY_CONFIGS: dict[str, EvalConfig] = {
    "test": EvalConfig("test", scenes="test", channels=16, concat_channels=16, iterations=20, batch_size=4,
                       optimizer="adam", lr=0.01, loss_stride=2, default_budget=6),
    "cpu": EvalConfig("cpu", channels=64, concat_channels=64, iterations=600, optimizer="adam", lr=0.01,
                      eval_stride=2, default_budget=2, default_reeval_seeds=2),
    "paper": EvalConfig("paper", channels=256, concat_channels=256, iterations=3000, lr=0.01, loss_stride=1,
                        eval_every=500, default_budget=200),
}
FULL_CONFIGS: dict[str, EvalConfig] = {
    "test": EvalConfig("full-test", flip="mirrored-images", scenes="test", backbone="lite2", end_to_end=True, channels=16, concat_channels=16,
                       iterations=8, batch_size=2, optimizer="adam", lr=0.01, loss_stride=2, crop=65),
    "cpu": EvalConfig("full-cpu", flip="mirrored-images", backbone="lite2", end_to_end=True, channels=64, concat_channels=64,
                      iterations=1200, batch_size=8, optimizer="adam", lr=0.01, backbone_lr_mult=0.01,
                      loss_stride=2, eval_stride=2, crop=321),
    "paper": EvalConfig("full-paper", flip="mirrored-images", backbone="lite2", end_to_end=True, channels=256, concat_channels=256,
                        iterations=20000, batch_size=16, lr=0.01, loss_stride=1, crop=513),
    # Frozen Lite2 on cached features (proxy.full.full_evaluator): a full task 2 CPU cores can run
    # in the background. Against the proxy: a bigger backbone, images flipped, loss and mIOU at full
    # resolution, 2x the channels, 2x the steps; the backbone is frozen in both.
    "cpu-frozen": EvalConfig("full-cpu-frozen", flip="mirrored-images", backbone="lite2", channels=128,
                             concat_channels=128, iterations=1200, batch_size=8, optimizer="adam", lr=0.01,
                             loss_stride=1, eval_stride=1),
    "test-frozen": EvalConfig("full-test-frozen", flip="mirrored-images", scenes="test", backbone="lite2", channels=16,
                              concat_channels=16, iterations=20, batch_size=4, optimizer="adam", lr=0.01, loss_stride=1),
}


def default_config_name() -> str:
    """``cpu`` everywhere, GPUs included: ``paper`` (SGD, 3,000 steps) separated ASPP from five
    1x1 convs by only 0.005 mIOU on an H200, ``cpu`` (Adam, 600 steps) by 0.02-0.04 on the same
    GPU. A GPU default will be chosen by a measurement on a GPU (the protocol issue)."""
    return "cpu"


def get_config(name: "str | EvalConfig | None" = None, full: bool = False) -> EvalConfig:
    if isinstance(name, EvalConfig):
        return name
    table = FULL_CONFIGS if full else PROXY_CONFIGS
    key = default_config_name() if name is None else name
    if key.startswith("full-"):
        key, table = key[5:], FULL_CONFIGS
    if key not in table:
        raise ValueError(f"unknown config {name!r}; known: {', '.join(table)}")
    return table[key]
