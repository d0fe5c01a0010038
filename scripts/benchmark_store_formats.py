"""Candidate on-disk formats for the preprocessed store, measured on this machine (the numbers behind its choice).

Each candidate stores N entries shaped as the store's: a letterboxed image, float16 ``(1, S, S)``, plus its small
metadata (file size ``[W, H]``, letterbox scale ``[sx, sy]``, the input warnings as text). Per candidate and size,
in fresh processes:

* build (one process): write rate of already-preprocessed entries (entries/s; decoding costs the same for every
  format and is measured by ``scripts/benchmark_scale.py``), bytes on disk per entry, files per entry;
* read (another process): median wall time to assemble a batch of ``batch`` random entries into one
  ``(B, 1, S, S)`` float16 tensor, first with the store's pages evicted from the page cache (cold:
  ``posix_fadvise(DONTNEED)`` on each of its files, nothing else is dropped) and then warm; then the growth of the
  process's resident memory over one pass through every entry in random order (``VmRSS`` and its file-backed
  part ``RssFile``: pages a process keeps mapped count in its RSS, pages it read with ``read()`` stay in the
  kernel's page cache and do not).

Candidates: ``persistent`` (MONAI ``PersistentDataset``: ``torch.save`` of the entry dict per file),
``torch_mmap`` (the same files read with ``torch.load(mmap=True)``), ``lmdb`` (MONAI ``LMDBDataset``; needs the
``lmdb`` package, e.g. ``pip install --target /tmp/lmdbpkg lmdb`` and ``PYTHONPATH=/tmp/lmdbpkg``), ``npy_mmap``
(one ``.npy`` per entry read with ``np.load(mmap_mode="r")``, metadata in a JSON file beside it), ``npz`` (one
uncompressed ``.npz`` per entry), ``memmap_shard`` (all images in one NumPy memory-mapped array) and ``store``
(the bundle's :mod:`scripts.data.store`: image and metadata as two ``.npy`` arrays in one file, read whole).

    python scripts/benchmark_store_formats.py --sizes 256 512 --entries 2000 --output bundle/docs/store_formats.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import repo_paths  # noqa: F401  (bundle/ on the import path, for scripts.data.store)

import numpy as np

CANDIDATES = ("persistent", "torch_mmap", "lmdb", "npy_mmap", "npz", "memmap_shard", "store")
META_KEYS = ("original_size", "scale")


def _status(*fields: str) -> dict[str, int]:
    """Fields of /proc/self/status in bytes."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name = line.split(":")[0]
        if name in fields:
            out[name] = int(line.split()[1]) * 1024
    return out


def _evict(folder: Path) -> None:
    """Drop the page-cache pages of every file under ``folder`` (only these files: no global cache drop)."""
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)  # dirty pages must be written before they can be dropped
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def _entries(size: int) -> list[dict]:
    """64 distinct entries; the N stored entries repeat them (each in its own place)."""
    rng = np.random.default_rng(0)
    return [
        {
            "image": rng.random((1, size, size), dtype=np.float32).astype(np.float16),
            "original_size": np.array([2048.0, 2500.0], np.float32),
            "scale": np.array([size / 2500.0] * 2, np.float32),
            "input_warnings": "DICOM ViewPosition is not set",
        }
        for _ in range(64)
    ]


def _monai_dataset(name: str, folder: Path, count: int, size: int, build: bool):
    """MONAI's PersistentDataset / LMDBDataset whose (non-random) transform makes entry ``index``."""
    from monai.data import LMDBDataset, PersistentDataset
    from monai.transforms import Lambda

    entries = _entries(size) if build else None

    def make(item: dict) -> dict:
        if entries is None:
            raise RuntimeError("cache miss while reading")
        return dict(entries[item["index"] % len(entries)])

    sources = [{"index": i} for i in range(count)]
    # Lambda, not the bare function: MONAI caches up to the first random transform and treats a bare function as one.
    if name == "lmdb":
        kwargs = {"map_size": max(2**30, count * size * size * 4)}
        return LMDBDataset(sources, Lambda(make), cache_dir=folder, db_name="store", progress=False, lmdb_kwargs=kwargs)
    return PersistentDataset(sources, Lambda(make), cache_dir=folder, hash_transform=None)


