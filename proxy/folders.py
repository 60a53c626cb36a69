"""Real segmentation datasets already on the user's disk: Pascal-VOC and Cityscapes layouts.

Both follow the ``proxy.data.SegmentationDataset`` contract (HxWx3 uint8 RGB image, HxW uint8
mask, 255 = ignore) and can bring every item to one fixed size, which the feature cache needs:

- ``"resize"``: stretch to the size (image bilinear, mask nearest);
- ``"crop"``: scale so the image covers the size (aspect kept), then centre-crop;
- ``"pad"``: scale down only if larger (aspect kept), then pad bottom/right with black pixels
  and ignore (255) labels, as DeepLab evaluates PASCAL at 513x513.

Nothing is downloaded: a missing folder or file is a one-line error naming the path.

Three splits (``folder_splits``): train, val and test. A folder's own test split is used when it
exists with labelled masks (every listed image has a mask, and the first mask has a label other
than 255: Cityscapes' public test masks are all "unlabeled"); otherwise its val split is halved:
an image goes to the test half when the first byte of ``sha256(<image id>)`` is odd
(``half_of``; the id is the file stem, e.g. ``2007_000033`` for VOC and
``frankfurt_000000_000294`` for Cityscapes). The rule looks only at the image's own id, so a val list that grows never moves an
image from one half to the other.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

IGNORE_INDEX = 255
Mode = Literal["resize", "crop", "pad"]

VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]  # fmt: skip

CITYSCAPES_CLASSES = [
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
]  # fmt: skip

# Cityscapes labelIds -> trainIds (cityscapesScripts helpers/labels.py); all others -> 255.
_CITYSCAPES_ID_TO_TRAIN = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
    26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
CITYSCAPES_LABEL_TO_TRAIN = np.full(256, IGNORE_INDEX, np.uint8)
for _label_id, _train_id in _CITYSCAPES_ID_TO_TRAIN.items():
    CITYSCAPES_LABEL_TO_TRAIN[_label_id] = _train_id


def voc_palette() -> np.ndarray:
    """The standard VOC colour map, (256, 3) uint8 (index 255 = border colour)."""
    pal = np.zeros((256, 3), np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


def fit_pair(image: Image.Image, mask: Image.Image, size: tuple[int, int], mode: Mode) -> tuple[Image.Image, Image.Image]:
    """Bring an (image, mask) pair to ``size`` = (H, W); masks always use nearest resampling."""
    H, W = size
    w, h = image.size
    if mode == "resize":
        scale_w, scale_h = W / w, H / h
    elif mode == "crop":
        scale_w = scale_h = max(W / w, H / h)
    elif mode == "pad":
        scale_w = scale_h = min(1.0, W / w, H / h)
    else:
        raise ValueError(f"unknown mode {mode!r}; choose from resize, crop, pad")
    new = (max(1, round(w * scale_w)), max(1, round(h * scale_h)))
    if new != (w, h):
        image = image.resize(new, Image.Resampling.BILINEAR)
        mask = mask.resize(new, Image.Resampling.NEAREST)
    if mode == "crop":
        left, top = (new[0] - W) // 2, (new[1] - H) // 2
        image, mask = image.crop((left, top, left + W, top + H)), mask.crop((left, top, left + W, top + H))
    elif mode == "pad":
        canvas, labels = Image.new("RGB", (W, H)), Image.new("L", (W, H), IGNORE_INDEX)
        canvas.paste(image, (0, 0))
        labels.paste(mask, (0, 0))
        image, mask = canvas, labels
    return image, mask


class _FolderDataset:
    """Shared machinery: a list of (image path, mask path) pairs, validation, fixed size."""

    prefix = "folder"
    num_classes = 0
    class_names: list[str] = []

    def __init__(self, root: Path, split: str, pairs: list[tuple[Path, Path]], size: tuple[int, int] | None, mode: Mode) -> None:
        if not pairs:
            raise ValueError(f"no images found for split {split!r} under {root}")
        if size is not None and (len(size) != 2 or min(size) < 1):
            raise ValueError(f"size must be (H, W) with positive ints, got {size}")
        if mode not in ("resize", "crop", "pad"):
            raise ValueError(f"unknown mode {mode!r}; choose from resize, crop, pad")
        self.root, self.split, self.pairs = root, split, pairs
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.mode = mode
        self.class_names = list(self.class_names)
        self.name = f"{self.prefix}-{split}-{self._fingerprint()}"

    def _fingerprint(self) -> str:
        """Hash of root, split, size/mode and every file's name, size and mtime: any change to
        the files or the preprocessing gives a new ``name`` (and so a new feature cache)."""
        h = hashlib.sha256(f"{self.root.resolve()}|{self.split}|{self.size}|{self.mode}".encode())
        for image_path, mask_path in self.pairs:
            for p in (image_path, mask_path):
                st = p.stat()
                h.update(f"|{p.relative_to(self.root)}:{st.st_size}:{st.st_mtime_ns}".encode())
        return h.hexdigest()[:12]

    def __len__(self) -> int:
        return len(self.pairs)

    def subset(self, pairs: list[tuple[Path, Path]], split: str) -> "_FolderDataset":
        """The same folder and preprocessing restricted to ``pairs``, named after ``split``."""
        if not pairs:
            raise ValueError(f"no images left for split {split!r} under {self.root}")
        sub = copy.copy(self)
        sub.split, sub.pairs = split, list(pairs)
        sub.name = f"{sub.prefix}-{split}-{sub._fingerprint()}"
        return sub

    def _read_mask(self, path: Path) -> np.ndarray:
        with Image.open(path) as im:
            if im.mode not in ("P", "L"):
                raise ValueError(f"{path}: mask must be a palette or greyscale PNG of class ids, got mode {im.mode}")
            return np.array(im)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, mask_path = self.pairs[i]
        with Image.open(image_path) as im:
            image = im.convert("RGB")
        labels = self._read_mask(mask_path)
        if labels.shape != (image.height, image.width):
            raise ValueError(f"{mask_path}: mask is {labels.shape[1]}x{labels.shape[0]}, image is {image.width}x{image.height}")
        bad = (labels >= self.num_classes) & (labels != IGNORE_INDEX)
        if bad.any():
            raise ValueError(f"{mask_path}: label {int(labels[bad].max())} outside 0..{self.num_classes - 1} and 255")
        mask = Image.fromarray(labels)
        if self.size is not None:
            image, mask = fit_pair(image, mask, self.size, self.mode)
        return np.asarray(image, dtype=np.uint8), np.asarray(mask, dtype=np.uint8)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r}, split={self.split!r}, n={len(self)}, size={self.size})"


class VOCFolder(_FolderDataset):
    """Pascal-VOC layout: ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png`` (palette
    index = class id, 255 = border/ignore), ids listed in ``ImageSets/Segmentation/<split>.txt``.

    ``root`` is the folder holding those three (``.../VOC2012``), or a parent containing
    ``VOCdevkit/VOC2012``. ``mask_dir`` selects e.g. ``SegmentationClassAug`` (SBD-augmented).
    """

    prefix = "voc"
    num_classes = 21
    class_names = VOC_CLASSES

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        size: tuple[int, int] | None = None,
        mode: Mode = "resize",
        mask_dir: str = "SegmentationClass",
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"VOC root {root} does not exist")
        if not (root / "JPEGImages").is_dir() and (root / "VOCdevkit" / "VOC2012").is_dir():
            root = root / "VOCdevkit" / "VOC2012"
        for sub in ("JPEGImages", mask_dir):
            if not (root / sub).is_dir():
                raise FileNotFoundError(f"VOC folder {root / sub} does not exist")
        list_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not list_file.is_file():
            raise FileNotFoundError(f"VOC split list {list_file} does not exist")
        pairs = []
        for line in list_file.read_text().split("\n"):
            if not (stem := line.strip()):
                continue
            image_path, mask_path = root / "JPEGImages" / f"{stem}.jpg", root / mask_dir / f"{stem}.png"
            for p in (image_path, mask_path):
                if not p.is_file():
                    raise FileNotFoundError(f"{p} (listed in {list_file}) does not exist")
            pairs.append((image_path, mask_path))
        super().__init__(root, split, pairs, size, mode)


class CityscapesFolder(_FolderDataset):
    """Cityscapes layout: ``leftImg8bit/<split>/<city>/<x>_leftImg8bit.png`` with
    ``gtFine/<split>/<city>/<x>_gtFine_labelTrainIds.png`` (19 trainIds, 255 ignore). Where only
    ``*_gtFine_labelIds.png`` exist, labelIds are mapped to trainIds with the standard table.
    """

    prefix = "cityscapes"
    num_classes = 19
    class_names = CITYSCAPES_CLASSES

    def __init__(
        self, root: str | os.PathLike, split: str = "train", size: tuple[int, int] | None = None, mode: Mode = "resize"
    ) -> None:
        root = Path(root)
        image_dir, gt_dir = root / "leftImg8bit" / split, root / "gtFine" / split
        for d in (root, image_dir, gt_dir):
            if not d.is_dir():
                raise FileNotFoundError(f"Cityscapes folder {d} does not exist")
        pairs: list[tuple[Path, Path]] = []
        for image_path in sorted(image_dir.glob("*/*_leftImg8bit.png")):
            stem = image_path.name[: -len("_leftImg8bit.png")]
            base = gt_dir / image_path.parent.name / stem
            train_ids, label_ids = Path(f"{base}_gtFine_labelTrainIds.png"), Path(f"{base}_gtFine_labelIds.png")
            if train_ids.is_file():
                pairs.append((image_path, train_ids))
            elif label_ids.is_file():
                pairs.append((image_path, label_ids))
            else:
                raise FileNotFoundError(f"no mask for {image_path}: expected {train_ids} or {label_ids}")
        super().__init__(root, split, pairs, size, mode)

    def _read_mask(self, path: Path) -> np.ndarray:
        labels = super()._read_mask(path)
        if path.name.endswith("_gtFine_labelIds.png"):
            labels = CITYSCAPES_LABEL_TO_TRAIN[labels]
        return labels



def half_of(image_id: str) -> str:
    """``"test"`` if the first byte of sha256(image_id) is odd, else ``"val"``."""
    return "test" if hashlib.sha256(image_id.encode()).digest()[0] % 2 else "val"


def split_halves(val: _FolderDataset) -> tuple[_FolderDataset, _FolderDataset]:
    """A val split halved into (val half, test half) by ``half_of(<image file stem>)``."""
    halves: dict[str, list[tuple[Path, Path]]] = {"val": [], "test": []}
    for pair in val.pairs:
        stem = pair[0].name[: -len("_leftImg8bit.png")] if pair[0].name.endswith("_leftImg8bit.png") else pair[0].stem
        halves[half_of(stem)].append(pair)
    for part, pairs in halves.items():
        if not pairs:
            raise ValueError(
                f"the {val.split} split of {val.root} has {len(val)} image(s), none in its {part} half; "
                f"it needs images in both halves (or a test split with masks)")
    return val.subset(halves["val"], f"{val.split}.valhalf"), val.subset(halves["test"], f"{val.split}.testhalf")


def _labelled(ds: _FolderDataset) -> bool:
    """Whether the first mask of ``ds`` labels any pixel (not all ignore)."""
    return bool((ds._read_mask(ds.pairs[0][1]) != IGNORE_INDEX).any()) if ds.pairs else False


def folder_splits(kind: str, root: str | os.PathLike, size: tuple[int, int] | None = None,
                  mode: Mode = "resize") -> tuple[_FolderDataset, _FolderDataset, _FolderDataset]:
    """``(train, val, test)`` of a ``"voc"`` or ``"cityscapes"`` folder (module docstring)."""
    classes = {"voc": VOCFolder, "cityscapes": CityscapesFolder}
    if kind not in classes:
        raise ValueError(f"unknown folder kind {kind!r}; choose from {sorted(classes)}")
    cls = classes[kind]
    train, val = cls(root, split="train", size=size, mode=mode), cls(root, split="val", size=size, mode=mode)
    try:
        test = cls(root, split="test", size=size, mode=mode)
    except (FileNotFoundError, ValueError) as e:
        log.info("%s: no test split with masks (%s); halving val into val and test", root, e)
    else:
        if _labelled(test):
            return train, val, test
        log.info("%s: the test split's masks label nothing; halving val into val and test", root)
    return (train, *split_halves(val))
