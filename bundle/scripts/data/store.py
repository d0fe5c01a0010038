"""A persistent store of preprocessed radiographs on disk, shared by every stage, process and rank.

Decoding a 2,500-pixel DICOM, scaling its intensities and letterboxing it to the network's size costs about
120 CPU-ms. An in-RAM ``CacheDataset`` pays that for every image before the first step of every run, in every
process, and holds the result in RAM (0.5 MB per image at 512 px, per process). This store pays it once per image:
the deterministic, *file*-dependent part of the preprocessing (``image_transforms``: load, scale, letterbox) is
written to one file per image, and training, calibration, stage 2 and evaluation read it back. What depends on the
datalist (labels, boxes, box masks) is cheap and is computed per read by ``item_transforms``, so correcting a box
rebuilds nothing.

Layout (``cache_dir``)::

    <cache_dir>/<fingerprint>/settings.json        what the fingerprint hashes (for people)
    <cache_dir>/<fingerprint>/refused.json         files the last build could not preprocess, with the reason
    <cache_dir>/<fingerprint>/ab/<file key>.npy    one entry per image

* **fingerprint**: SHA-256 of the preprocessing settings: each transform's class and its settings (image size,
  percentiles, output range, DICOM tag policy ...), the stored dtype and :data:`PREPROCESSING_VERSION`. Change any
  of them and a new folder is used, so only entries built with other settings are rebuilt; the old folder can be
  deleted.
* **file key**: SHA-256 of the file's real path, size and modification time (ns). A ``stat`` per file, so a warm
  store opens in about a second for 65,845 files; a content hash would read every byte of the archive (about
  800 GB for the paper's data set) at every start. A file that is replaced or touched gets a new key (rebuilt);
  a moved archive is rebuilt once.
* **entry**: an ``.npy`` file with the image ``(1, S, S)`` (float16 by default) followed by a second ``.npy`` array
  holding its metadata as JSON (file size ``[W, H]``, letterbox scale, input warnings): NumPy's own format, read
  with one ``np.load`` per array (no memory map: a mapped page counts in the process's RSS until unmapped, a read
  page stays in the kernel's page cache). The measured alternatives are in the model card.

Entries are written to a temporary file in the same folder and renamed into place (a reader never sees half an
entry), so a killed build leaves only complete entries and the next one continues; an unreadable entry (a disk
fault) is rebuilt when read. Two processes may build the same store at once: the same entry written twice is the
same bytes, and under ``torch.distributed`` each rank starts with its own share of the missing entries.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import DataLoader, Dataset
from monai.transforms import Compose

from scripts.data.cache import CheckedCacheDataset, unreadable_cause
from scripts.data.datalist import real_path
from scripts.data.loading import CXRInputError
from scripts.data.transforms import ScaleBoxesd
from scripts.utils.progress import PeriodicProgress, is_terminal

__all__ = [
    "PREPROCESSING_VERSION",
    "BuildReport",
    "PreprocessedStore",
    "StoreBuildError",
    "StoreDataset",
    "file_key",
    "preprocessed_dataset",
    "read_entry",
    "transform_settings",
]

logger = logging.getLogger(__name__)

#: Bump when the *output* of the loaders or the letterbox changes for the same settings (a bug fix, a new decoder):
#: every store then starts a new folder. Settings changes need no bump: they are in the fingerprint.
#: Not bumped for the per-syntax DICOM decoders (scripts.data.decoding): on a 512 x 480 test radiograph GDCM, Pillow
#: and pylibjpeg-openjpeg gave identical pixels for lossy JPEG baseline and JPEG 2000.
PREPROCESSING_VERSION = 1
#: Keys an entry stores besides the image (what LoadCXRImaged and LetterboxResized add that training reads).
ENTRY_KEYS = ("original_size", "scale", "input_warnings")
_TMP_PREFIX = ".tmp-"


class StoreBuildError(ValueError):
    """Some images could not be preprocessed; the message lists every one with its reason."""


def file_key(path: str | os.PathLike) -> str:
    """Identity of an image file: SHA-256 (hex, 32 characters) of its real path, size and mtime in ns.

    Raises:
        FileNotFoundError: the file does not exist (the message names it).
    """
    real = real_path(path)
    try:
        stat = os.stat(real)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{path}: file not found.") from error
    identity = f"{real}\0{stat.st_size}\0{stat.st_mtime_ns}"
    return hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def _plain(value: Any, depth: int = 0) -> Any:
    """JSON-able description of a transform setting (numbers, strings, sequences; objects by class and settings)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, torch.dtype | np.dtype | type):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, depth + 1) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, Sequence | np.ndarray | torch.Tensor):
        return [_plain(v, depth + 1) for v in (value.tolist() if hasattr(value, "tolist") else value)]
    if depth < 3 and hasattr(value, "__dict__"):  # a nested transform (Resize, SpatialPad ...): its own settings
        return {"class": f"{type(value).__module__}.{type(value).__qualname__}", **_settings_of(value, depth + 1)}
    return f"{type(value).__module__}.{type(value).__qualname__}"


