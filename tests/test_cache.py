"""Feature cache: contents, reuse, keys, corruption handling, concurrent builders."""
from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import proxy.cache as cache_mod
from proxy.backbone import build_backbone, preprocess
from proxy.cache import cache_key, load_feature_cache, load_or_build

H, W = 64, 48  # OS16 features: 4 x 3


class TinyDataset:
    """Deterministic random images and masks (some pixels 255 = ignore)."""

    def __init__(self, name: str = "tiny", n: int = 3, barrier=None, counter=None) -> None:
        self.name, self.n = name, n
        self.num_classes, self.class_names = 3, ["bg", "a", "b"]
        self.barrier, self.counter = barrier, counter

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if self.counter is not None:
            with self.counter.get_lock():
                self.counter.value += 1
        if self.barrier is not None and i == self.n - 1:
            self.barrier.wait(timeout=60)  # both builders have computed everything: race to publish
        rng = np.random.default_rng(i)
        mask = rng.integers(0, 3, (H, W), dtype=np.uint8)
        mask[:3] = 255
        return rng.integers(0, 256, (H, W, 3), dtype=np.uint8), mask


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A cache dir holding one intact cache of TinyDataset(), built once for the module."""
    cache_dir = tmp_path_factory.mktemp("built")
    load_or_build(TinyDataset(), "lite0", 16, cache_dir=cache_dir, progress=False)
    return cache_dir


@pytest.fixture
def count_builds(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = cache_mod.build_backbone

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(cache_mod, "build_backbone", counting)
    return calls


def test_contents_match_a_direct_forward(tmp_path):
    ds = TinyDataset()
    cf = load_or_build(ds, "lite0", 16, cache_dir=tmp_path, progress=False)
    assert cf.features.shape == (3, 320, 4, 3) and cf.features.dtype == np.float16
    assert cf.labels.shape == (3, H, W) and cf.labels.dtype == np.uint8
    assert isinstance(cf.features, np.memmap) and cf.features.mode == "c"  # copy-on-write
    assert (cf.in_channels, cf.num_classes, cf.class_names) == (320, 3, ["bg", "a", "b"])
    assert (cf.backbone, cf.output_stride, len(cf)) == ("lite0", 16, 3)
    assert cf.path == tmp_path / "features" / cf.key and (cf.path / "manifest.json").is_file()
    images, masks = zip(*(ds[i] for i in range(len(ds))))
    np.testing.assert_array_equal(cf.labels, np.stack(masks))
    with torch.inference_mode():
        ref = build_backbone("lite0", 16)(preprocess(np.stack(images))).numpy()
    np.testing.assert_allclose(cf.features.astype(np.float32), ref, rtol=2e-3, atol=2e-3)
    feats, labels = cf.to_torch("cpu")
    assert feats.dtype == torch.float32 and labels.dtype == torch.uint8
    assert torch.equal(feats, torch.from_numpy(cf.features.astype(np.float32)))
    # a stray write (e.g. a test poisoning inputs) changes this process's copy, never the file
    cf.features[0, 0, 0, 0] = np.nan
    again = load_or_build(ds, "lite0", 16, cache_dir=tmp_path, progress=False)
    assert np.isfinite(again.features[0, 0, 0, 0]) and again.features[0, 0, 0, 0] == np.float16(ref[0, 0, 0, 0])


def test_second_call_reuses_the_cache(built, count_builds):
    ds = TinyDataset()
    first = load_or_build(ds, "lite0", 16, cache_dir=built, progress=False)
    second = load_or_build(ds, "lite0", 16, cache_dir=built, progress=False, verify="full")
    assert len(count_builds) == 0 and second.key == first.key
    np.testing.assert_array_equal(second.features, first.features)
    assert load_feature_cache(first.path).key == first.key


def test_key_depends_on_everything_the_features_depend_on():
    base = cache_key(TinyDataset(), "lite0", 16)
    assert base == cache_key(TinyDataset(), "lite0", 16)
    others = [cache_key(TinyDataset(), "lite0", 8), cache_key(TinyDataset(), "lite2", 16),
              cache_key(TinyDataset("other"), "lite0", 16), cache_key(TinyDataset(n=4), "lite0", 16)]
    assert len({base, *others}) == 5
    with pytest.raises(ValueError, match="lite7"):
        cache_key(TinyDataset(), "lite7", 16)


def _truncate(p: Path) -> None:
    with open(p / "features.npy", "r+b") as f:
        f.truncate(os.path.getsize(p / "features.npy") - 100)


def _flip(name: str, offset: int):
    def corrupt(p: Path) -> None:
        with open(p / name, "r+b") as f:
            f.seek(offset)
            b = f.read(1)
            f.seek(offset)
            f.write(bytes([b[0] ^ 0xFF]))
    return corrupt


def _edit_manifest(p: Path) -> None:
    m = json.loads((p / "manifest.json").read_text())
    m["files"]["labels.npy"]["bytes"] += 1
    (p / "manifest.json").write_text(json.dumps(m))


CORRUPTIONS = {
    "truncated features": _truncate,
    "flipped feature byte": _flip("features.npy", 5000),
    "flipped label byte": _flip("labels.npy", 2000),
    "flipped npy header": _flip("features.npy", 20),
    "missing manifest": lambda p: (p / "manifest.json").unlink(),
    "bad json": lambda p: (p / "manifest.json").write_text("{not json"),
    "manifest disagrees": _edit_manifest,
    "missing labels": lambda p: (p / "labels.npy").unlink(),
}


@pytest.mark.parametrize("what", list(CORRUPTIONS))
def test_corruption_is_detected_and_rebuilt(built, tmp_path, count_builds, caplog, what):
    ds = TinyDataset()
    key = cache_key(ds, "lite0", 16)
    expected = np.load(built / "features" / key / "features.npy")
    shutil.copytree(built, tmp_path, dirs_exist_ok=True)
    CORRUPTIONS[what](tmp_path / "features" / key)
    with caplog.at_level(logging.WARNING, logger="proxy.cache"):
        again = load_or_build(ds, "lite0", 16, cache_dir=tmp_path, progress=False)
    assert len(count_builds) == 1, "corrupt cache was used instead of rebuilt"
    assert any("corrupt" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    np.testing.assert_array_equal(again.features, expected)
    load_feature_cache(again.path, verify="full")  # the rebuilt cache is intact


def _build_in_child(cache_dir, barrier, counter, queue) -> None:
    torch.set_num_threads(1)
    ds = TinyDataset(barrier=barrier, counter=counter)
    cf = cache_mod.build_feature_cache(ds, "lite0", 16, cache_dir=cache_dir, progress=False)
    queue.put((str(cf.path), np.array(cf.features).tobytes()))


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs the fork start method")
def test_concurrent_builders_do_not_corrupt(tmp_path):
    ctx = mp.get_context("fork")
    barrier, counter, queue = ctx.Barrier(2), ctx.Value("i", 0), ctx.Queue()
    procs = [ctx.Process(target=_build_in_child, args=(tmp_path, barrier, counter, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert counter.value == 2 * 3, "both processes should have computed the features"
    (path_a, bytes_a), (path_b, bytes_b) = results
    assert path_a == path_b and bytes_a == bytes_b
    root = tmp_path / "features"
    assert sorted(d.name for d in root.iterdir() if d.is_dir()) == [Path(path_a).name]  # no temp dirs left
    cf = load_feature_cache(path_a, verify="full")
    assert cf.features.tobytes() == bytes_a


def test_stale_temp_dirs_are_swept(tmp_path):
    ds = TinyDataset("sweep", n=1)
    root = tmp_path / "features"
    key = cache_key(ds, device="cpu")  # the device the build below uses (CUDA would be the default)
    stale, fresh = root / f".{key}.tmp-old", root / f".{key}.tmp-new"
    for d in (stale, fresh):
        d.mkdir(parents=True)
    os.utime(stale, (0, 0))
    load_or_build(ds, cache_dir=tmp_path, progress=False, device="cpu")
    assert not stale.exists() and fresh.exists()  # a fresh one may belong to a running build


def test_mismatched_image_sizes_are_refused(tmp_path):
    class Ragged(TinyDataset):
        def __getitem__(self, i):
            img, mask = super().__getitem__(i)
            return (img[:-8], mask[:-8]) if i == 1 else (img, mask)

    with pytest.raises(ValueError, match="item 1"):
        load_or_build(Ragged("ragged"), "lite0", 16, cache_dir=tmp_path, progress=False, device="cpu")
    assert [d.name for d in (tmp_path / "features").iterdir() if d.is_dir()] == []


# --- NaN bytes anywhere in a large cache file (the old check hashed 64 blocks of 64 KiB) -------

BIG_N = 840  # 7680 feature bytes per image: features.npy is 6.2 MiB, over the old 4 MiB "hash it all" limit
NAN16 = np.array([np.nan], np.float16).tobytes()  # b"\x00\x7e": float16 0x7E00


class _FakeBackbone(torch.nn.Module):
    """Cheap deterministic stand-in (320 channels at OS16): a large cache built in a second."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.nn.functional.adaptive_avg_pool2d(x, (4, 3)).mean(1, keepdim=True)
        return pooled * torch.linspace(0.5, 1.5, 320).view(1, 320, 1, 1)


