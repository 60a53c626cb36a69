"""What the cache check costs: sha256 of every byte, on a synthetic store entry; prints one table.

    python -m benchmarks.cache_verify [--mib 512] [--repeats 3] [--dir DIR]

Rows: the digests computed at build time (whole-file sha256 + chunk table), the check on a
load (chunks hashed on every available core, and on one), the check of an entry written by an
earlier version (whole-file sha256), a cold load (the file's pages dropped from the page cache
with posix_fadvise first; the evaluation reads them anyway), and a second load in the same
process (memoized). Each row also gives the seconds it would take for the default ``cpu``
feature cache (4.03 GB). Medians over repeats.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from proxy import store

CPU_CACHE_BYTES = 4.031e9  # features + labels of the default cpu cache (README)


def _drop_pages(path: Path) -> bool:
    if not hasattr(os, "posix_fadvise"):
        return False
    with open(path, "rb") as f:
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    return True


def _median_s(fn, repeats: int, before=lambda: None) -> float:
    times = []
    for _ in range(repeats):
        before()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cache_verify")
    parser.add_argument("--mib", type=int, default=512, help="size of the synthetic features file")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where to write it (default: a temp dir)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        final = Path(tmp) / "entry"
        rng = np.random.default_rng(0)

        def write(d: Path) -> dict:
            arr = np.lib.format.open_memmap(d / "features.npy", "w+", np.float16, (args.mib, 2**19))
            for i in range(0, args.mib, 64):
                arr[i : i + 64] = rng.standard_normal((min(64, args.mib - i), 2**19), dtype=np.float32)
            arr.flush()
            return {}

        store.build(final, "bench", write)
        path = final / "features.npy"
        nbytes = path.stat().st_size
        info = store.read_manifest(final)["files"]["features.npy"]
        legacy = {k: v for k, v in info.items() if not k.startswith("chunk")}
        threads = store._hash_threads()

        def check(entry: dict) -> None:
            store._verified.clear()
            store._verify_file(path, entry, full=False)

        def one_thread() -> None:
            real = store._hash_threads
            store._hash_threads = lambda: 1
            try:
                check(info)
            finally:
                store._hash_threads = real

        rows = [
            ("digests at build (whole + chunks)", _median_s(lambda: store.describe_file(path), args.repeats)),
            (f"check on load, {threads} thread(s)", _median_s(lambda: check(info), args.repeats)),
            ("check on load, 1 thread", _median_s(one_thread, args.repeats)),
            ("check of an earlier version's entry", _median_s(lambda: check(legacy), args.repeats)),
        ]
        if _drop_pages(path):
            rows.append(("cold check (pages dropped first)",
                         _median_s(lambda: check(info), args.repeats, before=lambda: _drop_pages(path))))
        store._verified.clear()
        store._verify_file(path, info, full=False)
        old = store.RACY_NS
        store.RACY_NS = -1  # the file was just written: allow the memo, as for an older file
        store._verify_file(path, info, full=False)
        store.RACY_NS = old
        rows.append(("second load in the process (memoized)", _median_s(lambda: store._verify_file(path, info, full=False), args.repeats)))

    print(f"file {nbytes / 2**20:.0f} MiB, {len(info['chunk_sha256'])} chunks of {info['chunk_bytes'] >> 20} MiB, "
          f"{threads} hashing thread(s), {os.cpu_count()} CPUs\n")
    print("| step | s | GB/s | s for the 4.03 GB cpu cache |")
    print("|---|---|---|---|")
    for name, s in rows:
        rate = nbytes / s / 1e9 if s > 0 else float("inf")
        print(f"| {name} | {s:.3f} | {rate:.2f} | {CPU_CACHE_BYTES / (rate * 1e9):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