def _settings_of(obj: Any, depth: int) -> dict[str, Any]:
    skip = {"R", "lazy", "_lazy", "overrides", "_overrides", "tracing", "backend", "allow_missing_keys"}
    return {k: _plain(v, depth) for k, v in sorted(vars(obj).items()) if k not in skip and not callable(v)}


def transform_settings(transforms: Sequence[Callable] | Compose) -> list[dict[str, Any]]:
    """Each transform's class and its settings (public and private attributes that are plain values)."""
    transforms = transforms.transforms if isinstance(transforms, Compose) else transforms
    return [
        {"class": f"{type(t).__module__}.{type(t).__qualname__}", **_settings_of(t, 1)} for t in transforms
    ]  # fmt: skip


@dataclass
class BuildReport:
    """What :meth:`PreprocessedStore.build` did.

    Attributes:
        total: source files asked for; present: already in the store (or written meanwhile by another process);
            built: written by this build.
        refused: ``{path: reason}`` of the files that could not be preprocessed (not stored).
        seconds: wall time of the build; entry_bytes: bytes on disk of the entries of the sources.
    """

    total: int = 0
    present: int = 0
    built: int = 0
    refused: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    entry_bytes: int = 0


class _BuildJobs(torch.utils.data.Dataset):
    """One build job per missing entry, run in DataLoader worker processes; each returns only a status line."""

    def __init__(self, store: PreprocessedStore, sources: Sequence[str]) -> None:
        self.store, self.sources = store, list(sources)

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> tuple[str, str, bool]:
        """``(source, reason it was refused or "", whether it was written now)``."""
        source = self.sources[index]
        try:
            if self.store.has(source):  # another process built it meanwhile
                return source, "", False
            self.store.write(source, self.store.preprocess(source))
        except Exception as error:  # any failure of one file is reported, the build goes on
            return source, _reason(error), False
        return source, "", True


def _reason(error: BaseException) -> str:
    """The innermost message of MONAI's ``applying transform`` wrappers, else ``Type: message``."""
    while isinstance(error, RuntimeError) and str(error).startswith("applying transform") and error.__cause__:
        error = error.__cause__
    text = str(error).strip()
    return text if isinstance(error, ValueError | FileNotFoundError) and text else f"{type(error).__name__}: {text}"


class PreprocessedStore:
    """Preprocessed images on disk, keyed by file identity and the preprocessing settings (module docstring).

    Args:
        cache_dir: root folder of the store (created); several settings and data sets may share it.
        image_transforms: the deterministic chain from ``{"image": path}`` to the letterboxed image ``(1, S, S)``
            with ``original_size``, ``scale`` and ``input_warnings`` (``train.json``'s ``image_transforms``).
        dtype: dtype of the stored image (float16: 0.5 MB per 512-px image; intensities in [0, 1] keep 11 bits).
        image_key: key of the image path in the items and of the image in the transforms' output.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike,
        image_transforms: Sequence[Callable] | Compose,
        dtype: str | np.dtype = "float16",
        image_key: str = "image",
    ) -> None:
        self.transforms = image_transforms if isinstance(image_transforms, Compose) else Compose(image_transforms)
        self.dtype = np.dtype(dtype)
        self.image_key = image_key
        self.settings = {
            "preprocessing_version": PREPROCESSING_VERSION,
            "dtype": str(self.dtype),
            "image_key": image_key,
            "transforms": transform_settings(self.transforms),
        }
        text = json.dumps(self.settings, sort_keys=True)
        self.fingerprint = hashlib.sha256(text.encode()).hexdigest()[:16]
        self.root = Path(cache_dir)
        self.folder = self.root / self.fingerprint
        self.folder.mkdir(parents=True, exist_ok=True)
        settings_file = self.folder / "settings.json"
        if not settings_file.is_file():
            _write_atomic(settings_file, (json.dumps(self.settings, indent=2) + "\n").encode())

    # -- entries -------------------------------------------------------------------------------------------
    def entry_path(self, source: str | os.PathLike) -> Path:
        """Where the entry of ``source`` lives (it may not exist yet)."""
        key = file_key(source)
        return self.folder / key[:2] / f"{key}.npy"

    def has(self, source: str | os.PathLike) -> bool:
        """Whether a complete entry for the current version of ``source`` exists."""
        return self.entry_path(source).is_file()

    def preprocess(self, source: str | os.PathLike) -> dict[str, Any]:
        """Run the image transforms on ``source``: ``{"image": (1, S, S) array, **ENTRY_KEYS}``."""
        out = self.transforms({self.image_key: str(source)})
        image = np.asarray(torch.as_tensor(out[self.image_key]).detach().cpu(), dtype=self.dtype)
        meta = {
            "source": str(source),
            "original_size": [float(v) for v in torch.as_tensor(out["original_size"]).tolist()],
            "scale": [float(v) for v in torch.as_tensor(out["scale"]).tolist()],
            "input_warnings": str(out.get("input_warnings", "")),
        }
        return {"image": image, "meta": meta}

    def write(self, source: str | os.PathLike, entry: Mapping[str, Any]) -> Path:
        """Write ``entry`` (from :meth:`preprocess`) atomically as the entry of ``source``; return its path."""
        path = self.entry_path(source)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(entry["image"]), allow_pickle=False)
        np.save(buffer, np.array(json.dumps(entry["meta"])), allow_pickle=False)
        _write_atomic(path, buffer.getbuffer())
        return path

    def read(self, source: str | os.PathLike, rebuild: bool = True) -> dict[str, Any]:
        """The stored entry of ``source``: ``image`` (tensor ``(1, S, S)``, the stored dtype), ``original_size``
        and ``scale`` (float32 ``(2,)``), ``input_warnings`` (str).

        A missing or unreadable entry (a file changed since the build, a disk fault) is built now when
        ``rebuild``; the input checks apply as in a build (their error propagates, naming the file).
        """
        path = self.entry_path(source)
        try:
            image, meta = read_entry(path)
        except (OSError, ValueError, EOFError) as error:
            if not rebuild:
                raise
            if path.exists():
                logger.warning("store entry %s of %s is unreadable (%s): rebuilding it", path, source, error)
            entry = self.preprocess(source)
            self.write(source, entry)
            image, meta = entry["image"], entry["meta"]
        return {
            self.image_key: torch.from_numpy(image),
            "original_size": torch.tensor(meta["original_size"], dtype=torch.float32),
            "scale": torch.tensor(meta["scale"], dtype=torch.float32),
            "input_warnings": meta["input_warnings"],
        }

    def read_meta(self, source: str | os.PathLike) -> dict[str, Any]:
        """The metadata of the stored entry of ``source`` (``original_size``, ``scale``, ``input_warnings``) without
        reading its image: two small reads (the image header, then the metadata after the image)."""
        path = self.entry_path(source)
        with open(path, "rb", buffering=0) as stream:
            head = bytearray(stream.read(4096))
            image_end = _array_end(head)
            stream.seek(image_end)
            tail = bytearray(stream.read())
        meta, _ = _array_at(tail, 0)
        return json.loads(str(meta[()]))

    # -- building ------------------------------------------------------------------------------------------
    def build(
        self,
        sources: Iterable[str | os.PathLike],
        num_workers: int = 0,
        progress: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        desc: str = "data",
    ) -> BuildReport:
        """Build the missing entries of ``sources`` in ``num_workers`` processes (0: this one), with a progress bar.

        Under ``torch.distributed`` (or with ``rank``/``world_size``) rank ``r`` first builds the missing entries
        ``r, r + w, ...`` and then any others still missing, so ranks share the work without waiting for each
        other. Files that cannot be preprocessed are not stored; they are listed in the report and in
        ``refused.json`` (and retried by the next build). ``desc`` names the data in the progress output.
        """
        start = time.perf_counter()
        sources = list(dict.fromkeys(str(s) for s in sources))
        self._remove_stale_temporaries()
        report = BuildReport(total=len(sources))
        missing = []
        for source in sources:  # one stat of the file (its key) and one of its entry: ~1 s for 65,845 files
            try:
                path = self.entry_path(source)
            except FileNotFoundError as error:
                report.refused[source] = str(error)
                continue
            try:
                report.entry_bytes += os.stat(path).st_blocks * 512
                report.present += 1
            except FileNotFoundError:
                missing.append(source)
        rank, world_size = _rank_and_world(rank, world_size)
        order = missing[rank::world_size] + [s for i, s in enumerate(missing) if i % world_size != rank]
        if order:
            logger.info(
                "preprocessed store %s: building %d of %d entries with %d worker(s)",
                self.folder, len(order), len(sources), num_workers,
            )  # fmt: skip
            # A DataLoader runs the jobs in worker processes (as it would run a Dataset's transforms); its own
            # generator, because a loader draws its workers' base seed from it: the global one stays untouched, so a
            # seeded run samples and augments as it would with the in-RAM cache.
            loader = DataLoader(
                _BuildJobs(self, order), batch_size=None, shuffle=False, num_workers=num_workers,
                collate_fn=lambda job: job, persistent_workers=False, generator=torch.Generator(),
            )  # fmt: skip
            bar = _progress(loader, len(order), progress and rank == 0, f"preprocessed store ({desc})")
            for source, reason, written in bar:
                if reason:
                    report.refused[source] = reason
                report.built += written
                report.present += not (reason or written)
        report.entry_bytes += self._entry_bytes([s for s in missing if s not in report.refused])
        report.seconds = time.perf_counter() - start
        self._write_refused(report.refused)
        logger.info(
            "preprocessed store %s: %d entries (%d built now, %d refused), %.2f GB on disk for these files",
            self.folder, report.total - len(report.refused), report.built, len(report.refused),
            report.entry_bytes / 1e9,
        )  # fmt: skip
        return report

    def _entry_bytes(self, sources: Sequence[str]) -> int:
        total = 0
        for source in sources:
            try:
                total += self.entry_path(source).stat().st_blocks * 512
            except FileNotFoundError:
                continue
        return total

    def _write_refused(self, refused: Mapping[str, str]) -> None:
        path = self.folder / "refused.json"
        if refused or path.exists():
            _write_atomic(path, (json.dumps(dict(sorted(refused.items())), indent=2) + "\n").encode())

    def _remove_stale_temporaries(self) -> None:
        """Delete temporary files of builds whose process no longer runs (a killed build)."""
        for tmp in self.folder.glob(f"*/{_TMP_PREFIX}*"):
            try:
                pid = int(tmp.name[len(_TMP_PREFIX) :].split("-")[0])
                os.kill(pid, 0)  # signal 0: only checks that the process exists
            except ProcessLookupError:
                tmp.unlink(missing_ok=True)
            except (ValueError, PermissionError):
                continue

    def size_on_disk(self) -> int:
        """Bytes on disk of this settings folder (every entry, whichever data set it came from)."""
        return sum(p.stat().st_blocks * 512 for p in self.folder.rglob("*") if p.is_file())


#: Parsed ``.npy`` headers by their bytes: every entry of a store has the same image header, so NumPy's header
#: parser (a Python literal evaluation, about half the cost of reading a 256-px entry) runs once per kind.
_HEADERS: dict[bytes, tuple[np.dtype, tuple[int, ...]]] = {}


def _header(data: bytearray, offset: int) -> tuple[np.dtype, tuple[int, ...], int]:
    """dtype, shape and end offset of the ``.npy`` header at ``offset`` of ``data``."""
    if data[offset : offset + 6] != b"\x93NUMPY":
        raise ValueError("not an .npy array")
    major = data[offset + 6]
    length_size = 2 if major == 1 else 4
    start = offset + 8 + length_size
    end = start + int.from_bytes(data[offset + 8 : start], "little")
    header = bytes(data[offset:end])
    if len(header) != end - offset:
        raise ValueError("truncated store entry")
    if header not in _HEADERS:
        stream = io.BytesIO(header)
        reader = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        np.lib.format.read_magic(stream)
        shape, fortran, dtype = reader(stream)
        if fortran or dtype.hasobject:
            raise ValueError("unexpected array layout in a store entry")
        _HEADERS[header] = (dtype, shape)
    dtype, shape = _HEADERS[header]
    return dtype, shape, end


def _array_end(data: bytearray) -> int:
    """Offset just after the first ``.npy`` array of an entry, from its header alone."""
    dtype, shape, end = _header(data, 0)
    return end + int(np.prod(shape)) * dtype.itemsize


def _array_at(data: bytearray, offset: int) -> tuple[np.ndarray, int]:
    """The ``.npy`` array starting at ``offset`` of ``data`` (a view, no copy) and the offset after it."""
    dtype, shape, end = _header(data, offset)
    count = int(np.prod(shape))
    if end + count * dtype.itemsize > len(data):
        raise ValueError("truncated store entry")
    return np.frombuffer(data, dtype=dtype, count=count, offset=end).reshape(shape), end + count * dtype.itemsize


def read_entry(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a store entry: the image array (writable, backed by one buffer read in a single call) and its metadata.

    The file is two ``.npy`` arrays one after the other (``np.load`` on an open file reads them in turn); this
    reads it whole with one ``readinto`` and takes both arrays from the buffer.

    Raises:
        OSError, ValueError: the entry is missing, truncated or not a store entry.
    """
    with open(path, "rb", buffering=0) as stream:
        data = bytearray(os.fstat(stream.fileno()).st_size)
        if stream.readinto(data) != len(data):
            raise ValueError(f"{path}: short read")
    image, end = _array_at(data, 0)
    meta, _ = _array_at(data, end)
    return image, json.loads(str(meta[()]))


def _write_atomic(path: Path, data: bytes | memoryview) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place (no half-written ``path``).

    The temporary name starts with the writer's process id, so that a later build can remove those of killed
    builds. No fsync: an entry lost in a power cut is rebuilt when read (:meth:`PreprocessedStore.read`).
    """
    fd, tmp = tempfile.mkstemp(prefix=f"{_TMP_PREFIX}{os.getpid()}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _rank_and_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is None or world_size is None:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1
    return int(rank), max(int(world_size), 1)


def _progress(iterable: Iterable, total: int, enabled: bool, desc: str) -> Iterable:
    """tqdm in a terminal (a requirement; MONAI's CacheDataset shows its progress with it too), plain periodic log
    lines otherwise (a CI log, ``nohup``: :class:`scripts.utils.progress.PeriodicProgress`), or the bare iterable."""
    if not enabled:
        return iterable
    if not is_terminal():
        return _logged(iterable, PeriodicProgress(total, desc))
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="img", smoothing=0.05)


def _logged(iterable: Iterable, lines: PeriodicProgress) -> Iterator:
    for item in iterable:
        yield item
        lines.update()


class StoreDataset(Dataset):
    """Items of a datalist with their image read from a :class:`PreprocessedStore`, then ``transform`` applied.

    ``__getitem__`` returns the item with ``image`` (tensor ``(1, S, S)``, the store's dtype), ``original_size``,
    ``scale``, ``input_warnings`` and, with ``path_key``, the file's path, passed through ``transform`` (the
    per-item part: boxes, masks, dtype). Nothing is held in RAM between reads.

    Args:
        data: datalist items with an ``image`` path.
        store: the store (built or not: a missing entry is built when read).
        transform: per-item transforms after the stored ones.
        path_key: key to receive the image's path (e.g. ``"image_path"``), or None.
        desc: what the data are, for the warnings (e.g. ``"training data"``).
        replace_unreadable: an image whose entry must be rebuilt during the run (its file changed after the build)
            and can no longer be read is replaced by the next readable one, with a warning naming it (training);
            otherwise the file's :class:`scripts.data.loading.CXRInputError` is raised (validation, evaluation,
            where each image counts once).
    """

    def __init__(
        self,
        data: Sequence[Mapping[str, Any]],
        store: PreprocessedStore,
        transform: Callable | None = None,
        path_key: str | None = None,
        desc: str = "data",
        replace_unreadable: bool = False,
    ) -> None:
        super().__init__(data=data, transform=transform)
        self.store, self.path_key = store, path_key
        self.desc, self.replace_unreadable = desc, replace_unreadable
        self.build_report: BuildReport | None = None

    def _transform(self, index: int) -> Any:
        attempts = len(self.data) if self.replace_unreadable else 1
        for attempt in range(attempts):
            position = (index + attempt) % len(self.data)
            try:
                return self._item(position)
            except Exception as error:
                cause = unreadable_cause(error)
                if cause is None:
                    raise
                if not self.replace_unreadable:
                    raise cause from error  # the file and its reason, not MONAI's "applying transform ..."
                source = self.data[position][self.store.image_key]
                logger.warning("%s: skipped %s, which cannot be read now: %s", self.desc, source, cause)
        raise CXRInputError(f"{self.desc}: no image can be read.")

    def _item(self, index: int) -> Any:
        item = dict(self.data[index])
        source = item[self.store.image_key]
        if self.path_key:
            item[self.path_key] = str(source)
        item.update(self.store.read(source))
        return item if self.transform is None else self.transform(item)


def preprocessed_dataset(
    data: Sequence[Mapping[str, Any]],
    image_transforms: Sequence[Callable],
    item_transforms: Sequence[Callable],
    full_transform: Callable,
    cache_dir: str | os.PathLike | None,
    num_workers: int = 0,
    cache_rate: float = 1.0,
    copy_cache: bool = True,
    path_key: str | None = None,
    progress: bool = True,
    check_items: bool = True,
    dtype: str = "float16",
    desc: str = "data",
    replace_unreadable: bool = False,
) -> Dataset:
    """The dataset a config asks for: a :class:`StoreDataset` with ``cache_dir``, else an in-RAM ``CacheDataset``
    (:class:`scripts.data.cache.CheckedCacheDataset`).

    Either way every image is read before the first step, and unreadable ones refuse the data set in one error
    that lists them all: a corrupt DICOM whose decoder crashes is one of them (the crash is contained in a child
    process, :mod:`scripts.data.decoding`), never the end of a run. With a ``cache_dir`` the store is built for
    ``data`` first (``num_workers`` processes, progress bar); if any file cannot be preprocessed,
    :class:`StoreBuildError` lists all of them (the others stay stored, so the rerun after fixing the datalist
    starts where this one stopped). Items with boxes or a label map then go
    through ``item_transforms`` once, so that a box outside its image is refused before the first step, as the
    in-RAM cache would.

    Args:
        data: datalist items.
        image_transforms: the file-dependent chain (stored).
        item_transforms: the per-read chain (boxes, masks, dtype) applied to the stored image.
        full_transform: the whole chain for the in-RAM path (``cache_dir`` empty or None).
        cache_dir: store folder, or ``""``/None for an in-RAM ``CacheDataset`` (rebuilt in every process).
        num_workers: build processes (store) or threads (``CacheDataset``).
        cache_rate, copy_cache: ``CacheDataset`` settings (in-RAM path only).
        path_key: key receiving the image path (store path; the in-RAM chain sets it itself).
        progress: show progress bars.
        check_items: run ``item_transforms`` once on items with boxes or a label map (store path).
        dtype: dtype of the stored images: float16 for training (what the in-RAM training cache holds), float32 for
            validation and test images (what the network was evaluated on in RAM); an image is in one split only, so
            nothing is stored twice.
        desc: what the data are, for the progress and the refusal (e.g. ``"training data"``).
        replace_unreadable: an image that cannot be read during training (in RAM: outside the cache with
            ``cache_rate`` below 1; store: its file changed after the build) is replaced by the next readable one,
            with a warning naming it, instead of ending the run.

    The store's build report is the dataset's ``build_report`` attribute.
    """
    if not cache_dir:
        return CheckedCacheDataset(
            data=data, transform=full_transform, desc=desc, replace_unreadable=replace_unreadable,
            cache_rate=cache_rate, copy_cache=copy_cache, num_workers=num_workers, progress=progress,
        )  # fmt: skip
    store = PreprocessedStore(cache_dir, image_transforms, dtype=dtype)
    report = store.build([item["image"] for item in data], num_workers=num_workers, progress=progress, desc=desc)
    if report.refused:
        listing = "\n  ".join(f"{path}: {reason}" for path, reason in list(report.refused.items())[:50])
        more = f"\n  ... and {len(report.refused) - 50} more" if len(report.refused) > 50 else ""
        raise StoreBuildError(
            f"{desc}: {len(report.refused)} of {report.total} images cannot be used, so the run stops before its "
            f"first step. Remove them from the datalist (or replace them) and start again (listed in "
            f"{store.folder / 'refused.json'}):\n  {listing}{more}"
        )
    dataset = StoreDataset(
        data, store, Compose(list(item_transforms)), path_key=path_key, desc=desc,
        replace_unreadable=replace_unreadable,
    )  # fmt: skip
    dataset.build_report = report
    if check_items:
        _check_items(dataset, item_transforms)
    return dataset


def _check_items(dataset: StoreDataset, item_transforms: Sequence[Callable]) -> None:
    """Refuse before the first step what the in-RAM cache would have refused while it was built.

    Boxes outside their image: the item transforms' :class:`~scripts.data.transforms.ScaleBoxesd` runs on each
    boxed item with the stored file size, read from the entry's metadata alone (not its image). Items with a label
    map (MONAI Label's pairs) run the whole per-read chain once.
    """
    scalers = [t for t in item_transforms if isinstance(t, ScaleBoxesd)]
    for index, item in enumerate(dataset.data):
        if "label" in item or (len(item.get("boxes", ())) and not scalers):
            dataset[index]
        elif len(item.get("boxes", ())):
            meta = dataset.store.read_meta(item[dataset.store.image_key])
            probe = {**item, "original_size": meta["original_size"], "scale": meta["scale"]}
            probe.setdefault("image_path", str(item[dataset.store.image_key]))
            for scaler in scalers:
                scaler(probe)