@pytest.fixture
def fake_backbone(monkeypatch) -> list[int]:
    calls: list[int] = []

    def build(*args, **kwargs):
        calls.append(1)
        return _FakeBackbone()

    monkeypatch.setattr(cache_mod, "build_backbone", build)
    return calls


@pytest.fixture(scope="module")
def big_built(tmp_path_factory) -> Path:
    cache_dir = tmp_path_factory.mktemp("big")
    with pytest.MonkeyPatch.context() as mp_:
        mp_.setattr(cache_mod, "build_backbone", lambda *a, **k: _FakeBackbone())
        load_or_build(TinyDataset("big", n=BIG_N), "lite0", 16, cache_dir=cache_dir, batch_size=64, progress=False)
    return cache_dir


def _old_sample_blocks(size: int) -> list[int]:
    """Start offsets of the 64 KiB blocks the previous version's "sample" check hashed."""
    step = (size - 2**16) / 63
    return [int(round(i * step)) for i in range(64)]


def _nan_offsets(size: int, header: int) -> dict[str, int]:
    blocks = _old_sample_blocks(size)
    gaps = {f"between old blocks {i} and {i + 1}": (blocks[i] + 2**16 + blocks[i + 1]) // 2 for i in (0, 17, 40, 62)}
    offsets = {"first value": header, "middle": size // 2, "last value": size - 2, **gaps}
    return {k: v - (v - header) % 2 for k, v in offsets.items()}  # on a float16 boundary


NAN_CASES = ["first value", "middle", "last value", "between old blocks 0 and 1", "between old blocks 17 and 18",
             "between old blocks 40 and 41", "between old blocks 62 and 63"]


@pytest.mark.parametrize("where", NAN_CASES)
def test_nan_bytes_anywhere_in_the_features_are_caught(big_built, tmp_path, fake_backbone, caplog, where):
    ds = TinyDataset("big", n=BIG_N)
    key = cache_key(ds, "lite0", 16)
    path = tmp_path / "features" / key
    shutil.copytree(big_built, tmp_path, dirs_exist_ok=True)
    fpath = path / "features.npy"
    size, header = fpath.stat().st_size, fpath.stat().st_size - BIG_N * 7680
    assert size > 4 * 2**20
    offset = _nan_offsets(size, header)[where]
    if where.startswith("between"):  # a place the previous check never read
        assert not any(lo <= offset < lo + 2**16 for lo in _old_sample_blocks(size))
    with open(fpath, "r+b") as f:
        f.seek(offset)
        f.write(NAN16)
    assert np.isnan(np.load(fpath, mmap_mode="r")).sum() == 1
    with pytest.raises(cache_mod.CacheCorruptError, match="features.npy bytes .* fail their sha256 check") as exc:
        load_feature_cache(path)
    assert "\n" not in str(exc.value)
    with caplog.at_level(logging.WARNING, logger="proxy.store"):
        again = load_or_build(ds, "lite0", 16, cache_dir=tmp_path, batch_size=64, progress=False)
    assert len(fake_backbone) == 1, "a cache with a NaN was used instead of rebuilt"
    assert any("corrupt" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert np.isfinite(again.features).all()
    assert np.array_equal(again.features, np.load(big_built / "features" / key / "features.npy"))


def test_changed_label_bytes_are_caught(big_built, tmp_path, fake_backbone):
    ds = TinyDataset("big", n=BIG_N)
    key = cache_key(ds, "lite0", 16)
    shutil.copytree(big_built, tmp_path, dirs_exist_ok=True)
    lpath = tmp_path / "features" / key / "labels.npy"
    with open(lpath, "r+b") as f:
        f.seek(lpath.stat().st_size // 2 + 12345)
        f.write(bytes([7, 7, 7]))  # valid class ids, wrong labels
    with pytest.raises(cache_mod.CacheCorruptError, match="labels.npy"):
        load_feature_cache(lpath.parent)
    again = load_or_build(ds, "lite0", 16, cache_dir=tmp_path, batch_size=64, progress=False)
    assert len(fake_backbone) == 1
    assert np.array_equal(again.labels, np.load(big_built / "features" / key / "labels.npy"))


def test_a_cache_of_the_previous_version_opens_without_a_rebuild(built, tmp_path, count_builds, caplog):
    """Manifests written before the chunk tables: verified by their whole-file sha256, migrated."""
    shutil.copytree(built, tmp_path, dirs_exist_ok=True)
    key = cache_key(TinyDataset(), "lite0", 16)
    mpath = tmp_path / "features" / key / "manifest.json"
    m = json.loads(mpath.read_text())
    for info in m["files"].values():  # what the previous version wrote
        del info["chunk_bytes"], info["chunk_sha256"]
        info["sample_sha256"] = "0" * 64
    mpath.write_text(json.dumps(m))
    with caplog.at_level(logging.INFO, logger="proxy.store"):
        cf = load_or_build(TinyDataset(), "lite0", 16, cache_dir=tmp_path, progress=False)
    assert len(count_builds) == 0 and "earlier version" in caplog.text
    assert all("chunk_sha256" in info for info in json.loads(mpath.read_text())["files"].values())
    assert cf.features.shape == (3, 320, 4, 3)