def _writer(name: str, folder: Path, count: int, size: int) -> Callable[[int, dict], None] | None:
    """``write(index, entry)`` of a candidate, or None when the candidate builds at construction (LMDB)."""
    import torch

    if name in ("persistent", "torch_mmap"):
        from monai.data import PersistentDataset

        dataset = _monai_dataset("persistent", folder, count, size, build=True)
        assert isinstance(dataset, PersistentDataset)
        return lambda index, entry: dataset[index]
    if name == "npy_mmap":

        def write(index: int, entry: dict) -> None:
            path = folder / f"{index % 256:02x}" / f"{index}.npy"
            path.parent.mkdir(exist_ok=True)
            np.save(path, entry["image"])
            meta = {k: entry[k].tolist() for k in META_KEYS} | {"input_warnings": entry["input_warnings"]}
            path.with_suffix(".json").write_text(json.dumps(meta))

        return write
    if name == "npz":

        def write_npz(index: int, entry: dict) -> None:
            path = folder / f"{index % 256:02x}" / f"{index}.npz"
            path.parent.mkdir(exist_ok=True)
            np.savez(path, **entry)

        return write_npz
    if name == "memmap_shard":
        shard = {
            "images": np.lib.format.open_memmap(folder / "images.npy", mode="w+", dtype=np.float16,
                                                shape=(count, 1, size, size)),
            "meta": np.lib.format.open_memmap(folder / "meta.npy", mode="w+", dtype=np.float32, shape=(count, 4)),
        }  # fmt: skip

        def write_shard(index: int, entry: dict) -> None:
            shard["images"][index] = entry["image"]
            shard["meta"][index] = np.concatenate([entry[k] for k in META_KEYS])
            if index == count - 1:
                for array in shard.values():
                    array.flush()

        return write_shard
    if name == "store":
        from scripts.data.store import PreprocessedStore

        store, sources = _store(folder, count)

        def write_store(index: int, entry: dict) -> None:
            meta = {k: entry[k].tolist() for k in META_KEYS} | {"input_warnings": entry["input_warnings"]}
            store.write(sources[index], {"image": entry["image"], "meta": meta})

        assert isinstance(store, PreprocessedStore) and torch is not None
        return write_store
    return None


def _store(folder: Path, count: int):
    """The bundle's store under ``folder/store``, keyed by ``count`` empty source files under ``folder/sources``."""
    from scripts.data.store import PreprocessedStore

    sources_dir = folder / "sources"
    sources_dir.mkdir(parents=True, exist_ok=True)
    sources = [sources_dir / str(i) for i in range(count)]
    for source in sources:
        if not source.exists():  # the key is path + size + mtime: the read process must find the same files
            source.touch()
    return PreprocessedStore(folder / "store", []), sources


def _reader(name: str, folder: Path, count: int, size: int) -> Callable[[int], object]:
    """``read(index)`` -> the image (tensor or array) of entry ``index``, in a fresh process."""
    import torch

    if name == "persistent":
        dataset = _monai_dataset(name, folder, count, size, build=False)
        return lambda index: dataset[index]["image"]
    if name == "torch_mmap":
        dataset = _monai_dataset("persistent", folder, count, size, build=False)
        paths = [folder / f"{dataset.hash_func({'index': i}).decode('utf-8')}.pt" for i in range(count)]
        return lambda index: torch.load(paths[index], mmap=True, weights_only=True)["image"]
    if name == "lmdb":
        dataset = _monai_dataset(name, folder, count, size, build=False)
        return lambda index: dataset[index]["image"]
    if name == "npy_mmap":

        def read(index: int) -> np.ndarray:
            path = folder / f"{index % 256:02x}" / f"{index}.npy"
            json.loads(path.with_suffix(".json").read_text())
            return np.load(path, mmap_mode="r")

        return read
    if name == "npz":

        def read_npz(index: int) -> np.ndarray:
            with np.load(folder / f"{index % 256:02x}" / f"{index}.npz") as data:
                return data["image"]

        return read_npz
    if name == "memmap_shard":
        images = np.load(folder / "images.npy", mmap_mode="r")
        meta = np.load(folder / "meta.npy", mmap_mode="r")
        return lambda index: (meta[index], images[index])[1]
    if name == "store":
        from scripts.data.store import read_entry

        store, sources = _store(folder, count)
        paths = [store.entry_path(s) for s in sources]
        return lambda index: read_entry(paths[index])[0]
    raise ValueError(name)


