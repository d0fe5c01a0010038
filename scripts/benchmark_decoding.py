"""Which DICOM decoders survive corrupt files, and what containing the others costs on the normal path.

Three measurements, in one run, for ``scripts/data/decoding.py``'s choices:

1. **Corrupt streams** (``--fuzz`` per syntax): for every claimed compressed syntax, a valid codestream is damaged
   in four ways in turn (truncated at a random point; a valid start followed by random bytes; random byte edits
   in its first 300 bytes; its first 4 bytes followed by random bytes) and each installed decoder reads each file in
   a contained child: the count of files it decoded anyway, refused with a Python error, or crashed on (the child
   died: abort, segmentation fault).
2. **Normal-path cost** on a real-size radiograph (a phantom of 2,500 px, 12 bits): per syntax, decoding by the same
   plugin in this process and in the contained child (``ContainedDecoder``: the pixels come back through a pipe),
   interleaved round by round so that machine noise hits both alike; and the bundle's whole ``load_cxr`` of each
   file (header checks, decoding by the bundle's plan, rescale, content checks), which is what the overhead adds to.
   Wall time (median) and CPU time (this process plus the child's own account of each request): on a shared machine
   the CPU time is the steadier measure. The child's start-up (Python, pydicom, NumPy) is paid once per process and
   thread that needs it.
3. **The overlay** that inference writes per image at the file's resolution (capped at 2,048 px): CPU time of the
   file-resolution copy (``OverlayImaged``), of drawing it (``render_file_overlay``) and of writing the PNG at zlib
   level 1 (the writer's) and 6 (Pillow's default), beside the network-grid overlay it replaces.
4. **The alternative**, recovering from a dead data-loader worker: its normal path costs nothing, a crash costs a
   new loader iterator; measured here as the time from a fresh ``DataLoader`` iterator with 2 workers to its first
   batch. (It would not cover loading in the main process: ``num_workers`` 0, the threads that fill the training
   cache, or a MONAI Label server, which runs the pre-processing in its own process.)

Results go to ``bundle/docs/benchmark_decoding.json``; the user guide quotes them. ``--parts overlay`` reruns one part
and keeps the others' results in the file.

    .venv/bin/python scripts/benchmark_decoding.py [--rounds 7] [--fuzz 40] [--parts decoding,overlay]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from repo_paths import BUNDLE_ROOT

import numpy as np
import pydicom
import torch
from compressed_dicom import CLAIMED_SYNTAXES, encode, save_dicom

from scripts.data.decoding import (
    ContainedDecoder,
    DecodeError,
    DecoderCrashError,
    _available_plugins,
    decode_in_process,
    decode_plan,
)
from scripts.data.loading import load_cxr

RESULTS = BUNDLE_ROOT / "docs" / "benchmark_decoding.json"
CLASSES = ["rib", "clavicle"]


def _radiograph(folder: Path, size: int) -> dict[int, Path]:
    """A phantom radiograph of ``size`` px (long side) as uncompressed 12-bit and 8-bit DICOM."""
    from cxr_phantom import render_phantom, write_dicom

    pixels = render_phantom(np.random.default_rng([3, 0]), size=size, difficulty=0.2, num_fractures=2).pixels
    twelve = folder / "plain12.dcm"
    write_dicom(twelve, pixels, uid_key="benchmark-decoding", patient_index=1)
    dataset = pydicom.dcmread(twelve)
    dataset.PixelData = (pixels >> 4).astype(np.uint8).tobytes()
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 8, 8, 7
    return {12: twelve, 8: save_dicom(dataset, folder / "plain8.dcm")}


def _stream(dataset: Any) -> bytes:
    from pydicom.encaps import generate_frames

    return next(generate_frames(dataset.PixelData, number_of_frames=1))


def fuzz(folder: Path, sources: dict[int, Path], count: int) -> dict[str, Any]:
    """Measurement 1: per syntax and installed decoder, what it does with ``count`` corrupt streams."""
    from pydicom.encaps import encapsulate

    results: dict[str, Any] = {}
    for name, (syntax, bits) in CLAIMED_SYNTAXES.items():
        valid = encode(sources[bits], folder / f"fuzz_{name}.dcm", syntax)
        dataset = pydicom.dcmread(valid)
        stream = _stream(dataset)
        rng = np.random.default_rng(11)
        files = []
        for index in range(count):
            kind = index % 4
            if kind == 0:
                data = stream[: int(rng.integers(4, len(stream)))]
            elif kind == 1:
                keep = int(rng.integers(20, min(600, len(stream) - 1)))
                data = stream[:keep] + rng.bytes(len(stream) - keep)
            elif kind == 2:
                edited = bytearray(stream)
                for position in rng.integers(0, min(300, len(edited)), 6):
                    edited[position] ^= int(rng.integers(1, 256))
                data = bytes(edited)
            else:
                data = stream[:4] + rng.bytes(int(rng.integers(10, 8000)))
            dataset.PixelData = encapsulate([data + b"\x00" * (len(data) % 2)])
            files.append(save_dicom(dataset, folder / f"fuzz_{name}_{index}.dcm"))
        per_plugin = {}
        for plugin in _available_plugins(pydicom.uid.UID(syntax)) or []:
            decoder = ContainedDecoder()
            outcome = {"decoded": 0, "python_error": 0, "crashed": 0}
            for path in files:
                try:
                    decoder.decode(path, plugin, timeout=120)
                    outcome["decoded"] += 1
                except DecoderCrashError:
                    outcome["crashed"] += 1
                except DecodeError:
                    outcome["python_error"] += 1
            decoder.close()
            per_plugin[plugin] = outcome
            print(f"[decoding] corrupt {name:18s} {plugin:10s} {outcome}", flush=True)
        results[name] = {"syntax": syntax, "files": count, "decoders": per_plugin}
        for path in files:
            path.unlink()
    return results


def _median_ms(times: list[float]) -> float:
    return round(1000 * statistics.median(times), 1)


def normal_path(folder: Path, sources: dict[int, Path], rounds: int) -> dict[str, Any]:
    """Measurement 2: in-process vs contained decoding by the same plugin, and the bundle's whole load_cxr."""
    decoder = ContainedDecoder()
    started = time.perf_counter()
    decoder.decode(sources[12], "")  # the child's start-up: Python, pydicom and NumPy imports, then one read
    first_call = time.perf_counter() - started
    steady = []
    for _ in range(3):
        started = time.perf_counter()
        decoder.decode(sources[12], "")
        steady.append(time.perf_counter() - started)
    results: dict[str, Any] = {"child_start_s": round(first_call - statistics.median(steady), 3)}
    files = {"uncompressed": (sources[12], "")}
    for name, (syntax, bits) in CLAIMED_SYNTAXES.items():
        files[name] = (encode(sources[bits], folder / f"{name}.dcm", syntax), syntax)
    for name, (path, syntax) in files.items():
        plan = decode_plan(pydicom.uid.UID(syntax)) if syntax else decode_plan(pydicom.uid.ExplicitVRLittleEndian)
        plugin = plan[0].plugin
        times: dict[str, list[float]] = {"in_process": [], "contained": [], "load_cxr": []}
        cpu: dict[str, list[float]] = {"in_process": [], "contained": [], "load_cxr": []}
        reference = decode_in_process(pydicom.dcmread(path), plugin)
        assert np.array_equal(decoder.decode(path, plugin), reference)
        own_child = ContainedDecoder.for_this_thread()  # the child load_cxr uses when the plan contains the decoder
        for _ in range(rounds):
            for mode in times:  # interleaved: each round times all three
                own_child.last_child_cpu_s = 0.0
                started, started_cpu = time.perf_counter(), time.process_time()
                if mode == "in_process":
                    decode_in_process(pydicom.dcmread(path), plugin)
                elif mode == "contained":
                    decoder.decode(path, plugin)
                else:
                    load_cxr(path)
                times[mode].append(time.perf_counter() - started)
                # CPU time: this process's, plus the child's own account of the request when it decoded contained
                child = {"contained": decoder.last_child_cpu_s, "load_cxr": own_child.last_child_cpu_s}.get(mode, 0.0)
                cpu[mode].append(time.process_time() - started_cpu + child)
        row = {
            "file_bytes": path.stat().st_size,
            "plugin": plugin or "numpy",
            "bundle_plan": [f"{step.plugin or 'numpy'}{' (contained)' if step.contained else ''}" for step in plan],
            **{f"{mode}_ms": _median_ms(values) for mode, values in times.items()},
            **{f"{mode}_cpu_ms": _median_ms(values) for mode, values in cpu.items()},
        }
        row["contained_extra_ms"] = round(row["contained_ms"] - row["in_process_ms"], 1)
        row["contained_extra_cpu_ms"] = round(row["contained_cpu_ms"] - row["in_process_cpu_ms"], 1)
        row["contained_extra_cpu_share_of_load_cxr"] = round(row["contained_extra_cpu_ms"] / row["load_cxr_cpu_ms"], 3)
        results[name] = row
        print(f"[decoding] normal path {name:18s} {row}", flush=True)
    decoder.close()
    return results


