"""What it costs to notice that a folder's files changed, on 50,000 files.

    python benchmarks/store_key.py [--files 50000] [--bytes 3000] [--repeats 5]

Every run that reads a folder computes its store's key (``selfsup.data.loaders._cache_key``): the
folder's file names with each file's size, modification time and, since 2026-12-07, inode change
time (``st_ctime``), from one ``stat`` per file. The alternative that also catches every change is a
content hash of every file. This writes ``--files`` files of ``--bytes`` random bytes (about a
CIFAR-10 JPEG) in class folders in a temporary folder and times, side by side, median of
``--repeats`` with the files in the page cache (a second run's case):

- ``key``: selfsup's key of the folder, as a run computes it (listing, names, ``stat``);
- ``stat``: only the ``stat`` calls of the key's files, with and without the change time in the text;
- ``content hash``: BLAKE2b of every file's bytes (the file list as the key takes it).

Saves ``benchmarks/results/store_key.json`` with the machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import machine_info  # noqa: E402
from selfsup.data.files import folder_names  # noqa: E402
from selfsup.data.loaders import _cache_key  # noqa: E402


def timed(work, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=50_000)
    parser.add_argument("--bytes", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="selfsup-store-key-") as folder:
        root = Path(folder) / "images"
        for i in range(args.files):
            path = root / f"class{i % 10}" / f"{i:06d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(args.bytes))
        names = folder_names(root)

        def stat_only(with_ctime: bool) -> None:
            digest = hashlib.sha256()
            for name in names:
                stat = os.stat(root / name)
                text = f"{name}|{stat.st_size}|{stat.st_mtime_ns}"
                digest.update((text + (f"|{stat.st_ctime_ns}" if with_ctime else "")).encode())

        def content_hash() -> None:
            for name in names:
                hashlib.blake2b((root / name).read_bytes()).digest()

        content_hash()  # the files in the page cache for every measurement
        seconds = {
            "key (listing + stat, size, mtime, ctime)": timed(
                lambda: _cache_key(root, "options"), args.repeats
            ),
            "stat, size + mtime": timed(lambda: stat_only(False), args.repeats),
            "stat, size + mtime + ctime": timed(lambda: stat_only(True), args.repeats),
            "content hash (BLAKE2b of every file)": timed(content_hash, args.repeats),
        }
    result = {
        "machine": machine_info(),
        "files": args.files,
        "bytes_per_file": args.bytes,
        "repeats": args.repeats,
        "page_cache": "warm (the files read once before timing)",
        "median_seconds": seconds,
    }
    out = ROOT / "benchmarks" / "results" / "store_key.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    for what, value in seconds.items():
        print(f"{what:45s} {value:7.3f} s")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
