"""Ignite handler that collects per-image results of an evaluation run and writes the evaluation report.

The metrics themselves are computed from the collected records by :mod:`scripts.evaluate.report_metrics` (AUROC and FROC
through :mod:`scripts.evaluate.class_metrics`, as the validation metrics compute them), so the report, the CSV curves
and ``metrics.json`` always agree with each other and with validation.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from scripts.data.transforms import is_boxed
from scripts.evaluate.report import write_evaluation_report
from scripts.evaluate.report_metrics import ImageRecord
from scripts.evaluate.report_table import format_metrics_table

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["EvaluationReportHandler"]

logger = logging.getLogger(__name__)


def _numpy(value: object) -> np.ndarray:
    return torch.as_tensor(value).detach().cpu().double().numpy()


class EvaluationReportHandler:
    """Collect one :class:`scripts.evaluate.report_metrics.ImageRecord` per image; write the report at the end.

    Reads, per decollated item: ``image_path``, ``image_target`` ``(C,)``, ``image_score`` ``(C,)``,
    ``detections`` ``(K, 4)`` and ``box_target`` ``(max_boxes, 5)`` (padding rows -1), all in file pixels.

    Args:
        output_dir: report folder (``metrics.json``, curves, plots, ``detections.json``, ``report.html``).
        class_names: class names in channel order.
        paper_rates: FP rates of the paper's FROC score.
        camelyon_rates: FP rates of the CAMELYON FROC score.
        model_name: shown in the report (e.g. the checkpoint path).
        num_overlays: number of false-positive and missed-fracture crops in the report.
        operating_point: the thresholds shipped with the model (chosen on validation,
            :func:`scripts.evaluate.operating_point.load_operating_point`): their sensitivity and false positives per
            image on this split are written to ``operating_point.json`` and added to the metrics under
            ``"shipped_operating_point"``. This split never chooses them.
    """

    def __init__(
        self,
        output_dir: str,
        class_names: Sequence[str],
        paper_rates: Sequence[float] = (0.1, 0.2, 0.3, 0.4),
        camelyon_rates: Sequence[float] = (0.25, 0.5, 1, 2, 4, 8),
        model_name: str = "model",
        num_overlays: int = 8,
        operating_point: Mapping[str, Mapping[str, float | None]] | None = None,
    ) -> None:
        self.output_dir = output_dir
        self.class_names = list(class_names)
        self.paper_rates, self.camelyon_rates = tuple(paper_rates), tuple(camelyon_rates)
        self.model_name, self.num_overlays = model_name, num_overlays
        self.operating_point = operating_point
        self.records: list[ImageRecord] = []
        self.metrics: dict = {}

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self.records = []

    def _collect(self, engine: Engine) -> None:
        for item, batch_item in zip(engine.state.output, engine.state.batch, strict=True):
            data = {**batch_item, **item}
            boxes = _numpy(data["box_target"]).reshape(-1, 5)
            self.records.append(
                ImageRecord(
                    image=str(data["image_path"]),
                    image_label=_numpy(data["image_target"]).reshape(-1),
                    image_score=_numpy(data["image_score"]).reshape(-1),
                    detections=_numpy(data["detections"]).reshape(-1, 4),
                    boxes=boxes[boxes[:, 4] >= 0],
                    boxed=is_boxed(boxes),
                )
            )

    def _write(self, engine: Engine) -> None:
        self.metrics = write_evaluation_report(
            self.output_dir,
            self.records,
            self.class_names,
            paper_rates=self.paper_rates,
            camelyon_rates=self.camelyon_rates,
            model_name=self.model_name,
            num_overlays=self.num_overlays,
            shipped_operating_point=self.operating_point,
        )
        logger.info(
            "evaluation of %s on %d images:\n%s", self.model_name, len(self.records), format_metrics_table(self.metrics)
        )
        logger.info("evaluation report written to %s/report.html", self.output_dir)
        if self.operating_point is not None:
            shipped = self.metrics["shipped_operating_point"]
            (Path(self.output_dir) / "operating_point.json").write_text(json.dumps(shipped, indent=2) + "\n")
            lines = [
                f"  {name}: threshold {r['threshold']} -> sensitivity {r['sensitivity']} at {r['fp_per_image']} "
                f"FP/image (validation: {r['validation_sensitivity']} at {r['validation_fp_per_image']}); image "
                f"call sensitivity {r['image_sensitivity']}, specificity {r['image_specificity']}"
                for name, r in shipped.items()
            ]
            logger.info("shipped operating point on this split:\n%s", "\n".join(lines))