def overlay_cost(source: Path, rounds: int) -> dict[str, Any]:
    """Measurement 3: CPU-ms of the inference overlay of one real-size radiograph (median of ``rounds``)."""
    from scripts.data.transforms import LetterboxResized, PercentileScaleIntensityd
    from scripts.evaluate.overlays import OverlayImaged, render_file_overlay, render_overlay

    item = PercentileScaleIntensityd("image", 0.5, 99.5, 0.0, 1.0, clip=True)({"image": load_cxr(source)})
    side, size = 512, torch.tensor(item["image"].shape[1:], dtype=torch.float32)
    heatmap = torch.rand(2, side // 4, side // 4) ** 6  # a few hot cells, like a trained model's map
    detections = torch.tensor([[0.3 * float(size[0]), 0.4 * float(size[1]), 0.9, 0.0]])
    letterboxed = LetterboxResized("image", side)(dict(item))
    scale = torch.as_tensor(letterboxed["scale"])
    times: dict[str, list[float]] = {"copy": [], "draw": [], "png_level1": [], "png_level6": [], "network_grid": []}
    path = source.parent / "overlay.png"
    for _ in range(rounds):
        started = time.process_time()
        copy = OverlayImaged("image")(item)["overlay_image"]
        times["copy"].append(time.process_time() - started)
        started = time.process_time()
        picture = render_file_overlay(copy, side, heatmap, detections, scale, size, CLASSES, findings=[True])
        times["draw"].append(time.process_time() - started)
        for level in (1, 6):
            started = time.process_time()
            picture.save(path, compress_level=level)
            times[f"png_level{level}"].append(time.process_time() - started)
        started = time.process_time()
        small = render_overlay(letterboxed["image"], heatmap, detections, scale, size, CLASSES)
        small.save(path, compress_level=1)
        times["network_grid"].append(time.process_time() - started)
    result = {f"{name}_cpu_ms": _median_ms(values) for name, values in times.items()}
    result["overlay_size"] = list(picture.size)
    result["total_cpu_ms"] = round(result["copy_cpu_ms"] + result["draw_cpu_ms"] + result["png_level1_cpu_ms"], 1)
    print(f"[decoding] overlay {result}", flush=True)
    return result


class _Images(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.zeros(1, 64, 64)


def worker_restart(rounds: int) -> dict[str, float]:
    """Measurement 3: a fresh DataLoader iterator with 2 workers to its first batch (the cost of one recovery)."""
    loader = torch.utils.data.DataLoader(_Images(), batch_size=1, num_workers=2)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        iterator = iter(loader)
        next(iterator)
        times.append(time.perf_counter() - started)
        del iterator
    return {"new_iterator_first_batch_ms": _median_ms(times)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds (median reported)")
    parser.add_argument("--fuzz", type=int, default=40, help="corrupt streams per syntax (0: skip)")
    parser.add_argument("--size", type=int, default=2500, help="long side of the radiograph, px")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--parts", default="decoding,overlay", help="decoding (measurements 1, 2, 4), overlay (3)")
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    started = time.time()
    result: dict[str, Any] = json.loads(args.output.read_text()) if args.output.is_file() else {}
    run = {
        "command": "python scripts/benchmark_decoding.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "pydicom": pydicom.__version__, "load_average_at_start": list(os.getloadavg())},
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="benchmark_decoding_") as scratch:
        folder = Path(scratch)
        print(f"[decoding] rendering a {args.size} px phantom", flush=True)
        sources = _radiograph(folder, args.size)
        header = pydicom.dcmread(sources[12], stop_before_pixels=True)
        result["image"] = f"{header.Columns} x {header.Rows}, 12 bits stored (JPEG baseline: 8 bits)"
        if "decoding" in parts:
            result["normal_path"] = normal_path(folder, sources, args.rounds)
            result["worker_restart"] = worker_restart(args.rounds)
        if "overlay" in parts:
            result["overlay"] = overlay_cost(sources[12], args.rounds)
        if "decoding" in parts and args.fuzz:  # on a 256 px phantom: the damage, not the size, decides
            (folder / "small").mkdir()
            result["corrupt_streams"] = fuzz(folder, _radiograph(folder / "small", 256), args.fuzz)
    run["machine"]["load_average_at_end"] = list(os.getloadavg())
    run["wall_time_s"] = round(time.time() - started, 1)
    for part in sorted(parts):  # which command and machine produced each part's numbers
        result.setdefault("runs", {})[part] = run
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"[decoding] results in {args.output} ({run['wall_time_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