def _build(name: str, folder: Path, count: int, size: int) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    write = _writer(name, folder, count, size)
    if write is None:  # LMDBDataset fills its database in its constructor
        _monai_dataset(name, folder, count, size, build=True)
    else:
        entries = _entries(size)
        start = time.perf_counter()  # entries made outside the timing
        for index in range(count):
            write(index, entries[index % len(entries)])
    seconds = time.perf_counter() - start
    files = [p for p in folder.rglob("*") if p.is_file() and "sources" not in p.parts]
    disk = sum(p.stat().st_blocks * 512 for p in files)
    return {
        "build_entries_per_s": round(count / seconds, 1),
        "bytes_per_entry": round(disk / count),
        "payload_bytes_per_entry": size * size * 2,
        "files_per_entry": round(len(files) / count, 3),
    }


def _read(name: str, folder: Path, count: int, size: int, batch: int, batches: int) -> dict:
    import torch

    read = _reader(name, folder, count, size)
    order = np.random.default_rng(1).permutation(count)

    def timed(offset: int) -> float:
        times = []
        for b in range(batches):
            rows = order[offset + b * batch : offset + (b + 1) * batch]
            start = time.perf_counter()
            stacked = torch.stack([torch.as_tensor(np.asarray(read(int(i)))) for i in rows])
            times.append(time.perf_counter() - start)
            assert stacked.shape == (len(rows), 1, size, size) and stacked.dtype == torch.float16
        return float(np.median(times))

    _evict(folder)
    cold = timed(0)
    warm = timed(0)  # the same entries, now in the page cache
    before = _status("VmRSS", "RssFile")
    for index in order.tolist():  # one pass over every entry
        float(torch.as_tensor(np.asarray(read(int(index)))).float().sum())
    after = _status("VmRSS", "RssFile", "VmHWM")
    return {
        "batch": batch,
        "read_ms_per_batch_cold": round(cold * 1e3, 2),
        "read_ms_per_batch_warm": round(warm * 1e3, 2),
        "rss_growth_mb_over_one_pass": round((after["VmRSS"] - before["VmRSS"]) / 2**20, 1),
        "rss_file_growth_mb_over_one_pass": round((after["RssFile"] - before["RssFile"]) / 2**20, 1),
        "reader_peak_rss_mb": round(after["VmHWM"] / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--entries", type=int, default=2000, help="entries per candidate and size")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=20, help="timed batches, cold and warm each")
    parser.add_argument("--formats", nargs="+", default=list(CANDIDATES), choices=CANDIDATES)
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--child", nargs=3, metavar=("PHASE", "FORMAT", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import torch

        torch.set_num_threads(1)
        phase, name, size = args.child[0], args.child[1], int(args.child[2])
        folder = args.workdir / f"{name}_{size}"
        if phase == "build":
            result = _build(name, folder, args.entries, size)
        else:
            result = _read(name, folder, args.entries, size, args.batch, args.batches)
        print(json.dumps(result))
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="store_formats_"))
    results = []
    try:
        for size in args.sizes:
            for name in args.formats:
                result = {"format": name, "image_size": size, "entries": args.entries}
                for phase in ("build", "read"):
                    command = [sys.executable, __file__, "--child", phase, name, str(size), "--workdir", str(workdir)]
                    command += ["--entries", str(args.entries), "--batch", str(args.batch)]
                    command += ["--batches", str(args.batches)]
                    done = subprocess.run(command, capture_output=True, text=True)
                    if done.returncode != 0:
                        result["error"] = (done.stderr.strip().splitlines() or ["?"])[-1]
                        break
                    result.update(json.loads(done.stdout.strip().splitlines()[-1]))
                results.append(result)
                print(json.dumps(result), flush=True)
                shutil.rmtree(workdir / f"{name}_{size}", ignore_errors=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.output:
        load = os.getloadavg()
        report = {
            "command": "python scripts/benchmark_store_formats.py " + " ".join(sys.argv[1:]),
            "cpu_count": os.cpu_count(),
            "load_average_at_end": [round(v, 1) for v in load],
            "note": "one run on a 2-core machine shared with other work: compare formats within this run",
            "results": results,
        }
        args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
