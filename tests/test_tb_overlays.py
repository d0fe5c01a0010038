"""TensorBoard overlay handler: renders heatmap, detections and expert boxes of the first validation images."""

from __future__ import annotations

import numpy as np
import torch

from scripts.evaluate.tb_overlays import BOX_COLOUR, TensorBoardOverlayHandler


class _Writer:
    """Stand-in SummaryWriter recording ``add_image`` calls."""

    def __init__(self) -> None:
        self.images: list[tuple[str, np.ndarray, int]] = []

    def add_image(self, tag: str, image: np.ndarray, global_step: int) -> None:
        self.images.append((tag, image, global_step))

    def flush(self) -> None:
        pass


def _item(box: tuple[float, float, float, float]) -> tuple[dict, dict]:
    # a 64 x 32 (W x H) file letterboxed to 32 px: scale 0.5, padding below row 16
    batch = {
        "image": torch.zeros(1, 32, 32),
        "scale": torch.tensor([0.5, 0.5]),
        "original_size": torch.tensor([64, 32]),
    }
    table = torch.full((4, 5), -1.0)
    table[0] = torch.tensor([*box, 0.0])
    output = {"pred": torch.zeros(2, 8, 8), "detections": torch.zeros(0, 4), "box_target": table}
    return batch, output


def test_render_crops_padding_and_draws_expert_boxes_in_white():
    handler = TensorBoardOverlayHandler(class_names=["rib", "clavicle"], summary_writer=_Writer())
    batch, output = _item((10.0, 6.0, 20.0, 16.0))
    image = handler.render({**batch, **output})
    # (channels, rows = y, columns = x): the 16 x 32 content, then the legend band below it
    assert image.dtype == np.uint8 and image.shape[0] == 3 and image.shape[1] > 16 and image.shape[2] == 32
    white = np.all(image[:, :16] == np.asarray(BOX_COLOUR, np.uint8)[:, None, None], axis=0)
    rows, cols = np.nonzero(white)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (3, 8, 5, 10)  # box scaled by 0.5


class _State:
    def __init__(self, epoch: int, items: list[tuple[dict, dict]]) -> None:
        self.epoch = epoch
        self.batch = [batch for batch, _ in items]
        self.output = [output for _, output in items]


class _Engine:
    def __init__(self, state: _State) -> None:
        self.state = state


def test_logs_at_most_max_images_per_validation_at_the_epoch_step():
    writer = _Writer()
    handler = TensorBoardOverlayHandler(class_names=["rib", "clavicle"], summary_writer=writer, max_images=3)
    for epoch in (1, 2):
        handler._reset(None)
        for _ in range(2):  # two iterations of two images each
            engine = _Engine(_State(epoch, [_item((1.0, 1.0, 5.0, 5.0))] * 2))
            handler._collect(engine)
        handler._write(engine)
    assert [(tag, step) for tag, _, step in writer.images] == [
        ("val_overlay/0", 1), ("val_overlay/1", 1), ("val_overlay/2", 1),
        ("val_overlay/0", 2), ("val_overlay/1", 2), ("val_overlay/2", 2),
    ]  # fmt: skip
