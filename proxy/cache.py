"""Backbone features of a dataset, computed once and cached on disk (the paper's proxy trick).

Layout: ``<cache_dir>/features/<key>/`` holds ``features.npy`` (N, C, h, w) float16,
``labels.npy`` (N, H, W) uint8 (the dataset's masks at full resolution, 255 = ignore) and
``manifest.json``. The key hashes everything the features depend on: dataset name and length,
number of classes, backbone, output stride, preprocessing version, the weights file, the
versions of the libraries that make the bytes (torch for the backbone pass; Pillow and numpy,
which decode and resize the images of folder datasets) and where the backbone pass runs: the
device type (``cpu``, ``cuda``, ...) and the arithmetic of its fp32 convolutions (``dtype``:
``float32``, or ``tf32`` where cuDNN may use TensorFloat-32, as PyTorch allows by default).

Safety: a cache is an entry of ``proxy.store`` (one policy for every cache): built in a temp
directory, published atomically by rename under a ``flock`` (if two processes build the same
key at once, the first to publish wins and the other uses its copy), and every byte of both
files checked against the manifest's sha256 digests once per process (``verify="full"``:
again on this load). A cache failing a check is logged with a warning and rebuilt, never used.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from . import store
from .backbone import (
    PREPROCESS_VERSION,
    build_backbone,
    check_args,
    feature_channels,
    output_size,
    preprocess,
    weights_fingerprint,
)
from .data import SegmentationDataset
from .store import CacheCorruptError, default_cache_dir

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # part of the key: bump only when the arrays' meaning changes
FILES = ("features.npy", "labels.npy")
# "once": every byte hashed once per process per file version; "full": again on this load.
# "sample" (an earlier version's check of 64 blocks) now means "once".
Verify = Literal["once", "full", "sample"]


@dataclass(frozen=True, eq=False)
class CachedFeatures:
    """A loaded cache: copy-on-write memory maps plus what a head needs to be built."""

    features: np.memmap  # (N, C, h, w) float16, copy-on-write (the file is never changed)
    labels: np.memmap  # (N, H, W) uint8, 255 = ignore
    num_classes: int
    class_names: list[str]
    key: str
    path: Path
    backbone: str
    output_stride: int
    manifest: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def in_channels(self) -> int:
        return int(self.features.shape[1])

    @property
    def feature_size(self) -> tuple[int, int]:
        return int(self.features.shape[2]), int(self.features.shape[3])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.labels.shape[1]), int(self.labels.shape[2])

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def to_torch(self, device: "torch.device | str | None" = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features, labels)`` resident on ``device``, so training indexes batches without copies.

        Features are float32 on the CPU (fast CPU kernels) and stay float16 on CUDA (half the
        memory; cast per batch). Labels stay uint8 (cast with ``.long()`` per batch for the loss).
        """
        device = torch.device(device or "cpu")
        labels = torch.from_numpy(np.array(self.labels)).to(device)
        if device.type == "cpu":
            return torch.from_numpy(self.features.astype(np.float32)), labels
        return torch.from_numpy(np.array(self.features)).to(device), labels


def _features_root(cache_dir: "str | Path | None") -> Path:
    return Path(cache_dir).expanduser() / "features" if cache_dir is not None else default_cache_dir() / "features"


def _conv_dtype(device: torch.device) -> str:
    """The arithmetic of the backbone's float32 convolutions on ``device``: ``float32`` (IEEE),
    ``tf32`` or ``bf16``, from PyTorch's precision settings for cuDNN / oneDNN."""
    backend = torch.backends.cudnn if device.type == "cuda" else torch.backends.mkldnn
    setting = getattr(getattr(backend, "conv", None), "fp32_precision", None)
    if setting in (None, "none"):
        setting = getattr(torch.backends, "fp32_precision", None)
    if setting in (None, "none"):  # PyTorch's defaults (or a version without these settings)
        return "tf32" if device.type == "cuda" and torch.backends.cudnn.allow_tf32 else "float32"
    return "float32" if setting == "ieee" else str(setting)


def key_fields(dataset: SegmentationDataset, backbone_name: str = "lite0", output_stride: int = 16,
               *, device: "torch.device | str | None" = None) -> dict[str, Any]:
    """Everything the cached arrays depend on. ``device``: where the backbone pass runs (None:
    CUDA if available, else the CPU, as ``load_or_build`` picks)."""
    import PIL

    check_args(backbone_name, output_stride)
    dev = _resolve_device(device)
    return {
        "dataset": str(dataset.name),
        "num_images": len(dataset),
        "num_classes": int(dataset.num_classes),
        "backbone": backbone_name,
        "output_stride": int(output_stride),
        "preprocess_version": PREPROCESS_VERSION,
        "weights": weights_fingerprint(backbone_name),
        "format": FORMAT_VERSION,
        "device": dev.type,
        "dtype": _conv_dtype(dev),
        "torch": torch.__version__,
        "pillow": PIL.__version__,
        "numpy": np.__version__,
    }


