"""Three splits from every ``--dataset`` spec, and feature-cache keys that name where features were made."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_folders import make_cityscapes, make_voc

from proxy import cache as C
from proxy.folders import half_of
from proxy.sources import load_datasets


@pytest.mark.parametrize("spec, preset", [("scenes:test", "default"), (None, "test")])
def test_scenes_give_train_val_and_test(tmp_path: Path, spec: str | None, preset: str) -> None:
    splits = load_datasets(spec, preset, tmp_path)
    assert len(splits) == 3
    assert [ds.name.rsplit("-", 1)[1] for ds in splits] == ["train", "val", "test"]
    assert [len(ds) for ds in splits] == [32, 16, 16]


def _masks(ids: list[str]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {i: rng.choice(np.r_[0, 7, 15, 255], size=(20, 30)).astype(np.uint8) for i in ids}


IDS = [f"2007_{i:06d}" for i in range(1, 13)]


def _stems(ds) -> list[str]:
    return [image.stem for image, _ in ds.pairs]


def test_a_voc_folder_without_test_masks_halves_val_by_a_hash_of_the_image_id(tmp_path: Path) -> None:
    root = tmp_path / "VOC2012"
    make_voc(root, _masks(IDS), {"train": IDS[:4], "val": IDS[4:]})
    train, val, test = load_datasets(f"voc:{root}", cache_dir=tmp_path)
    assert _stems(train) == IDS[:4]
    assert sorted(_stems(val) + _stems(test)) == IDS[4:] and not set(_stems(val)) & set(_stems(test))
    assert all(half_of(s) == "val" for s in _stems(val)) and all(half_of(s) == "test" for s in _stems(test))
    assert len(val) >= 2 and len(test) >= 2
    assert val.name.startswith("voc-val.valhalf-") and test.name.startswith("voc-val.testhalf-")
    image, mask = test[0]
    assert image.shape == (513, 513, 3) and mask.shape == (513, 513) and (mask[20:] == 255).all()
    # a VOC2012-like test list whose images have no masks: still the halves
    (root / "ImageSets" / "Segmentation" / "test.txt").write_text("2009_000001\n")
    Image.new("RGB", (30, 20)).save(root / "JPEGImages" / "2009_000001.jpg")
    assert [ds.name for ds in load_datasets(f"voc:{root}", cache_dir=tmp_path)] == [train.name, val.name, test.name]
    # the rule depends on each id only: a longer val list moves no image between halves
    more = IDS[4:] + [f"2008_{i:06d}" for i in range(1, 9)]
    make_voc(root, _masks(more), {"val": more})
    _, val2, test2 = load_datasets(f"voc:{root}", cache_dir=tmp_path)
    assert set(_stems(val)) <= set(_stems(val2)) and set(_stems(test)) <= set(_stems(test2))


def test_a_voc_folder_with_a_labelled_test_split_uses_it(tmp_path: Path) -> None:
    root = tmp_path / "VOC2012"
    make_voc(root, _masks(IDS), {"train": IDS[:4], "val": IDS[4:8], "test": IDS[8:]})
    train, val, test = load_datasets(f"voc:{root}")
    assert (_stems(val), _stems(test)) == (IDS[4:8], IDS[8:])
    assert test.name.startswith("voc-test-")


def test_a_val_split_with_an_empty_half_is_a_one_line_error(tmp_path: Path) -> None:
    root = tmp_path / "VOC2012"
    make_voc(root, _masks(IDS[:2]), {"train": IDS[:2], "val": ["2007_000002"]})
    with pytest.raises(ValueError) as exc:
        load_datasets(f"voc:{root}")
    text = str(exc.value)
    assert "\n" not in text and "none in its test half" in text and "1 image" in text


def test_cityscapes_unlabelled_test_masks_are_not_a_test_split(tmp_path: Path) -> None:
    make_cityscapes(tmp_path, "train", "trainIds")
    make_cityscapes(tmp_path, "val", "trainIds", seed=1)
    make_cityscapes(tmp_path, "test", "labelIds", seed=2)
    for mask in (tmp_path / "gtFine" / "test").glob("*/*_labelIds.png"):
        Image.fromarray(np.zeros((32, 64), np.uint8)).save(mask)  # the public test set: all "unlabeled"
    _, val, test = load_datasets(f"cityscapes:{tmp_path}")
    assert test.name.startswith("cityscapes-val.testhalf-")
    assert sorted(len(ds) for ds in (val, test)) == [1, 2]
    make_cityscapes(tmp_path, "test", "labelIds", seed=2)  # real labels: the folder's own test split
    _, val, test = load_datasets(f"cityscapes:{tmp_path}")
    assert test.name.startswith("cityscapes-test-") and len(val) == len(test) == 3


class _Tiny:
    name, num_classes, class_names = "tiny", 2, ["a", "b"]

    def __len__(self) -> int:
        return 1

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((33, 33, 3), np.uint8), np.zeros((33, 33), np.uint8)


def test_feature_cache_key_names_device_dtype_and_library_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    ds = _Tiny()
    cpu = C.key_fields(ds, device="cpu")
    assert cpu["device"] == "cpu" and cpu["dtype"] == "float32"
    assert cpu["torch"] == torch.__version__ and {"pillow", "numpy"} <= set(cpu)
    cuda = C.key_fields(ds, device="cuda")  # builds no tensor: no GPU needed
    assert cuda["device"] == "cuda" and cuda["dtype"] in ("tf32", "float32")
    assert C.cache_key(ds, device="cpu") != C.cache_key(ds, device="cuda")
    assert C.cache_key(ds, device="cpu") == C.cache_key(ds, device=torch.device("cpu"))
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        assert C.key_fields(ds, device="cuda")["dtype"] == "float32"
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=True):
        tf32 = C.cache_key(ds, device="cuda")
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        assert C.cache_key(ds, device="cuda") != tf32
    base = C.cache_key(ds, device="cpu")
    monkeypatch.setattr(C, "_conv_dtype", lambda device: "bf16")
    assert C.cache_key(ds, device="cpu") != base
    monkeypatch.setattr(torch, "__version__", "0.0.0")
    assert C.key_fields(ds, device="cpu")["torch"] == "0.0.0"
    # the default device is the one load_or_build builds on
    default = "cuda" if torch.cuda.is_available() else "cpu"
    assert C.key_fields(ds)["device"] == default
