"""The default digit-scene dataset: content, determinism, disjoint splits, verified inputs, cache, CLI."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from proxy import assets as A
from proxy import data as D
from proxy import scenes as S
from proxy import store

TEST = S.SCENE_PRESETS["test"]


Sets = tuple[S.SceneDataset, S.SceneDataset, S.SceneDataset]


@pytest.fixture(scope="module")
def test_sets(tmp_path_factory: pytest.TempPathFactory) -> Sets:
    return S.build_scenes("test", tmp_path_factory.mktemp("cache"))


def test_mnist_file_is_parsed_with_label_in_last_column() -> None:
    digits = A.load_digits()
    assert digits.glyphs.shape == (5000, 28, 28)
    assert digits.glyphs.dtype == np.float32 and 0 <= digits.glyphs.min() and digits.glyphs.max() <= 1
    assert np.bincount(digits.labels).tolist() == [500] * 10
    # Real glyphs: ink is centred in the 28x28 box (MNIST's 20x20 centre-of-mass layout)
    ink = digits.glyphs.mean(axis=0)
    assert ink[4:24, 4:24].sum() > 0.95 * ink.sum()
    # a "1" has much less ink than a "0"
    assert digits.glyphs[digits.labels == 1].mean() < 0.7 * digits.glyphs[digits.labels == 0].mean()


def test_digit_pools_are_disjoint_and_cover_every_class() -> None:
    labels = A.load_digits().labels
    pools = A.digit_pools(labels, 100, 150)
    train, val, test = (np.concatenate(pools[s]) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (2500, 1000, 1500)
    assert not set(train.tolist()) & set(val.tolist())
    assert not set(train.tolist()) & set(test.tolist()) and not set(val.tolist()) & set(test.tolist())
    assert len(set(train.tolist()) | set(val.tolist()) | set(test.tolist())) == 5000
    for d in range(10):
        for split in ("train", "val", "test"):
            assert (labels[pools[split][d]] == d).all()
        assert len(pools["val"][d]) == 100 and len(pools["test"][d]) == 150
    with pytest.raises(ValueError, match="cannot hold out"):
        A.digit_pools(labels, 300, 200)


def test_datasets_follow_the_contract(test_sets: Sets) -> None:
    train, val, test = test_sets
    assert (len(train), len(val), len(test)) == (TEST.n_train, TEST.n_val, TEST.n_test)
    for ds, split in ((train, "train"), (val, "val"), (test, "test")):
        assert isinstance(ds, D.SegmentationDataset)
        assert ds.name.startswith("scenes-") and ds.name.endswith(f"-{split}")
        assert ds.num_classes == 11 and ds.class_names == ["background"] + [str(d) for d in range(10)]
        image, mask = ds[0]
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        assert mask.shape == (128, 128) and mask.dtype == np.uint8
        assert int(np.asarray(ds.masks).max()) < 11
        assert not image.flags.writeable  # read-only mmap views: nobody corrupts the cache
    assert len({train.name, val.name, test.name}) == 3
    classes = np.unique(np.asarray(train.masks))
    assert classes[0] == 0 and len(classes) == 11  # every digit class appears in 32 scenes
    with pytest.raises(IndexError):
        train[len(train)]


def test_mask_labels_match_the_pasted_digits(test_sets: Sets) -> None:
    train = test_sets[0]
    labels = A.load_digits().labels
    for i in range(len(train)):
        _, mask = train[i]
        recs = train.digits_of(i)
        assert len(recs) >= 1
        cols = {name: recs[:, k] for k, name in enumerate(S.DIGIT_FIELDS)}
        assert (labels[cols["mnist_index"]] + 1 == cols["class_id"]).all()
        # every labelled pixel belongs to a digit present in the scene, and visible counts add up
        present = set(np.unique(mask).tolist()) - {0}
        assert present <= set(cols["class_id"].tolist())
        assert (mask > 0).sum() == cols["visible"].sum()
        for cid in present:
            assert (mask == cid).sum() == cols["visible"][cols["class_id"] == cid].sum()


def _assert_disjoint(splits: dict[str, tuple[set[int], set[int]]], config: S.SceneConfig) -> None:
    """``splits``: split -> (glyph ids, photo ids) used by its scenes."""
    pools = A.digit_pools(A.load_digits().labels, config.val_digits_per_class, config.test_digits_per_class)
    names = [p.name for p in A.photos()]
    for split, (glyphs, photo_ids) in splits.items():
        assert glyphs and photo_ids
        assert glyphs <= set(np.concatenate(pools[split]).tolist())
        assert {A.photo(names[i]).split for i in photo_ids} == {split}
        assert {names[i] for i in photo_ids} <= set(S.split_backgrounds(config, split))
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not splits[a][0] & splits[b][0], f"{a} and {b} share glyphs"
        assert not splits[a][1] & splits[b][1], f"{a} and {b} share photos"


def test_the_three_test_preset_splits_use_disjoint_glyphs_and_photos(test_sets: Sets) -> None:
    splits = {ds.name.rsplit("-", 1)[1]: (ds.glyph_ids(), ds.photo_ids()) for ds in test_sets}
    assert list(splits) == ["train", "val", "test"]
    _assert_disjoint(splits, TEST)
    assert len(splits["train"][1]) >= 10  # 32 scenes draw on many of the 25 train photos
    photo_col = S.DIGIT_FIELDS.index("photo")
    assert any((ds.digits[:, photo_col] >= 0).any() for ds in test_sets)  # some digits are textured


def test_the_default_preset_splits_use_disjoint_glyphs_and_photos() -> None:
    """The default preset's pools and photo assignment (all of them, not only what a few scenes
    drew), and the records of a few generated scenes of each split."""
    cfg = S.SCENE_PRESETS["default"]
    pools = A.digit_pools(A.load_digits().labels, cfg.val_digits_per_class, cfg.test_digits_per_class)
    whole = {s: (set(np.concatenate(pools[s]).tolist()), {A.photo(n).index for n in S.split_backgrounds(cfg, s)})
             for s in ("train", "val", "test")}
    _assert_disjoint(whole, cfg)
    assert {s: len(p) for s, (_, p) in whole.items()} == {"train": 25, "val": 9, "test": 25}
    assert set().union(*(p for _, p in whole.values())) == set(range(len(A.photos())))
    drawn: dict[str, tuple[set[int], set[int]]] = {}
    for split in ("train", "val", "test"):
        glyphs, photo_ids = set(), set()
        for i in range(3):
            _, _, recs, background = S._make_scene(cfg, split, i)
            glyphs |= set(recs[:, 0].tolist())
            photo_ids |= {background} | (set(recs[:, S.DIGIT_FIELDS.index("photo") - 1].tolist()) - {-1})
        drawn[split] = (glyphs, photo_ids)
    _assert_disjoint(drawn, cfg)


def test_same_seed_same_scenes_other_seed_other_scenes(tmp_path: Path) -> None:
    a_img, a_mask, a_dig = S.make_scene(TEST, "train", 3)
    b_img, b_mask, b_dig = S.make_scene(TEST, "train", 3)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_mask, b_mask) and np.array_equal(a_dig, b_dig)
    other = dataclasses.replace(TEST, seed=1)
    c_img, c_mask, _ = S.make_scene(other, "train", 3)
    assert not np.array_equal(a_img, c_img) and not np.array_equal(a_mask, c_mask)
    v_img, _, _ = S.make_scene(TEST, "val", 3)
    t_img, _, _ = S.make_scene(TEST, "test", 3)
    assert not np.array_equal(a_img, v_img) and not np.array_equal(v_img, t_img)
    assert S.scene_key(TEST) == S.scene_key(dataclasses.replace(TEST))
    assert S.scene_key(TEST) != S.scene_key(other)
    assert S.scene_key(TEST) != S.scene_key(dataclasses.replace(TEST, max_occlusion=0.4))
    for sizes in ({"n_train": 33}, {"n_val": 17}, {"n_test": 17}, {"test_digits_per_class": 99}):
        assert S.scene_key(TEST) != S.scene_key(dataclasses.replace(TEST, **sizes)), sizes
    # a whole build in a fresh cache reproduces the same bytes
    train, _, _ = S.build_scenes(TEST, tmp_path)
    assert np.array_equal(train[3][0], a_img) and np.array_equal(train[3][1], a_mask)


def test_hull_labels_cover_the_convex_hull_of_the_strokes() -> None:
    """One digit per scene: the same draw with stroke and with hull labels (labels consume no
    randomness), so the hull mask must be exactly the convex hull of the stroke mask."""
    from skimage.morphology import convex_hull_image

    one = dataclasses.replace(TEST, min_digits=1, max_digits=1, label="stroke")
    interiors = []
    for i in range(6):
        s_img, s_mask, s_rec = S.make_scene(one, "train", i)
        h_img, h_mask, h_rec = S.make_scene(dataclasses.replace(one, label="hull"), "train", i)
        assert np.array_equal(s_img, h_img) and np.array_equal(s_rec[:, :-1], h_rec[:, :-1])
        strokes, hull = s_mask > 0, h_mask > 0
        assert np.array_equal(hull, convex_hull_image(strokes) | strokes)
        assert set(np.unique(h_mask)) == set(np.unique(s_mask))  # same class, just more pixels
        assert h_rec[0, -1] == hull.sum() and s_rec[0, -1] == strokes.sum()
        interiors.append(hull.sum() / strokes.sum())
    assert np.median(interiors) > 1.5  # most of a digit's area is not stroke
    assert S.SCENE_PRESETS["default"].label == "hull"
    with pytest.raises(ValueError, match="label must be"):
        dataclasses.replace(TEST, label="box")


def test_parallel_generation_gives_the_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = dataclasses.replace(TEST, n_train=24, n_val=4, n_test=4)
    serial, _, _ = S.build_scenes(cfg, tmp_path / "serial")
    monkeypatch.setattr(S, "_SCENES_PER_WORKER", 8)
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    chunks = list(S._scenes(cfg, "train", 24))
    assert len(chunks) == 24
    parallel, _, _ = S.build_scenes(cfg, tmp_path / "parallel")
    assert np.array_equal(np.asarray(serial.images), np.asarray(parallel.images))
    assert np.array_equal(np.asarray(serial.masks), np.asarray(parallel.masks))
    assert np.array_equal(serial.digits, parallel.digits)
    assert np.array_equal(serial.backgrounds, parallel.backgrounds)


def test_default_preset_spans_scales_from_tiny_to_most_of_the_image() -> None:
    cfg = S.SCENE_PRESETS["default"]
    assert cfg.image_size == (513, 513)
    heights, visible_heights = [], []
    for i in range(4):
        image, mask, recs = S.make_scene(cfg, "train", i)
        assert image.shape == (513, 513, 3) and mask.shape == (513, 513)
        heights += recs[:, 4].tolist()
        # measure heights on the mask itself (rows covered by each visible class), not metadata
        for cid in np.unique(mask[mask > 0]):
            rows = np.flatnonzero((mask == cid).any(axis=1))
            visible_heights.append(rows[-1] - rows[0] + 1)
    assert max(heights) / min(heights) > 5
    assert max(heights) > 0.4 * 513 and min(heights) < 0.15 * 513
    assert max(visible_heights) / min(visible_heights) > 5


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="min_digits"):
        dataclasses.replace(TEST, min_digits=6, max_digits=2)
    with pytest.raises(ValueError, match="unknown background"):
        dataclasses.replace(TEST, backgrounds=("nope",))
    with pytest.raises(ValueError, match="name no test photo"):
        dataclasses.replace(TEST, backgrounds=A.photo_names("train") + A.photo_names("val"))
    with pytest.raises(ValueError, match="n_test"):
        dataclasses.replace(TEST, n_test=0)
    with pytest.raises(ValueError, match="test_digits_per_class"):
        dataclasses.replace(TEST, val_digits_per_class=300, test_digits_per_class=200)
    with pytest.raises(ValueError, match="unknown scene preset"):
        S.build_scenes("huge")
    cfg = S.SceneConfig.from_dict(json.loads(json.dumps(TEST.to_dict())))
    assert cfg == TEST


def test_default_cache_dir_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DPC_NAS_CACHE", str(tmp_path / "c"))
    assert store.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("DPC_NAS_CACHE")
    assert store.default_cache_dir() == Path.home() / ".cache" / "dpc-nas"


def _cache_dir(root: Path) -> Path:
    (d,) = [p for p in root.iterdir() if p.name.startswith("scenes-")]
    return d


def _entries(root: Path) -> list[str]:
    """What a cache dir holds, less the publish lock files (``.<name>.lock``, kept for reuse)."""
    return sorted(p.name for p in root.iterdir() if not p.name.endswith(".lock"))


def test_cache_is_reused_without_regenerating(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train, _, _ = S.build_scenes(TEST, tmp_path)
    d = _cache_dir(tmp_path)
    mtimes = {p.name: p.stat().st_mtime_ns for p in d.iterdir()}
    assert {"manifest.json", "train_images.npy", "train_masks.npy", "val_images.npy", "test_images.npy",
            "test_backgrounds.npy"} <= set(mtimes)

    def boom(*args: object) -> None:
        raise AssertionError("regenerated although the cache was intact")

    monkeypatch.setattr(S, "_generate", boom)
    train2, _, _ = S.build_scenes(TEST, tmp_path)
    assert {p.name: p.stat().st_mtime_ns for p in d.iterdir()} == mtimes
    assert train2.name == train.name and np.array_equal(train2[5][0], train[5][0])
    assert _entries(tmp_path) == [d.name]  # no temp dirs left behind


@pytest.mark.parametrize("damage", ["truncate", "flip", "no_manifest", "bad_manifest"])
def test_damaged_cache_is_detected_and_rebuilt(tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    train, _, _ = S.build_scenes(TEST, tmp_path)
    reference = np.array(train.images)
    del train
    d = _cache_dir(tmp_path)
    target = d / "train_images.npy"
    if damage == "truncate":
        with open(target, "r+b") as fh:
            fh.truncate(target.stat().st_size // 2)
    elif damage == "flip":
        raw = bytearray(target.read_bytes())
        raw[-100] ^= 0xFF
        target.write_bytes(bytes(raw))
    elif damage == "no_manifest":
        (d / "manifest.json").unlink()
    else:
        (d / "manifest.json").write_text("{not json")
    with caplog.at_level("WARNING", logger="proxy.store"):
        train, _, _ = S.build_scenes(TEST, tmp_path)
    assert "is corrupt" in caplog.text and "rebuilding" in caplog.text
    assert np.array_equal(np.asarray(train.images), reference)
    assert _entries(tmp_path) == [d.name]  # corrupt copy removed


def test_losing_a_publish_race_keeps_the_winners_intact_copy(tmp_path: Path) -> None:
    S.build_scenes(TEST, tmp_path)
    final = _cache_dir(tmp_path)
    mtimes = {p.name: p.stat().st_mtime_ns for p in final.iterdir()}
    store.build(final, S.scene_key(TEST), lambda tmp: S._generate(tmp, TEST, False))  # a second builder
    assert {p.name: p.stat().st_mtime_ns for p in final.iterdir()} == mtimes
    assert _entries(tmp_path) == [final.name]  # the loser's copy is deleted


def test_leftovers_of_killed_builders_are_cleaned(tmp_path: Path) -> None:
    name = f"scenes-{S.scene_key(TEST)}"
    old, fresh = tmp_path / f".{name}.tmp-old", tmp_path / f".{name}.tmp-fresh"
    old.mkdir()
    fresh.mkdir()
    (old / "train_images.npy").write_bytes(b"partial")
    os.utime(old, (0, 0))
    S.build_scenes(TEST, tmp_path)
    assert not old.exists() and fresh.exists()  # a recent one may belong to a live builder


def _build_in_subprocess(cache: str) -> str:
    train, _, _ = S.build_scenes("test", cache)
    return train.name + str(int(np.asarray(train.masks).sum()))


def test_concurrent_builders_do_not_corrupt_the_cache(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.map(_build_in_subprocess, [str(tmp_path)] * 2)
    assert results[0] == results[1]
    assert _entries(tmp_path) == [_cache_dir(tmp_path).name]
    train, _, _ = S.build_scenes("test", tmp_path)
    assert train.name + str(int(np.asarray(train.masks).sum())) == results[0]


def test_preview_writes_a_nontrivial_png(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "sub" / "scenes.png"
    assert D.main(["preview", "--preset", "test", "--out", str(out), "-n", "3", "--split", "val"]) == 0
    assert str(out) in capsys.readouterr().out
    with Image.open(out) as im:
        png = np.asarray(im.convert("RGB"))
    assert png.shape[0] > 200 and png.shape[1] > 400
    assert png.std() > 20  # not blank
    # the mask palette colours of several digit classes appear in the figure
    pal = D.class_colours()
    colours = {tuple(c) for c in png.reshape(-1, 3)[:: 7].tolist()}
    assert sum(tuple(pal[c].tolist()) in colours for c in range(1, 11)) >= 2


def test_info_prints_statistics(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert D.main(["info", "--preset", "test", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "32 scenes 128x128" in out and "pixel share: background" in out
    assert "-val: 16 scenes" in out and "-test: 16 scenes" in out and "photos (9): " in out
    assert "train/val: 0 glyphs, 0 photos; train/test: 0 glyphs, 0 photos; val/test: 0 glyphs, 0 photos" in out


@pytest.mark.parametrize(
    "argv", [["preview", "-n", "0"], ["preview", "--preset", "huge"], ["nope"], [], ["info", "--seed", "x"]]
)
def test_cli_bad_arguments_give_one_line_errors(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        D.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err