def cache_key(dataset: SegmentationDataset, backbone_name: str = "lite0", output_stride: int = 16,
              *, device: "torch.device | str | None" = None) -> str:
    """``<dataset slug>-<backbone>-os<stride>-<16 hex of sha256(key fields)>``: readable and unique."""
    fields = key_fields(dataset, backbone_name, output_stride, device=device)
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", str(dataset.name)).strip("._")[:40] or "dataset"
    return f"{slug}-{backbone_name}-os{output_stride}-{digest}"


# --- load -------------------------------------------------------------------------------------

def _mode(verify: Verify) -> store.Verify:
    if verify not in ("once", "full", "sample"):
        raise ValueError(f"verify must be 'once' or 'full', got {verify!r}")
    return "full" if verify == "full" else "once"


def _load(path: Path, manifest: dict[str, Any]) -> CachedFeatures:
    """Memory-map a verified cache; CacheCorruptError if its manifest or arrays are not this format's."""
    if manifest.get("format") != FORMAT_VERSION:
        raise CacheCorruptError(f"{store.MANIFEST} has format {manifest.get('format')!r}, not {FORMAT_VERSION}")
    arrays = {}
    for name in FILES:
        info = manifest["files"][name]
        try:
            # copy-on-write: readers share the page cache, and a stray write changes only the
            # writer's private copy (never the file, and no segfault as with a read-only map)
            arr = np.load(path / name, mmap_mode="c")
        except (ValueError, OSError) as e:
            raise CacheCorruptError(f"{name} is not a readable .npy: {e}") from None
        if list(arr.shape) != info.get("shape") or str(arr.dtype) != info.get("dtype"):
            raise CacheCorruptError(f"{name} is {arr.dtype}{list(arr.shape)}, manifest says {info.get('dtype')}{info.get('shape')}")
        arrays[name] = arr
    try:
        f = manifest["fields"]
        return CachedFeatures(
            features=arrays["features.npy"], labels=arrays["labels.npy"],
            num_classes=int(manifest["num_classes"]), class_names=list(manifest["class_names"]),
            key=manifest["key"], path=path, backbone=f["backbone"], output_stride=int(f["output_stride"]),
            manifest=manifest,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise CacheCorruptError(f"{store.MANIFEST} lacks a field: {e!r}") from None


def load_feature_cache(path: "str | Path", verify: Verify = "once") -> CachedFeatures:
    """Open an existing cache directory (its key is its name); CacheCorruptError if it fails a check."""
    path = Path(path)
    return _load(path, store.verify(path, path.name, FILES, _mode(verify)))


# --- build ------------------------------------------------------------------------------------

def _resolve_device(device: "torch.device | str | None") -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _check_item(i: int, image: np.ndarray, mask: np.ndarray, hw: Optional[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    image, mask = np.asarray(image), np.asarray(mask)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"dataset item {i}: image must be HxWx3 uint8, got {image.dtype}{list(image.shape)}")
    if mask.shape != image.shape[:2] or mask.dtype != np.uint8:
        raise ValueError(f"dataset item {i}: mask must be HxW uint8 matching the image, got {mask.dtype}{list(mask.shape)}")
    if hw is not None and mask.shape != hw:
        raise ValueError(f"dataset item {i}: size {mask.shape} differs from item 0's {hw}; the feature cache needs one image size")
    return image, mask


def _compute(dataset: SegmentationDataset, backbone_name: str, output_stride: int, out_dir: Path,
             batch_size: int, device: torch.device, progress: bool, desc: str) -> dict[str, Any]:
    """Write features.npy and labels.npy into ``out_dir``; return their shapes and dtypes."""
    n = len(dataset)
    if n == 0:
        raise ValueError(f"dataset {dataset.name!r} is empty; nothing to cache")
    first = _check_item(0, *dataset[0], None)
    hw = first[1].shape
    h, w = output_size(*hw, output_stride)
    c = feature_channels(backbone_name)
    model = build_backbone(backbone_name, output_stride, pretrained=True).to(device)
    feats = np.lib.format.open_memmap(out_dir / "features.npy", mode="w+", dtype=np.float16, shape=(n, c, h, w))
    labels = np.lib.format.open_memmap(out_dir / "labels.npy", mode="w+", dtype=np.uint8, shape=(n, *hw))
    with torch.inference_mode(), tqdm(total=n, unit="img", desc=desc, disable=not progress) as bar:
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            items = [first if i == 0 else _check_item(i, *dataset[i], hw) for i in range(start, stop)]
            x = preprocess(np.stack([im for im, _ in items]), device)
            y = model(x).to(torch.float16)
            if not torch.isfinite(y).all():
                raise RuntimeError(f"backbone {backbone_name!r} gave non-finite float16 features for images {start}..{stop - 1}")
            feats[start:stop] = y.cpu().numpy()
            labels[start:stop] = np.stack([m for _, m in items])
            bar.update(stop - start)
    for arr in (feats, labels):
        arr.flush()
    shapes = {"features.npy": [n, c, h, w], "labels.npy": [n, *hw]}
    del feats, labels
    return shapes


def _writer(dataset: SegmentationDataset, backbone_name: str, output_stride: int,
            batch_size: Optional[int], device: "torch.device | str | None", progress: bool):
    """The store's ``write(tmp)`` for these features: compute both arrays, return the manifest's
    fields (``batch_size`` and ``device`` as in ``build_feature_cache``)."""
    key = cache_key(dataset, backbone_name, output_stride, device=device)
    dev = _resolve_device(device)
    bs = batch_size or (16 if dev.type == "cuda" else 1)
    if bs < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")

    def write(tmp: Path) -> dict[str, Any]:
        t0 = time.perf_counter()
        shapes = _compute(dataset, backbone_name, output_stride, tmp, bs, dev, progress, desc=f"features {key}")
        seconds = time.perf_counter() - t0
        n, size = len(dataset), sum((tmp / name).stat().st_size for name in FILES)
        log.info("feature cache %s: %d images in %.1f s (%.1f ms/image on %s, batch %d), %.1f MB (%.0f kB/image)",
                 key, n, seconds, 1e3 * seconds / n, dev, bs, size / 1e6, size / 1e3 / n)
        dtypes = {"features.npy": "float16", "labels.npy": "uint8"}
        return {
            "format": FORMAT_VERSION, "fields": key_fields(dataset, backbone_name, output_stride, device=device),
            "num_classes": int(dataset.num_classes), "class_names": [str(c) for c in dataset.class_names],
            "files": {name: {"shape": shapes[name], "dtype": dtypes[name]} for name in FILES},
            "build_seconds": round(seconds, 3), "device": str(dev), "batch_size": bs,
            "torch_version": torch.__version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    return write


def build_feature_cache(
    dataset: SegmentationDataset,
    backbone_name: str = "lite0",
    output_stride: int = 16,
    cache_dir: "str | Path | None" = None,
    batch_size: Optional[int] = None,
    device: "torch.device | str | None" = None,
    progress: bool = True,
) -> CachedFeatures:
    """Compute the dataset's features now and publish them atomically (an intact cache already
    published under the same key wins over this build). Prefer ``load_or_build``.

    ``batch_size`` None: 1 on the CPU (measured faster per image than 8), 16 on CUDA.
    ``device`` None: CUDA if available, else the CPU.
    """
    key = cache_key(dataset, backbone_name, output_stride, device=device)
    final = _features_root(cache_dir) / key
    store.build(final, key, _writer(dataset, backbone_name, output_stride, batch_size, device, progress))
    return _load(final, store.verify(final, key, FILES))


def load_or_build(
    dataset: SegmentationDataset,
    backbone_name: str = "lite0",
    output_stride: int = 16,
    cache_dir: "str | Path | None" = None,
    batch_size: Optional[int] = None,
    device: "torch.device | str | None" = None,
    progress: bool = True,
    verify: Verify = "once",
) -> CachedFeatures:
    """The cached features of ``dataset``: loaded if an intact cache exists, else built (see module doc).

    ``device`` only matters for building (where the backbone runs); use
    ``CachedFeatures.to_torch(device)`` to place the arrays for training.
    """
    key = cache_key(dataset, backbone_name, output_stride, device=device)
    write = _writer(dataset, backbone_name, output_stride, batch_size, device, progress)
    return store.open_or_build(_features_root(cache_dir) / key, key, what="feature cache", required=FILES,
                               load=_load, write=write, mode=_mode(verify))


__all__ = [
    "CacheCorruptError", "CachedFeatures", "SegmentationDataset", "build_feature_cache", "cache_key",
    "default_cache_dir", "key_fields", "load_feature_cache", "load_or_build",
]
