"""Backbone features of a dataset, computed once and cached on disk (the paper's proxy trick).

Layout: ``<cache_dir>/features/<key>/`` holds ``features.npy`` (N, C, h, w) float16,
``labels.npy`` (N, H, W) uint8 (the dataset's masks at full resolution, 255 = ignore) and
``manifest.json``. The key hashes everything the features depend on: dataset name and length,
number of classes, backbone, output stride, preprocessing version and the weights file.

Safety:
- Built in a temporary directory next to the final one; the manifest is written last and the
  directory is then renamed into place, so a reader sees a complete cache or none. If two
  processes build the same key at once, both compute; the first rename wins and the loser
  discards its copy and uses the winner's (publishing holds a short ``flock``).
- The manifest records each file's byte size, a full sha256 (computed at build) and a
  "sample" sha256 over at most 64 evenly spaced 64 KiB blocks (the whole file when smaller
  than 4 MiB). Loading checks sizes, npy headers and the sample hash (cheap: a few MiB read);
  ``verify="full"`` re-hashes everything (~1.5 GB/s). A cache failing a check is logged with
  a warning and rebuilt, never used.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Optional, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from .data import default_cache_dir  # one rule for every cache: $DPC_NAS_CACHE or ~/.cache/dpc-nas
from .backbone import PREPROCESS_VERSION, build_backbone, check_args, feature_channels, output_size, preprocess, weights_fingerprint

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
FILES = ("features.npy", "labels.npy")
MANIFEST = "manifest.json"
_BLOCK, _MAX_BLOCKS = 64 * 1024, 64
_STALE_S = 2 * 86400  # temp/trash dirs older than this are leftovers of killed processes
Verify = Literal["sample", "full"]


class SegmentationDataset(Protocol):
    name: str
    num_classes: int
    class_names: list[str]

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]: ...


class CacheCorruptError(RuntimeError):
    """A cache directory failed a check (the message names the check)."""


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


def key_fields(dataset: SegmentationDataset, backbone_name: str = "lite0", output_stride: int = 16) -> dict[str, Any]:
    """Everything the cached arrays depend on."""
    check_args(backbone_name, output_stride)
    return {
        "dataset": str(dataset.name),
        "num_images": len(dataset),
        "num_classes": int(dataset.num_classes),
        "backbone": backbone_name,
        "output_stride": int(output_stride),
        "preprocess_version": PREPROCESS_VERSION,
        "weights": weights_fingerprint(backbone_name),
        "format": FORMAT_VERSION,
    }


def cache_key(dataset: SegmentationDataset, backbone_name: str = "lite0", output_stride: int = 16) -> str:
    """``<dataset slug>-<backbone>-os<stride>-<16 hex of sha256(key fields)>``: readable and unique."""
    fields = key_fields(dataset, backbone_name, output_stride)
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", str(dataset.name)).strip("._")[:40] or "dataset"
    return f"{slug}-{backbone_name}-os{output_stride}-{digest}"


# --- checksums -------------------------------------------------------------------------------

def _sha256_full(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _sha256_sample(path: Path) -> str:
    """Hash of up to 64 evenly spaced 64 KiB blocks (first and last included): a few MiB read."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        if size <= _BLOCK * _MAX_BLOCKS:
            h.update(f.read())
        else:
            step = (size - _BLOCK) / (_MAX_BLOCKS - 1)
            for i in range(_MAX_BLOCKS):
                f.seek(int(round(i * step)))
                h.update(f.read(_BLOCK))
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _publish_lock(root: Path, key: str) -> Iterator[None]:
    """Exclusive ``flock`` on ``.<key>.lock`` (released by the kernel if the holder dies)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: rename atomicity alone still protects readers
        yield
        return
    with open(root / f".{key}.lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --- load -------------------------------------------------------------------------------------

def _validate(path: Path, key: str, verify: Verify = "sample") -> dict[str, Any]:
    """Return the manifest of a complete, intact cache directory, else raise CacheCorruptError."""
    if verify not in ("sample", "full"):
        raise ValueError(f"verify must be 'sample' or 'full', got {verify!r}")
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise CacheCorruptError(f"{mpath.name} missing")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CacheCorruptError(f"unreadable {mpath.name}: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION or manifest.get("key") != key:
        raise CacheCorruptError(f"{mpath.name} has the wrong format or key")
    for name in FILES:
        info = manifest.get("files", {}).get(name)
        fpath = path / name
        if not isinstance(info, dict):
            raise CacheCorruptError(f"{mpath.name} does not describe {name}")
        if not fpath.is_file():
            raise CacheCorruptError(f"{name} missing")
        size = fpath.stat().st_size
        if size != info.get("bytes"):
            raise CacheCorruptError(f"{name} has {size} bytes, manifest says {info.get('bytes')}")
        digest, expected = (_sha256_full(fpath), info.get("sha256")) if verify == "full" else (_sha256_sample(fpath), info.get("sample_sha256"))
        if digest != expected:
            raise CacheCorruptError(f"{name} fails its {verify} sha256 check")
    return manifest


def _open(path: Path, key: str, verify: Verify = "sample") -> CachedFeatures:
    manifest = _validate(path, key, verify)
    arrays = {}
    for name in FILES:
        info = manifest["files"][name]
        try:
            # copy-on-write: readers share the page cache, and a stray write changes only the
            # writer's private copy (never the file, and no segfault as with a read-only map)
            arr = np.load(path / name, mmap_mode="c")
        except (ValueError, OSError) as e:
            raise CacheCorruptError(f"{name} is not a readable .npy: {e}") from None
        if list(arr.shape) != info["shape"] or str(arr.dtype) != info["dtype"]:
            raise CacheCorruptError(f"{name} is {arr.dtype}{list(arr.shape)}, manifest says {info['dtype']}{info['shape']}")
        arrays[name] = arr
    f = manifest["fields"]
    return CachedFeatures(
        features=arrays["features.npy"], labels=arrays["labels.npy"],
        num_classes=int(manifest["num_classes"]), class_names=list(manifest["class_names"]),
        key=key, path=path, backbone=f["backbone"], output_stride=int(f["output_stride"]), manifest=manifest,
    )


def load_feature_cache(path: "str | Path", verify: Verify = "sample") -> CachedFeatures:
    """Open an existing cache directory (its key is its name); CacheCorruptError if it fails a check."""
    path = Path(path)
    return _open(path, path.name, verify)


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


def _discard(path: Path) -> None:
    """Remove a directory: rename it aside first (atomic), so no reader sees it half-deleted."""
    trash = path.with_name(f".{path.name}.trash-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(path, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def _sweep_stale(root: Path, key: str) -> None:
    """Delete temp/trash directories of ``key`` left by killed processes (untouched for 2 days)."""
    now = time.time()
    for d in list(root.glob(f".{key}.tmp-*")) + list(root.glob(f".{key}.trash-*")):
        with contextlib.suppress(OSError):
            if now - d.stat().st_mtime > _STALE_S:
                log.info("removing stale %s", d)
                shutil.rmtree(d, ignore_errors=True)


def _publish(tmp: Path, final: Path, key: str) -> None:
    """Rename ``tmp`` to ``final`` unless an intact cache is already there (then ``tmp`` is dropped)."""
    with _publish_lock(final.parent, key):
        if final.exists():
            try:
                _validate(final, key)
                log.info("feature cache %s was built by another process meanwhile; using it", final)
                return
            except CacheCorruptError as e:
                log.warning("feature cache %s is corrupt (%s); replacing it", final, e)
                _discard(final)
        try:
            os.rename(tmp, final)
        except OSError as e:  # a writer that does not take the lock (e.g. an older version)
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            log.info("feature cache %s appeared meanwhile; discarding this build", final)
            return
        _fsync_dir(final.parent)


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
    key = cache_key(dataset, backbone_name, output_stride)
    dev = _resolve_device(device)
    bs = batch_size or (16 if dev.type == "cuda" else 1)
    if bs < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    root = _features_root(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    _sweep_stale(root, key)
    final = root / key
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=root))
    t0 = time.perf_counter()
    try:
        shapes = _compute(dataset, backbone_name, output_stride, tmp, bs, dev, progress, desc=f"features {key}")
        seconds = time.perf_counter() - t0
        files = {}
        for name in FILES:
            fpath = tmp / name
            with open(fpath, "rb+") as f:
                os.fsync(f.fileno())
            files[name] = {"shape": shapes[name], "dtype": "float16" if name == "features.npy" else "uint8",
                           "bytes": fpath.stat().st_size, "sha256": _sha256_full(fpath), "sample_sha256": _sha256_sample(fpath)}
        manifest = {
            "format": FORMAT_VERSION, "key": key, "fields": key_fields(dataset, backbone_name, output_stride),
            "num_classes": int(dataset.num_classes), "class_names": [str(c) for c in dataset.class_names],
            "files": files, "build_seconds": round(seconds, 3), "device": str(dev), "batch_size": bs,
            "torch_version": torch.__version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        with open(tmp / MANIFEST, "w") as f:  # written last: its presence marks a complete build
            json.dump(manifest, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        _publish(tmp, final, key)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    size = sum(i["bytes"] for i in files.values())
    n = len(dataset)
    log.info("feature cache %s: %d images in %.1f s (%.1f ms/image on %s, batch %d), %.1f MB (%.0f kB/image)",
             key, n, seconds, 1e3 * seconds / n, dev, bs, size / 1e6, size / 1e3 / n)
    return _open(final, key)


def load_or_build(
    dataset: SegmentationDataset,
    backbone_name: str = "lite0",
    output_stride: int = 16,
    cache_dir: "str | Path | None" = None,
    batch_size: Optional[int] = None,
    device: "torch.device | str | None" = None,
    progress: bool = True,
    verify: Verify = "sample",
) -> CachedFeatures:
    """The cached features of ``dataset``: loaded if an intact cache exists, else built (see module doc).

    ``device`` only matters for building (where the backbone runs); use
    ``CachedFeatures.to_torch(device)`` to place the arrays for training.
    """
    key = cache_key(dataset, backbone_name, output_stride)
    final = _features_root(cache_dir) / key
    if final.exists():
        try:
            cached = _open(final, key, verify)
            log.debug("feature cache %s loaded", final)
            return cached
        except CacheCorruptError as e:
            log.warning("feature cache %s is corrupt (%s); rebuilding it", final, e)
    return build_feature_cache(dataset, backbone_name, output_stride, cache_dir, batch_size, device, progress)


def cache_nbytes_per_image(backbone_name: str, height: int, width: int, output_stride: int = 16) -> int:
    """Bytes one image takes in the cache (float16 features + uint8 labels), headers excluded."""
    h, w = output_size(height, width, output_stride)
    return feature_channels(backbone_name) * h * w * 2 + height * width


__all__ = [
    "CacheCorruptError", "CachedFeatures", "SegmentationDataset", "build_feature_cache", "cache_key",
    "cache_nbytes_per_image", "default_cache_dir", "key_fields", "load_feature_cache", "load_or_build",
]
