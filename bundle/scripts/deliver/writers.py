"""Ignite handler writing per-image detection JSON files and heatmap overlays, and a run summary.

MONAI's ``SaveImage`` writes images and ``ClassificationSaver`` writes CSV rows; neither writes the per-image
JSON a PACS integration or a reader study needs (detections with class, position and score), nor accounts for
every input path of a run, so this handler does. Each result JSON is written last and atomically (a temporary
file renamed into place), so a result file that exists is complete: ``skip_existing`` relies on it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import torch

from scripts.data.loading import WARNINGS_KEY
from scripts.deliver.inference import strip_image_suffix
from scripts.deliver.records import detection_record
from scripts.evaluate.operating_point import finding_flags
from scripts.evaluate.overlays import OVERLAY_KEY, render_file_overlay, render_overlay
from scripts.utils.checkpoints import atomic_open

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["DetectionWriter", "write_text_atomic"]

logger = logging.getLogger(__name__)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through :func:`scripts.utils.checkpoints.atomic_open`: never half a file. No fsync:
    one result per image of a large archive, where a per-file disk flush would cost more than a lost result."""
    with atomic_open(path, durable=False) as stream:
        stream.write(text)


class DetectionWriter:
    """Write ``<name>.json`` (and ``<name>_overlay.png``) per image and ``summary.json`` at the end.

    The overlay is drawn at the file's resolution, up to 2,048 pixels on the long side, over the copy that
    :class:`scripts.evaluate.overlays.OverlayImaged` keeps before the resize (``overlay_image``); without that key, on
    the network's grid. Its legend sits in a band below the image.

    ``<name>`` is the item's ``output_name`` (see :func:`scripts.deliver.inference.output_names`: the path relative to
    the input folder without its ending, unique for every input), else the file name without its ending. Per-image
    JSON::

        {"image": path, "image_size": [W, H], "classes": [...],
         "image_score": {class: probability},
         "detections": [{"class": "rib", "x": 812.5, "y": 1033.0, "score": 0.93}, ...],
         "warnings": ["DICOM ViewPosition is not set: ..."]}

    ``x``/``y`` are continuous pixel coordinates of the original file (x = column, y = row). ``summary.json``
    accounts for every path: ``{"processed": n, "refused": n, "skipped": n, "existing": n, "with_warnings": n,
    "images": [{"image": path, "status": ..., "result": name.json | "reason": text, "warnings": [...]}]}`` with
    status ``processed`` (result written), ``refused`` (an image file that cannot be scored, e.g. unreadable or
    blank: ``error`` set by :class:`scripts.deliver.inference.FailSafeDataset`), ``skipped`` (not an image file) or
    ``existing`` (result already there, ``skip_existing``). The run goes on past every refused file.

    With an ``operating_point`` every detection also has ``"finding"`` and the record ``"image_call"`` and
    ``"operating_point"`` (:func:`scripts.deliver.records.detection_record`).

    Args:
        output_dir: folder for the results (created).
        class_names: heatmap channel names.
        overlay: also write an overlay PNG per image.
        score_decimals: rounding of scores and coordinates in the JSON.
        heatmap_key: key of the probability heatmap ``(C, w, h)`` drawn in the overlay. ``pred`` holds the label
            map at the file's size by then (:class:`scripts.deliver.labelmap.HeatmapToLabelMapd`, for MONAI Label).
        skipped: paths not run on, ``{"image", "status", "reason"}``
            (:attr:`scripts.deliver.inference.InputListing.skipped`).
        operating_point: per-class thresholds chosen on validation
            (:func:`scripts.evaluate.operating_point.load_operating_point`): each detection is marked ``"finding"``
            or not, ``image_call`` and ``operating_point`` are added to the JSON, and the overlay draws the two kinds
            apart.
    """

    def __init__(
        self,
        output_dir: str,
        class_names: Sequence[str],
        overlay: bool = True,
        score_decimals: int = 4,
        heatmap_key: str = "heatmap",
        skipped: Sequence[dict[str, str]] = (),
        operating_point: Mapping[str, Mapping[str, float | None]] | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.operating_point = operating_point
        self.heatmap_key = heatmap_key
        self.class_names = list(class_names)
        self.overlay = overlay
        self.decimals = score_decimals
        self.skipped = [dict(entry) for entry in skipped]
        self._spool: IO[str] | None = None
        self._reset_counts()
        #: the counts of the last summary.json, skipped paths included (for :meth:`exit_if_refused`)
        self.summary_counts: dict[str, int] = {}

    #: Entries of the images run on, one JSON line each, appended as they come (``summary.json`` is built from it).
    SPOOL_NAME = ".summary.partial.jsonl"
    #: How many refused files the closing log lists by name (each was logged when refused).
    LOGGED_REFUSALS = 50

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._write_batch)
        engine.add_event_handler(Events.COMPLETED, self.write_summary)

    def _reset_counts(self) -> None:
        self.counts = dict.fromkeys(STATUSES, 0)
        self.with_warnings = 0
        self.refused_sample: list[dict[str, Any]] = []

    def _reset(self, engine: Engine | None = None) -> None:
        """Start a run: an empty spool file (a previous, interrupted run's is replaced) and zero counts."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if self._spool is not None:
            self._spool.close()
        # line-buffered: each result is on disk as it comes (one small write per image)
        self._spool = open(self.output_dir / self.SPOOL_NAME, "w", buffering=1, encoding="utf-8")  # noqa: SIM115
        self._reset_counts()

    def _record(self, entry: dict[str, Any]) -> None:
        """Account for one image: a line in the spool file and the counts; nothing else is kept in memory."""
        if self._spool is None:
            self._reset()
        assert self._spool is not None
        self._spool.write(json.dumps(entry) + "\n")
        self.counts[entry["status"]] += 1
        self.with_warnings += bool(entry.get("warnings"))
        if entry["status"] == "refused" and len(self.refused_sample) < self.LOGGED_REFUSALS:
            self.refused_sample.append(entry)

    def _result_path(self, data: dict[str, Any], path: str) -> Path:
        name = str(data.get("output_name") or "") or strip_image_suffix(Path(path).name)
        target = (self.output_dir / f"{name}.json").resolve()
        if not target.is_relative_to(self.output_dir.resolve()):
            raise ValueError(f"output name {name!r} would leave the output folder {self.output_dir}")
        return target

    def _write_batch(self, engine: Engine) -> None:
        for item, batch_item in zip(engine.state.output, engine.state.batch, strict=True):
            data = {**batch_item, **item}
            path = str(data["image_path"])
            if data.get("error"):
                self._record({"image": path, "status": "refused", "reason": str(data["error"])})
                continue
            warnings = [w for w in str(data.get(WARNINGS_KEY) or "").split("\n") if w]
            try:
                result = self._write_item(data, path, warnings)
            except (OSError, ValueError) as error:  # a full disk, a read-only folder: report the image, keep going
                self._record({"image": path, "status": "refused", "reason": f"cannot write results: {error}"})
                continue
            name = result.relative_to(self.output_dir.resolve()).as_posix()
            self._record({"image": path, "status": "processed", "result": name, "warnings": warnings})
            for warning in warnings:
                logger.warning("%s: %s", path, warning)

    def _write_item(self, data: dict[str, Any], path: str, warnings: list[str]) -> Path:
        target = self._result_path(data, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        detections = torch.as_tensor(data["detections"]).cpu()
        summary = detection_record(
            detections, data["image_score"], data["original_size"], self.class_names, self.decimals,
            self.operating_point,
        )  # fmt: skip
        record = {"image": path, **summary, "warnings": warnings}
        findings = None
        if self.operating_point is not None:
            findings = finding_flags(detections, self.operating_point, self.class_names)[0]
        if self.overlay:
            image = torch.as_tensor(data["image"]).cpu()
            common = (
                torch.as_tensor(data[self.heatmap_key]).cpu(), detections, torch.as_tensor(data["scale"]).cpu(),
                torch.as_tensor(data["original_size"]).cpu(), self.class_names,
            )  # fmt: skip
            scores = torch.as_tensor(data["image_score"]).cpu().reshape(-1).tolist()
            if OVERLAY_KEY in data:  # the file-resolution copy kept before the network's resize (OverlayImaged)
                picture = render_file_overlay(
                    torch.as_tensor(data[OVERLAY_KEY]).cpu(), image.shape[-1], *common, findings=findings,
                    image_score=scores,
                )  # fmt: skip
            else:  # a config without OverlayImaged: the network's grid
                picture = render_overlay(image, *common, findings=findings, image_score=scores)
            # zlib level 1: a 2,048-pixel overlay costs about 0.26 CPU-s instead of 1.2 at the default level 6, for
            # a file about 17 % larger
            picture.save(target.with_name(target.name[: -len(".json")] + "_overlay.png"), compress_level=1)
        write_text_atomic(target, json.dumps(record, indent=2))  # last: an existing JSON means a complete result
        return target

    def write_summary(self, engine: Engine | None = None) -> dict[str, int]:
        """Write ``summary.json`` (also callable without an engine, when every input was skipped); return the counts.

        The entries are sorted by path as before, but streamed: the spool file's lines are indexed by path (their
        byte offsets, not their content, are held) and copied into ``summary.json`` in order, so memory does not
        grow with the number of results.
        """
        self.output_dir.mkdir(parents=True, exist_ok=True)
        spool_path = self.output_dir / self.SPOOL_NAME
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        order: list[tuple[str, int, int]] = []  # (path, 0 = spool line at offset / 1 = skipped entry at index, ...)
        if spool_path.is_file():
            with open(spool_path, "rb") as spool:
                offset = 0
                for line in spool:
                    order.append((json.loads(line)["image"], 0, offset))
                    offset += len(line)
        order += [(entry["image"], 1, index) for index, entry in enumerate(self.skipped)]
        order.sort()
        counts = dict(self.counts)
        for entry in self.skipped:
            counts[entry["status"]] += 1
        self.summary_counts = counts
        header = {**counts, "with_warnings": self.with_warnings}
        with atomic_open(self.output_dir / "summary.json", durable=False) as out:
            out.write(json.dumps(header, indent=2)[:-2] + ',\n  "images": [')  # the header object, left open
            spool = open(spool_path, "rb") if spool_path.is_file() else None  # noqa: SIM115 (closed below)
            try:
                for number, (_, source, position) in enumerate(order):
                    if source == 0:
                        spool.seek(position)
                        entry = json.loads(spool.readline())
                    else:
                        entry = self.skipped[position]
                    text = json.dumps(entry, indent=2).replace("\n", "\n    ")
                    out.write(("," if number else "") + "\n    " + text)
            finally:
                if spool is not None:
                    spool.close()
            out.write("\n  ]\n}" if order else "]\n}")
        spool_path.unlink(missing_ok=True)
        logger.info(
            "inference: %d processed, %d refused, %d skipped, %d existing; results in %s",
            *(counts[status] for status in STATUSES),
            self.output_dir,
        )
        skipped = [e for e in self.skipped if e["status"] == "skipped"]
        if skipped:
            listing = "\n".join(f"  {e['image']}: {e['reason']}" for e in skipped)
            logger.info("inference: %d path(s) skipped, not image files:\n%s", len(skipped), listing)
        if self.refused_sample:
            listing = "\n".join(f"  {e['image']}: {e['reason']}" for e in self.refused_sample)
            more = counts["refused"] - len(self.refused_sample)
            listing += f"\n  ... and {more} more (summary.json lists them)" if more > 0 else ""
            logger.warning("inference: %d file(s) refused:\n%s", counts["refused"], listing)
        return counts

    def exit_if_refused(self, status: int = 2) -> None:
        """End the process with ``status`` when the last summary refused any input (``status`` 0: never).

        Inference goes on past every refused file; the exit status is how a script or a scheduler learns that some
        inputs have no result (``summary.json`` says which and why). Paths that are not image files (``skipped``)
        do not count.
        """
        refused = self.summary_counts.get("refused", 0)
        if refused and int(status):
            total = refused + self.summary_counts.get("processed", 0)
            logger.error(
                "inference: %d of %d image file(s) refused (reasons in %s); exit status %d",
                refused, total, self.output_dir / "summary.json", int(status),
            )  # fmt: skip
            raise SystemExit(int(status))


#: Statuses of ``summary.json`` entries, in the order they are counted.
STATUSES = ("processed", "refused", "skipped", "existing")
