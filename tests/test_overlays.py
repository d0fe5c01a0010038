"""Inference overlays at the file's resolution (capped at 2,048 px), with the legend below the image, never over it."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from scripts.deliver.writers import DetectionWriter
from scripts.evaluate.overlays import (
    CLASS_COLOURS,
    OVERLAY_KEY,
    OVERLAY_MAX_SIDE,
    OverlayImaged,
    render_file_overlay,
    render_overlay,
)

CLASSES = ["rib", "clavicle"]


def test_overlay_copy_keeps_the_file_resolution_up_to_the_cap():
    small = torch.rand(1, 300, 200)  # (1, W, H)
    kept = OverlayImaged("image")({"image": small})[OVERLAY_KEY]
    assert kept.dtype == torch.uint8 and kept.shape == (1, 300, 200)
    torch.testing.assert_close(kept.float(), (small * 255).round(), atol=1, rtol=0)
    large = torch.zeros(1, 3000, 2400)
    large[:, :1500] = 1.0  # left half bright: the copy must keep the geometry (no transpose, no flip)
    copy = OverlayImaged("image")({"image": large})[OVERLAY_KEY]
    assert copy.shape == (1, OVERLAY_MAX_SIDE, round(2400 * OVERLAY_MAX_SIDE / 3000))  # aspect ratio kept
    assert copy[0, : OVERLAY_MAX_SIDE // 2 - 2].min() == 255 and copy[0, OVERLAY_MAX_SIDE // 2 + 2 :].max() == 0


def _picture(width: int, height: int, x: float, y: float) -> tuple[Image.Image, int, int]:
    """A file of ``width`` x ``height`` px, letterboxed to 64 px, one rib finding at file pixel (x, y)."""
    side = 64
    scale = torch.tensor([side / max(width, height)] * 2)
    copy = OverlayImaged("image")({"image": torch.full((1, width, height), 0.5)})[OVERLAY_KEY]
    heatmap = torch.zeros(2, side // 4, side // 4)
    picture = render_file_overlay(
        copy, side, heatmap, torch.tensor([[x, y, 0.9, 0.0]]), scale, torch.tensor([float(width), float(height)]),
        CLASSES, findings=[True], image_score=[0.9, 0.1],
    )  # fmt: skip
    return picture, copy.shape[1], copy.shape[2]


def _red(picture: np.ndarray, x: int, y: int, reach: int) -> int:
    patch = picture[max(0, y - reach) : y + reach + 1, max(0, x - reach) : x + reach + 1]
    return int(((patch[..., 0] > 200) & (patch[..., 1] < 120) & (patch[..., 2] < 120)).sum())


def test_file_overlay_is_at_file_resolution_with_the_legend_below():
    picture, width, height = _picture(1200, 900, x=300.0, y=600.0)  # below the cap: the file's own pixels
    assert (width, height) == (1200, 900) and picture.width == 1200 and picture.height > 900
    pixels = np.asarray(picture).astype(int)
    assert _red(pixels, 300, 600, 30) > 20  # the finding's ring at the detection's file pixel
    grey = pixels[:900].copy()
    grey[560:640, 260:400] = 128  # everything but the ring and its score is the untouched grey image
    assert np.all(grey == 128)
    band = pixels[900:]
    assert band[:, :8].max() < 40 and (band == np.asarray(CLASS_COLOURS[0])).all(axis=-1).any()  # dark band, swatch


def test_file_overlay_of_a_large_radiograph_is_capped_and_points_scale_with_it():
    picture, width, height = _picture(2500, 3000, x=1250.0, y=1500.0)
    assert height == OVERLAY_MAX_SIDE and width == round(2500 * OVERLAY_MAX_SIDE / 3000) == picture.width
    assert _red(np.asarray(picture).astype(int), width // 2, height // 2, 50) > 50


def test_network_grid_overlay_keeps_its_legend_out_of_the_image():
    image = torch.full((1, 64, 64), 0.5)
    size = torch.tensor([64.0, 48.0])
    picture = render_overlay(image, torch.zeros(2, 16, 16), torch.zeros(0, 4), torch.ones(2), size, CLASSES)
    pixels = np.asarray(picture).astype(int)
    assert picture.width == 64 and picture.height > 48 and np.all(pixels[:48] == 128)


def test_writer_draws_the_overlay_from_the_file_resolution_copy(tmp_path):
    writer = DetectionWriter(str(tmp_path), CLASSES)
    copy = OverlayImaged("image")({"image": torch.full((1, 300, 200), 0.5)})[OVERLAY_KEY]
    data = {
        "image": torch.zeros(1, 64, 64), "heatmap": torch.zeros(2, 16, 16), OVERLAY_KEY: copy,
        "detections": torch.tensor([[150.0, 100.0, 0.7, 1.0]]), "image_score": torch.tensor([0.1, 0.7]),
        "scale": torch.tensor([64 / 300, 64 / 300]), "original_size": torch.tensor([300.0, 200.0]),
        "output_name": "x",
    }  # fmt: skip
    writer._write_item(data, str(tmp_path / "x.png"), [])
    overlay = Image.open(tmp_path / "x_overlay.png")
    assert overlay.width == 300 and overlay.height > 200
    assert json.loads((tmp_path / "x.json").read_text())["image_size"] == [300, 200]
