"""Checkpoints that survive a crash: atomic writes, the best-metric state across resumes, ``latest`` resolution.

MONAI's ``CheckpointSaver`` (1.6.1) writes with ignite's ``DiskSaver(atomic=False)``, straight into the final
file, and ignite's ``Checkpoint`` removes the previous file *before* it writes the next one. A kill during a save
therefore leaves a truncated ``model.pt`` or no epoch checkpoint at all. And after ``--resume_checkpoint`` the
key-metric comparison starts from nothing, so the first validation after a resume replaces ``model.pt`` even when
it is worse than the best so far. This module fixes the three in place:

* :class:`AtomicDiskSaver` writes to a hidden temporary file in the same folder, flushes and fsyncs it, renames it
  over the target (atomic on POSIX and Windows), and only then deletes files the ``Checkpoint`` asked to remove.
  A kill at any moment leaves either the previous file or the new one, complete.
* :class:`SafeCheckpointSaver` is MONAI's ``CheckpointSaver`` with that saver. For the key-metric file
  (``model.pt``) it also writes the score into ``<name>_key_metric.json`` *before* the weights, and
  :meth:`SafeCheckpointSaver.restore_key_metric` reads it back on resume: ``model.pt`` stays a bare state dict
  that every loader reads as before, and is never replaced by an epoch that scores lower than the recorded one.
* :func:`resolve_resume` turns ``--resume_checkpoint latest`` into the newest intact checkpoint of ``ckpt_dir``.
* :class:`RandomStates` puts torch's, NumPy's and Python's global random states into the epoch checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import random
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.handlers.checkpoint import BaseSaveHandler
from monai.handlers import CheckpointSaver

__all__ = [
    "AtomicDiskSaver",
    "RandomStates",
    "SafeCheckpointSaver",
    "latest_checkpoint",
    "remove_stale_temporaries",
    "resolve_resume",
]

logger = logging.getLogger(__name__)

_TEMPORARY_SUFFIX = ".partial"


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (no-op where folders cannot be opened, e.g. Windows)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


@contextmanager
def atomic_open(path: Path, mode: str = "w", durable: bool = True) -> Iterator[IO]:
    """Open a hidden temporary file beside ``path`` for writing; on success it is renamed over ``path``.

    ``path`` is never half written: a failure (or a kill) leaves the previous file, and a failed write removes the
    temporary file. ``durable`` also flushes the data to disk before the rename (``fsync``).
    """
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TEMPORARY_SUFFIX)
    try:
        with os.fdopen(handle, mode) as stream:
            yield stream
            if durable:
                stream.flush()
                os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save(obj, path)`` through :func:`atomic_open`, then the folder is synced."""
    with atomic_open(path, "wb") as stream:
        torch.save(obj, stream)
    _fsync_folder(path.parent)


def write_json_atomic(data: Mapping[str, Any], path: Path, indent: int | None = None, allow_nan: bool = True) -> None:
    """Write ``data`` as JSON through :func:`atomic_open`: ``path`` is never half written."""
    with atomic_open(path) as stream:
        json.dump(data, stream, indent=indent, allow_nan=allow_nan)
        stream.write("\n")


class AtomicDiskSaver(BaseSaveHandler):
    """ignite save handler: atomic writes, removals deferred until the replacing file is complete.

    Args:
        dirname: folder of the checkpoints (created).
        filename: fixed file name that replaces ignite's generated one (e.g. ``model.pt``), or ``None``.
        score_file: for key-metric checkpoints, a JSON file written (atomically) *before* each checkpoint with
            ``{"key_metric": score, "file": name}``; ``None`` for none.

    Only rank 0 writes under ``torch.distributed``, like ignite's ``DiskSaver``.
    """

    def __init__(self, dirname: str | Path, filename: str | None = None, score_file: str | None = None) -> None:
        self.dirname = Path(dirname)
        self.dirname.mkdir(parents=True, exist_ok=True)
        self.filename = filename
        self.score_file = score_file
        self._pending_removals: list[str] = []

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        if idist.get_rank() != 0:  # one writer under DDP, as ignite's DiskSaver (every rank holds the same weights)
            return
        target = self.filename or filename
        if self.score_file is not None and metadata is not None:
            write_json_atomic(
                {"key_metric": float(metadata["priority"]), "file": target}, self.dirname / self.score_file
            )
        save_atomic(checkpoint, self.dirname / target)
        for name in self._pending_removals:
            if name != target:
                (self.dirname / name).unlink(missing_ok=True)
        self._pending_removals = []

    def remove(self, filename: str) -> None:
        """Called by ignite *before* the next save: deferred until that save is complete."""
        if self.filename is None:  # a fixed name is replaced in place by the next save
            self._pending_removals.append(filename)


class SafeCheckpointSaver(CheckpointSaver):
    """MONAI's ``CheckpointSaver`` writing atomically, with the key-metric score kept for resumes.

    Takes the arguments of ``monai.handlers.CheckpointSaver``. With ``save_key_metric`` and a fixed
    ``key_metric_filename`` (``model.pt``), the score of the saved model is written to
    ``<stem>_key_metric.json`` beside it before the model itself, so a kill between the two never leaves a
    ``model.pt`` better than its recorded score (a later epoch must beat the recorded score to replace it).
    """

    def __init__(self, save_dir: str, save_dict: dict, **kwargs: Any) -> None:
        super().__init__(save_dir, save_dict, **kwargs)
        key_metric_filename = kwargs.get("key_metric_filename")
        self.score_file = f"{Path(key_metric_filename).stem}_key_metric.json" if key_metric_filename else None
        if self._final_checkpoint is not None:
            self._final_checkpoint.save_handler = AtomicDiskSaver(save_dir, kwargs.get("final_filename"))
        if self._key_metric_checkpoint is not None:
            handler = AtomicDiskSaver(save_dir, key_metric_filename, self.score_file)
            self._key_metric_checkpoint.save_handler = handler
        if self._interval_checkpoint is not None:
            self._interval_checkpoint.save_handler = AtomicDiskSaver(save_dir)

    def restore_key_metric(self, evaluator: Any = None) -> float | None:
        """Resume the best-metric comparison from ``<stem>_key_metric.json``; return the score (None if absent).

        Args:
            evaluator: optional MONAI evaluator whose ``state.best_metric`` (used in its log lines) is set too.
        """
        if self._key_metric_checkpoint is None or self.score_file is None:
            return None
        path = Path(self.save_dir) / self.score_file
        if not path.is_file():
            logger.warning("resume: no %s, the best-metric comparison starts anew", path)
            return None
        record = json.loads(path.read_text())
        score = float(record["key_metric"])
        self.load_state_dict({"_saved": [(score, record["file"])]})
        if evaluator is not None:
            evaluator.state.best_metric = score
        logger.info("resume: %s holds the best model so far (key metric %.4f)", record["file"], score)
        return score


class RandomStates:
    """torch's (CPU and CUDA), NumPy's and Python's global random states as a checkpointable object.

    In ``save_dict`` it makes a resumed run draw the same random numbers after the restored epoch as the
    uninterrupted run did: the weighted sampler's draws, the batched augmentation's parameters and noise
    (``scripts.data.batch_augmentation`` draws from torch's global generators) and the seeds of data-loader workers.
    MONAI random transforms running in the main process keep their own generators, which are not restored. Under
    ``torch.distributed`` the file holds rank 0's states; the other ranks reseed from them plus their rank, so that
    they keep distinct streams.
    """

    def state_dict(self) -> dict[str, Any]:
        state = np.random.get_state()
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy_keys": torch.as_tensor(state[1].astype(np.int64)),
            "numpy_position": int(state[2]),
            "python": list(random.getstate()[1]),
            "python_version": int(random.getstate()[0]),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        keys = np.asarray(state["numpy_keys"], dtype=np.uint32)
        np.random.set_state(("MT19937", keys, int(state["numpy_position"]), 0, 0.0))
        random.setstate((int(state["python_version"]), tuple(int(v) for v in state["python"]), None))
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        if rank > 0:  # the checkpoint holds rank 0's states: give every other rank its own stream again
            seed = int(torch.randint(2**31 - 1 - rank, (1,))) + rank
            torch.manual_seed(seed)
            np.random.seed(seed)
            random.seed(seed)


def remove_stale_temporaries(ckpt_dir: str | Path) -> list[Path]:
    """Delete the temporary files of writes that a kill interrupted; return them."""
    folder = Path(ckpt_dir)
    stale = sorted(folder.glob(f".*{_TEMPORARY_SUFFIX}")) if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
        logger.warning("removed %s, left by an interrupted checkpoint write", path)
    return stale


def _trainer_iteration(path: Path) -> int | None:
    """The trainer iteration stored in a training checkpoint; None if it is not one or cannot be read."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: skip it, say why
        logger.warning("resume: %s cannot be read (%s); skipped", path, str(error).splitlines()[0][:200])
        return None
    trainer = checkpoint.get("trainer") if isinstance(checkpoint, Mapping) else None
    if not isinstance(trainer, Mapping) or "iteration" not in trainer:
        return None
    return int(trainer["iteration"])


def latest_checkpoint(ckpt_dir: str | Path) -> Path | None:
    """The intact training checkpoint (one with a ``trainer`` state) of ``ckpt_dir`` with the most iterations.

    Ties go to the newer file. Files that cannot be loaded are skipped with a warning; weights-only files such as
    ``model.pt`` are not training checkpoints.
    """
    folder = Path(ckpt_dir)
    best: tuple[int, float, Path] | None = None
    for path in sorted(folder.glob("*.pt")) if folder.is_dir() else []:
        iteration = _trainer_iteration(path)
        if iteration is not None and (best is None or (iteration, path.stat().st_mtime) > best[:2]):
            best = (iteration, path.stat().st_mtime, path)
    return None if best is None else best[2]


def resolve_resume(checkpoint: str | None, ckpt_dir: str | Path) -> str:
    """The checkpoint file to resume from, ``""`` for a fresh start.

    Args:
        checkpoint: ``""``/``None`` (fresh start), a path, or ``"latest"``: the newest intact training checkpoint
            in ``ckpt_dir`` (:func:`latest_checkpoint`), or a fresh start if there is none, so that a job can
            always be restarted with the same command.
        ckpt_dir: checkpoint folder; leftovers of interrupted writes are removed from it when resuming.

    Raises:
        FileNotFoundError: ``checkpoint`` is a path that does not exist.
    """
    if not checkpoint:
        return ""
    remove_stale_temporaries(ckpt_dir)
    if str(checkpoint).strip().lower() == "latest":
        latest = latest_checkpoint(ckpt_dir)
        if latest is None:
            logger.warning("resume: no intact training checkpoint in %s; starting from the beginning", ckpt_dir)
            return ""
        logger.info("resume: latest intact checkpoint is %s", latest)
        return str(latest)
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"{checkpoint}: checkpoint to resume from not found.")
    return str(checkpoint)
