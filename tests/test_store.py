"""The atomic on-disk store under every cache: digests, once-per-process verification,
migration of earlier manifests, publishing, and the clean-up of killed builds."""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest

from proxy import store

NAN16 = np.array([np.nan], np.float16).tobytes()  # b"\x00\x7e": float16 0x7E00


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """1 MiB chunks, so a few-MiB file has a chunk table of several entries; a fresh memo."""
    monkeypatch.setattr(store, "CHUNK_BYTES", 2**20)
    monkeypatch.setattr(store, "_verified", {})


@pytest.fixture
def hashed(monkeypatch) -> list[str]:
    """Names of the files the store hashes from now on."""
    calls: list[str] = []
    real = store.hash_file

    def counting(path, *args, **kwargs):
        calls.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(store, "hash_file", counting)
    return calls


def _write(tmp: Path) -> dict:
    data = np.arange(3 * 2**20 // 2 + 7, dtype=np.float16)  # 3 MiB + 14 bytes: 4 chunks
    np.save(tmp / "a.npy", data)
    (tmp / "b.bin").write_bytes(b"labels" * 1000)
    return {"note": "test", "files": {"a.npy": {"shape": list(data.shape)}}}


def _entry(root: Path) -> Path:
    final = root / "entry"
    store.build(final, "k1", _write)
    return final


def _poke(path: Path, offset: int, data: bytes, keep_mtime: bool = False) -> None:
    st = path.stat()
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_build_writes_a_manifest_with_sizes_and_digests(tmp_path):
    final = _entry(tmp_path)
    m = json.loads((final / "manifest.json").read_text())
    assert m["key"] == "k1" and m["note"] == "test" and sorted(m["files"]) == ["a.npy", "b.bin"]
    a = m["files"]["a.npy"]
    assert a["shape"] == [3 * 2**20 // 2 + 7] and a["bytes"] == (final / "a.npy").stat().st_size
    assert a["chunk_bytes"] == 2**20 and len(a["chunk_sha256"]) == 4
    assert a["sha256"] == store.hash_file(final / "a.npy")[0]
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == ["entry"]  # no temp dir left
    assert store.verify(final, "k1", ["a.npy"])["note"] == "test"


@pytest.mark.parametrize("where", ["first chunk", "chunk boundary", "last byte", "middle of last chunk"])
def test_a_nan_anywhere_is_caught(tmp_path, where):
    final = _entry(tmp_path)
    size = (final / "a.npy").stat().st_size
    offset = {"first chunk": 128, "chunk boundary": 2**20 - 1, "last byte": size - 2,
              "middle of last chunk": (size + 3 * 2**20) // 2 & ~1}[where]
    _poke(final / "a.npy", offset, NAN16)
    with pytest.raises(store.CacheCorruptError, match="a.npy bytes .* fail their sha256 check") as exc:
        store.verify(final, "k1")
    assert "\n" not in str(exc.value)


def test_each_file_version_is_hashed_once_per_process(tmp_path, hashed, monkeypatch):
    final = _entry(tmp_path)
    hashed.clear()
    store.verify(final, "k1")
    store.verify(final, "k1")
    assert hashed == ["a.npy", "b.bin"] * 2, "a file written < 2 s ago is hashed on every load"
    monkeypatch.setattr(store, "RACY_NS", -10**12)  # as if the files were old
    hashed.clear()
    store.verify(final, "k1")
    store.verify(final, "k1")
    assert hashed == ["a.npy", "b.bin"]
    store.verify(final, "k1", mode="full")
    assert hashed == ["a.npy", "b.bin"] * 2
    time.sleep(0.05)  # past the file system's timestamp granularity
    _poke(final / "b.bin", 10, b"X", keep_mtime=True)  # same size and mtime: its ctime moved
    hashed.clear()
    with pytest.raises(store.CacheCorruptError, match="b.bin"):
        store.verify(final, "k1")
    assert hashed == ["b.bin"]  # a.npy is unchanged: still verified


def test_a_copy_or_a_replaced_file_is_hashed_again(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "RACY_NS", -10**12)
    final = _entry(tmp_path)
    store.verify(final, "k1")
    data = bytearray((final / "b.bin").read_bytes())
    data[0] ^= 1
    (final / "b.bin.new").write_bytes(data)
    os.replace(final / "b.bin.new", final / "b.bin")  # another inode, same size
    with pytest.raises(store.CacheCorruptError, match="b.bin"):
        store.verify(final, "k1")


@pytest.mark.parametrize("damage", ["size", "key", "missing file", "no manifest", "no file table", "path in name"])
def test_manifest_level_checks(tmp_path, damage):
    final = _entry(tmp_path)
    m = json.loads((final / "manifest.json").read_text())
    if damage == "size":
        m["files"]["b.bin"]["bytes"] += 1
    elif damage == "key":
        m["key"] = "other"
    elif damage == "missing file":
        (final / "b.bin").unlink()
    elif damage == "no file table":
        del m["files"]
    elif damage == "path in name":
        m["files"]["../entry/b.bin"] = m["files"].pop("b.bin")
    (final / "manifest.json").write_text(json.dumps(m))
    if damage == "no manifest":
        (final / "manifest.json").unlink()
    with pytest.raises(store.CacheCorruptError):
        store.verify(final, "k1", ["a.npy"])
    with pytest.raises(ValueError, match="verify must be"):
        store.verify(final, "k1", mode="sample")


def _make_legacy(final: Path, size_field: str) -> dict:
    """Rewrite a manifest the way earlier versions wrote it: one whole-file sha256 per file."""
    m = json.loads((final / "manifest.json").read_text())
    for info in m["files"].values():
        del info["chunk_bytes"], info["chunk_sha256"]
        info[size_field] = info.pop("bytes")
    (final / "manifest.json").write_text(json.dumps(m))
    return m


@pytest.mark.parametrize("size_field", ["bytes", "size"])
def test_entries_of_earlier_versions_are_verified_and_migrated(tmp_path, caplog, size_field):
    final = _entry(tmp_path)
    fresh = json.loads((final / "manifest.json").read_text())
    legacy = _make_legacy(final, size_field)
    with caplog.at_level(logging.INFO, logger="proxy.store"):
        store.verify(final, "k1")
    assert "earlier version" in caplog.text
    m = json.loads((final / "manifest.json").read_text())
    for name, info in m["files"].items():
        assert info == {**legacy["files"][name], "chunk_bytes": 2**20,
                        "chunk_sha256": fresh["files"][name]["chunk_sha256"]}  # fields only added
    store.verify(final, "k1", mode="full")


def test_a_corrupt_entry_of_an_earlier_version_is_caught_and_not_migrated(tmp_path):
    final = _entry(tmp_path)
    _make_legacy(final, "size")
    _poke(final / "a.npy", 2 * 2**20 + 4, NAN16)
    before = (final / "manifest.json").read_text()
    with pytest.raises(store.CacheCorruptError, match="a.npy fails its sha256 check"):
        store.verify(final, "k1")
    assert (final / "manifest.json").read_text() == before


def test_a_losing_builder_keeps_the_winners_entry(tmp_path, caplog):
    final = _entry(tmp_path)
    mtimes = {p.name: p.stat().st_mtime_ns for p in final.iterdir()}
    with caplog.at_level(logging.INFO, logger="proxy.store"):
        store.build(final, "k1", _write)
    assert "built by another process meanwhile" in caplog.text
    assert {p.name: p.stat().st_mtime_ns for p in final.iterdir()} == mtimes
    assert sorted(p.name for p in tmp_path.iterdir()) == [".entry.lock", "entry"]


def test_a_corrupt_entry_is_replaced_when_publishing(tmp_path, caplog):
    final = _entry(tmp_path)
    _poke(final / "a.npy", 200, NAN16)
    with caplog.at_level(logging.WARNING, logger="proxy.store"):
        store.build(final, "k1", _write)
    assert "corrupt" in caplog.text
    store.verify(final, "k1", mode="full")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".entry.lock", "entry"]


def test_open_or_build_rebuilds_corrupt_entries_and_refuses_a_bad_build(tmp_path):
    final = _entry(tmp_path)
    _poke(final / "b.bin", 0, b"Z")
    built = []

    def write(tmp):
        built.append(1)
        return _write(tmp)

    load = lambda path, manifest: manifest["note"]  # noqa: E731
    assert store.open_or_build(final, "k1", what="test entry", required=["a.npy"], load=load, write=write) == "test"
    assert built == [1]
    assert store.open_or_build(final, "k1", what="test entry", required=["a.npy"], load=load, write=write) == "test"
    assert built == [1]

    def refuse(path, manifest):
        raise store.CacheCorruptError("shape check failed")

    with pytest.raises(store.CacheCorruptError, match="right after it was built: shape check failed"):
        store.open_or_build(tmp_path / "other", "k2", what="test entry", required=[], load=refuse, write=_write)


def test_sweep_spares_live_builds_and_removes_dead_ones(tmp_path):
    fcntl = pytest.importorskip("fcntl")

    live, dead, young = (tmp_path / f".entry.tmp-{n}" for n in ("live", "dead", "young"))
    trash = tmp_path / ".entry.trash-1234"
    for d in (live, dead, young, trash):
        d.mkdir()
        (d / "part.npy").write_bytes(b"partial")
    for d in (live, dead, trash):
        os.utime(d, (0, 0))
    fd = os.open(live, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a builder still running (for days)
        store.sweep_stale(tmp_path, "entry")
        assert live.exists() and young.exists() and not dead.exists() and not trash.exists()
    finally:
        os.close(fd)
    store.sweep_stale(tmp_path, "entry")
    assert not live.exists() and young.exists()


def test_a_failed_build_leaves_nothing_behind(tmp_path):
    def fail(tmp):
        (tmp / "half.npy").write_bytes(b"half")
        raise RuntimeError("backbone gave NaN")

    with pytest.raises(RuntimeError, match="NaN"):
        store.build(tmp_path / "entry", "k1", fail)
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == []
