"""The atomic on-disk store behind every cache of this project (scene sets, feature caches).

An *entry* is a directory ``<root>/<name>/`` holding data files and a ``manifest.json``; its
``key`` (a hash of everything the data depends on, chosen by the caller) is in the manifest.
One policy for all entries:

- **Build**: files are written into a temp dir next to the final one (``.<name>.tmp-*``),
  fsynced and digested; the manifest (sizes, a sha256 per file and per 16 MiB chunk) is written
  last, so a directory with a manifest is a complete build.
- **Publish**: under an exclusive ``flock`` on ``<root>/.<name>.lock`` the temp dir is renamed
  into place. If an intact entry is already there (another process won the race), this build is
  discarded and theirs is used; a corrupt one is first renamed aside and deleted.
- **Verify**: every byte of every file is checked against the manifest's sha256 digests, once
  per process for each file version (path, device, inode, size, mtime, ctime): a later load in
  the same process skips the re-hash, while a file changed since (any write moves its ctime) is
  hashed again, in the next process or this one. Chunks are hashed on several threads (hashlib
  releases the GIL). A file changed within 2 s of its last verification start is not memoized
  (timestamps are coarse), as git does for "racily clean" files. Entries written by earlier
  versions (one whole-file sha256, no chunk table) are verified with it and their manifest gets
  the chunk table added (logged).
- **Clean up**: a temp dir is held by its builder's ``flock`` for the whole build; other
  builders delete one that no live builder holds and that is older than an hour (the dir of a
  killed build), and trash dirs (``.<name>.trash-*``) older than an hour.

Any failed check raises ``CacheCorruptError`` naming it; ``open_or_build`` logs it and rebuilds.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Sequence, TypeVar

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
CHUNK_BYTES = 16 * 2**20  # digest granularity: 256 digests (16 kB of manifest) for a 4 GB file
STALE_S = 3600.0  # unlocked temp dirs and trash dirs older than this are leftovers of killed builds
RACY_NS = 2 * 10**9  # a file written this close to its verification is re-hashed next time
Verify = Literal["once", "full"]
T = TypeVar("T")


class CacheCorruptError(RuntimeError):
    """A cache entry failed a check (the message names the check)."""


def default_cache_dir() -> Path:
    """``$DPC_NAS_CACHE`` if set, else ``~/.cache/dpc-nas``: one rule for every cache."""
    env = os.environ.get("DPC_NAS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dpc-nas"


# --- digests ----------------------------------------------------------------------------------


def _hash_threads() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


def _sha256_hex(buf: bytes) -> str:
    return hashlib.sha256(buf).hexdigest()


def hash_file(path: Path, chunk_bytes: int | None = None, *, whole: bool = True,
              expected_chunks: Sequence[str] | None = None) -> tuple[str | None, list[str]]:
    """``(sha256 of the whole file or None, [sha256 of each chunk])`` in one sequential read,
    chunks (default ``CHUNK_BYTES``) hashed on a thread pool. With ``expected_chunks``, stop at
    the first chunk that differs and raise ``CacheCorruptError`` naming its byte range."""
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    whole_h = hashlib.sha256() if whole else None
    digests: list[str] = []
    threads = _hash_threads()

    def collect(pending: deque, keep: int) -> None:
        while len(pending) > keep:
            digests.append(pending.popleft().result())
            i = len(digests) - 1
            if expected_chunks is not None and (i >= len(expected_chunks) or digests[i] != expected_chunks[i]):
                lo, hi = i * chunk_bytes, min((i + 1) * chunk_bytes, size) - 1
                raise CacheCorruptError(f"{path.name} bytes {lo}-{hi} fail their sha256 check")

    with open(path, "rb", buffering=0) as f, ThreadPoolExecutor(threads) as pool:
        size = os.fstat(f.fileno()).st_size
        pending: deque = deque()
        try:
            while buf := f.read(chunk_bytes):
                pending.append(pool.submit(_sha256_hex, buf))
                if whole_h is not None:
                    whole_h.update(buf)  # releases the GIL too: runs beside the chunk hashes
                collect(pending, threads)
            collect(pending, 0)
        except CacheCorruptError:
            for fut in pending:
                fut.cancel()
            raise
    if expected_chunks is not None and len(digests) != len(expected_chunks):
        raise CacheCorruptError(f"{path.name} has {len(digests)} chunks, manifest says {len(expected_chunks)}")
    return (whole_h.hexdigest() if whole_h is not None else None), digests


def describe_file(path: Path) -> dict[str, Any]:
    """The manifest entry of a data file: size, whole-file sha256 and the chunk digest table."""
    chunk_bytes = CHUNK_BYTES
    digest, chunks = hash_file(path, chunk_bytes)
    return {"bytes": path.stat().st_size, "sha256": digest, "chunk_bytes": chunk_bytes, "chunk_sha256": chunks}


# Files whose content matched the manifest in this process: identity -> the digest it matched.
_verified: dict[tuple, str] = {}


def _identity(path: Path, st: os.stat_result) -> tuple:
    return (str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _entry_size(info: dict[str, Any]) -> Any:
    return info.get("bytes", info.get("size"))  # "size": scene manifests of earlier versions


def _verify_file(path: Path, info: dict[str, Any], full: bool) -> tuple[int, list[str]] | None:
    """Check every byte of ``path`` against its manifest entry (skipped if this process already
    did for this very file version, unless ``full``). Returns a chunk table when the entry had
    none (an entry of an earlier version, verified by its whole-file digest), else None."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise CacheCorruptError(f"{path.name} missing") from None
    if st.st_size != _entry_size(info):
        raise CacheCorruptError(f"{path.name} has {st.st_size} bytes, manifest says {_entry_size(info)}")
    ident, expected = _identity(path, st), str(info.get("sha256"))
    if not full and _verified.get(ident) == expected:
        return None
    started = time.time_ns()
    chunks, chunk_bytes, upgrade = info.get("chunk_sha256"), info.get("chunk_bytes"), None
    try:
        if isinstance(chunks, list) and isinstance(chunk_bytes, int) and chunk_bytes > 0:
            hash_file(path, chunk_bytes, whole=False, expected_chunks=chunks)
        else:  # an entry of an earlier version: its whole-file digest, and a chunk table on the way
            chunk_bytes = CHUNK_BYTES
            digest, upgrade = hash_file(path, chunk_bytes)
            if digest != expected:
                raise CacheCorruptError(f"{path.name} fails its sha256 check")
    except OSError as e:  # e.g. EIO from a bad sector: as unusable as wrong bytes
        raise CacheCorruptError(f"{path.name} is unreadable: {e}") from None
    if path.stat().st_ctime_ns == st.st_ctime_ns and started - max(st.st_mtime_ns, st.st_ctime_ns) > RACY_NS:
        _verified[ident] = expected
    return None if upgrade is None else (chunk_bytes, upgrade)


# --- locks ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _flock(path: Path, *, blocking: bool = True, directory: bool = False) -> Iterator[bool]:
    """Exclusive ``flock`` on a file (created if needed) or a directory; yields whether it was
    taken (always True when blocking). Released by the kernel if the holder dies."""
    try:
        import fcntl
    except ImportError:  # not POSIX: rename atomicity alone still protects readers
        yield True
        return
    fd = os.open(path, os.O_RDONLY) if directory else os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        except OSError as e:  # a file system without flock (some network mounts): go on unlocked
            log.debug("cannot flock %s (%s); going on without the lock", path, e)
        yield True
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _publish_lock(final: Path) -> contextlib.AbstractContextManager:
    return _flock(final.parent / f".{final.name}.lock")


# --- verify / open ----------------------------------------------------------------------------


def read_manifest(path: Path) -> dict[str, Any]:
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise CacheCorruptError(f"{MANIFEST} missing (an incomplete or foreign directory)")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CacheCorruptError(f"unreadable {MANIFEST}: {e}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise CacheCorruptError(f"{MANIFEST} has no file table")
    return manifest


def verify(path: Path, key: str, required: Sequence[str] = (), mode: Verify = "once") -> dict[str, Any]:
    """Return the manifest of the intact entry ``path`` with key ``key``, else raise
    CacheCorruptError. ``required``: files the manifest must describe. ``mode``: "once" hashes
    each file version once per process, "full" hashes again now."""
    if mode not in ("once", "full"):
        raise ValueError(f"verify must be 'once' or 'full', got {mode!r}")
    manifest = read_manifest(path)
    if manifest.get("key") != key:
        raise CacheCorruptError(f"{MANIFEST} is for key {manifest.get('key')!r}, not {key!r}")
    files = manifest["files"]
    for name in required:
        if not isinstance(files.get(name), dict):
            raise CacheCorruptError(f"{MANIFEST} does not describe {name}")
    upgrades = {}
    for name, info in files.items():
        if not isinstance(info, dict) or Path(name).name != name:
            raise CacheCorruptError(f"{MANIFEST} has a malformed entry {name!r}")
        table = _verify_file(path / name, info, full=mode == "full")
        if table is not None:
            upgrades[name] = table
    if upgrades:
        _add_chunk_tables(path, manifest, upgrades)
    return manifest


def _add_chunk_tables(path: Path, manifest: dict[str, Any], tables: dict[str, tuple[int, list[str]]]) -> None:
    """Migrate an entry of an earlier version, just verified by its whole-file digests: add a
    chunk table to its manifest (atomically; only fields are added), so later loads hash in
    parallel. Skipped if the manifest changed meanwhile or the directory is read-only."""
    before = json.dumps(manifest, sort_keys=True)
    upgraded = json.loads(before)
    for name, (chunk_bytes, table) in tables.items():
        upgraded["files"][name].update(chunk_bytes=chunk_bytes, chunk_sha256=table)
    try:
        with _publish_lock(path):
            if json.dumps(read_manifest(path), sort_keys=True) != before:
                return
            _write_json(path / MANIFEST, upgraded)
        manifest.update(upgraded)
        log.info("cache %s was written by an earlier version: verified by its whole-file sha256, "
                 "chunk digests added to its manifest", path)
    except (OSError, CacheCorruptError) as e:
        log.info("cache %s verified by its whole-file sha256; manifest not upgraded (%s)", path, e)


# --- build / publish / clean up ---------------------------------------------------------------


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``path`` atomically and durably (temp file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def discard(path: Path) -> None:
    """Remove a directory: rename it aside first (atomic), so no reader sees it half-deleted."""
    trash = path.with_name(f".{path.name}.trash-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(path, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def sweep_stale(root: Path, name: str) -> None:
    """Delete temp dirs of ``name`` that no live builder holds and trash dirs, once older than
    ``STALE_S`` (a temp dir younger than that may be one whose builder is about to lock it)."""
    now = time.time()
    for d in list(root.glob(f".{name}.tmp-*")) + list(root.glob(f".{name}.trash-*")):
        with contextlib.suppress(OSError):
            if now - d.stat().st_mtime <= STALE_S:
                continue
            with _flock(d, blocking=False, directory=True) as free:
                if free:
                    log.info("removing %s, left by a killed build", d)
                    shutil.rmtree(d, ignore_errors=True)


def _publish(tmp: Path, final: Path, key: str) -> None:
    """Rename ``tmp`` to ``final`` unless an intact entry is already there (then ``tmp`` stays,
    for the caller to delete)."""
    with _publish_lock(final):
        if final.exists():
            try:
                verify(final, key)
                log.info("cache %s was built by another process meanwhile; using it", final)
                return
            except CacheCorruptError as e:
                log.warning("cache %s is corrupt (%s); replacing it", final, e)
                discard(final)
        try:
            os.rename(tmp, final)
        except OSError as e:  # a writer that does not take the lock (e.g. an older version)
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            log.info("cache %s appeared meanwhile; discarding this build", final)
            return
        _fsync_dir(final.parent)


def build(final: Path, key: str, write: Callable[[Path], dict[str, Any]]) -> None:
    """Build the entry ``final`` and publish it atomically (an intact entry published under the
    same name meanwhile wins over this build).

    ``write(tmp)`` writes the data files into the empty directory ``tmp`` and returns the
    manifest's other fields; a ``"files"`` field there maps file names to extra per-file fields
    (e.g. shape and dtype). Every regular file in ``tmp`` is fsynced and described.
    """
    root = final.parent
    root.mkdir(parents=True, exist_ok=True)
    sweep_stale(root, final.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=root))
    try:
        with _flock(tmp, directory=True):  # tells sweepers this build is alive
            fields = dict(write(tmp))
            extras = fields.pop("files", {})
            files = {}
            for path in sorted(p for p in tmp.iterdir() if p.is_file()):
                with open(path, "rb+") as f:
                    os.fsync(f.fileno())
                files[path.name] = {**extras.get(path.name, {}), **describe_file(path)}
            _write_json(tmp / MANIFEST, {**fields, "key": key, "files": files})  # last: marks a complete build
            _publish(tmp, final, key)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def open_or_build(final: Path, key: str, *, what: str, required: Sequence[str],
                  load: Callable[[Path, dict[str, Any]], T], write: Callable[[Path], dict[str, Any]],
                  mode: Verify = "once") -> T:
    """``load(final, manifest)`` of the verified entry, building it first if absent or corrupt
    (logged). ``load`` raises CacheCorruptError for checks of its own (shapes, versions)."""
    if final.exists():
        try:
            return load(final, verify(final, key, required, mode))
        except CacheCorruptError as e:
            log.warning("%s %s is corrupt (%s); rebuilding it", what, final, e)
    build(final, key, write)
    try:
        return load(final, verify(final, key, required))
    except CacheCorruptError as e:
        raise CacheCorruptError(f"{what} {final} fails its checks right after it was built: {e}") from None


__all__ = [
    "CHUNK_BYTES", "CacheCorruptError", "MANIFEST", "Verify", "build", "default_cache_dir", "describe_file",
    "discard", "hash_file", "open_or_build", "read_manifest", "sweep_stale", "verify",
]
