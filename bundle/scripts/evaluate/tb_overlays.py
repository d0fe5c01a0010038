"""TensorBoard handler that logs heatmap overlays of a few validation images every validation run.

MONAI's ``TensorBoardImageHandler`` logs the input and each output channel as separate grey images; a reader of
a fracture heatmap needs the probabilities blended over the radiograph with the detections and the expert boxes
drawn in, which is what :func:`scripts.evaluate.overlays.render_overlay` renders. This handler feeds those renders to
TensorBoard, one image per validation image, stepped by the validation epoch (= the trainer's epoch when the
evaluator is run by ``ValidationHandler``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from monai.handlers.tensorboard_handlers import TensorBoardHandler
from PIL import ImageDraw

from scripts.data.transforms import unpack_boxes
from scripts.evaluate.overlays import render_overlay

if TYPE_CHECKING:
    from ignite.engine import Engine
    from torch.utils.tensorboard import SummaryWriter

__all__ = ["TensorBoardOverlayHandler"]

#: Colour of expert boxes in the overlays (white, distinct from the class colours of the heatmap).
BOX_COLOUR = (255, 255, 255)


class TensorBoardOverlayHandler(TensorBoardHandler):
    """Log ``max_images`` overlays (heatmap, detections, expert boxes) of the first validation images.

    The same images are shown at every validation, so their evolution can be followed epoch by epoch. Tags are
    ``<tag_prefix>/<index>``; images are ``(3, h, w)`` uint8 at network resolution without letterbox padding.

    Args:
        class_names: heatmap channel names (legend).
        summary_writer: existing ``SummaryWriter`` to share, or ``None`` to create one in ``log_dir``.
        log_dir: TensorBoard folder when no writer is given.
        max_images: how many validation images to log each time.
        heatmap_key, detections_key, boxes_key: output keys of the heatmap ``(C, h, w)`` probabilities,
            detections ``(K, 4)`` ``(x, y, score, class)`` and expert box table (:class:`PackBoxesd`), all in the
            evaluator's output; ``image``, ``scale`` and ``original_size`` are read from the batch.
        tag_prefix: TensorBoard tag prefix.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        summary_writer: SummaryWriter | None = None,
        log_dir: str = "./runs",
        max_images: int = 4,
        heatmap_key: str = "pred",
        detections_key: str = "detections",
        boxes_key: str = "box_target",
        tag_prefix: str = "val_overlay",
    ) -> None:
        super().__init__(summary_writer=summary_writer, log_dir=log_dir)
        self.class_names = list(class_names)
        self.max_images = max_images
        self.heatmap_key, self.detections_key, self.boxes_key = heatmap_key, detections_key, boxes_key
        self.tag_prefix = tag_prefix
        self._pending: list[np.ndarray] = []

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self._pending = []

    def _collect(self, engine: Engine) -> None:
        for output, batch in zip(engine.state.output, engine.state.batch, strict=True):
            if len(self._pending) >= self.max_images:
                return
            self._pending.append(self.render({**batch, **output}))

    def render(self, data: dict[str, Any]) -> np.ndarray:
        """Overlay of one decollated item as a ``(3, h, w)`` uint8 array (expert boxes in white)."""
        scale = torch.as_tensor(data["scale"]).cpu()
        canvas = render_overlay(
            torch.as_tensor(data["image"]).cpu(),
            torch.as_tensor(data[self.heatmap_key]).cpu(),
            torch.as_tensor(data[self.detections_key]).cpu(),
            scale,
            torch.as_tensor(data["original_size"]).cpu(),
            self.class_names,
        )
        if self.boxes_key in data:
            draw = ImageDraw.Draw(canvas)
            sx, sy = scale.tolist()
            for x1, y1, x2, y2 in unpack_boxes(data[self.boxes_key]).tolist():
                draw.rectangle([x1 * sx, y1 * sy, x2 * sx, y2 * sy], outline=BOX_COLOUR, width=1)
        return np.transpose(np.asarray(canvas), (2, 0, 1))

    def _write(self, engine: Engine) -> None:
        for index, image in enumerate(self._pending):
            self._writer.add_image(f"{self.tag_prefix}/{index}", image, global_step=engine.state.epoch)
        self._writer.flush()
        self._pending = []
