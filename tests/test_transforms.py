"""Letterbox geometry, box targets at stride 4, packed box tables, heatmap peaks back in file pixels, percentiles."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import ScaleIntensityRangePercentilesd

from scripts.data.loading import CXRInputError
from scripts.data.transforms import (
    BoxesToMaskd,
    DownsampleMaskd,
    HeatmapScored,
    LetterboxResized,
    PackBoxesd,
    PercentileScaleIntensityd,
    letterbox_content_size,
    percentiles,
    unpack_boxes,
)
from scripts.model.detection import HeatmapToDetectionsd, heatmap_peaks


def _image(width, height):
    return MetaTensor(torch.rand(1, width, height), meta={"filename_or_obj": "x.png"})


def test_letterbox_keeps_aspect_ratio_and_pads_at_the_end():
    out = LetterboxResized("image", spatial_size=64)({"image": _image(200, 100)})
    assert out["image"].shape == (1, 64, 64)
    torch.testing.assert_close(out["scale"], torch.tensor([0.32, 0.32]))
    assert float(out["image"][0, :, 32:].abs().max()) == 0.0  # rows beyond 100 * 0.32 are padding


def test_letterbox_scales_boxes_and_refuses_boxes_outside_the_image():
    d = {"image": _image(200, 100), "boxes": np.array([[10.0, 20.0, 60.0, 40.0]])}
    out = LetterboxResized("image", spatial_size=64)(d)
    torch.testing.assert_close(out["boxes"], torch.tensor([[3.2, 6.4, 19.2, 12.8]]))
    bad = {"image": _image(200, 100), "boxes": np.array([[10.0, 20.0, 60.0, 140.0]])}
    with pytest.raises(CXRInputError, match="x.png: box .* lies outside the image of 200 x 100"):
        LetterboxResized("image", spatial_size=64)(bad)


def test_boxes_become_per_class_stride4_targets():
    d = {
        "image": torch.zeros(1, 32, 32),
        "boxes": np.array([[4.0, 8.0, 12.0, 10.0], [30.5, 30.5, 31.0, 31.0]]),
        "box_classes": np.array([0, 1]),
    }
    mask = BoxesToMaskd(num_classes=2)(d)["label"]
    assert mask.shape == (2, 32, 32)
    assert mask[0].sum() == 8 * 2 and mask[0, 4:12, 8:10].all()
    assert mask[1].sum() == 1 and mask[1, 30, 30] == 1  # a sub-pixel box still marks its pixel
    target = DownsampleMaskd("label", stride=4)({"label": mask})["label"]
    assert target.shape == (2, 8, 8)
    expected_rib = torch.zeros(8, 8)
    expected_rib[1:3, 2] = 1  # x 4..12 -> cells 1, 2; y 8..10 -> cell 2
    torch.testing.assert_close(target[0], expected_rib)
    assert target[1].sum() == 1 and target[1, 7, 7] == 1


def test_unknown_box_class_is_refused():
    d = {
        "image": MetaTensor(torch.zeros(1, 8, 8), meta={"filename_or_obj": "y.dcm"}),
        "boxes": np.array([[1.0, 1.0, 2.0, 2.0]]),
        "box_classes": np.array([5]),
    }
    with pytest.raises(CXRInputError, match="y.dcm: box class index 5"):
        BoxesToMaskd(num_classes=2)(d)


def test_box_table_round_trip():
    d = {"boxes": np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]), "box_classes": np.array([1, 0])}
    table = PackBoxesd(max_boxes=4)(d)["box_table"]
    assert table.shape == (4, 5) and (table[2:] == -1).all()
    np.testing.assert_array_equal(unpack_boxes(table, 0), [[5.0, 6.0, 7.0, 8.0]])
    np.testing.assert_array_equal(unpack_boxes(table), d["boxes"])


def test_image_score_is_heatmap_maximum():
    heatmap = torch.zeros(2, 4, 4)
    heatmap[0, 1, 2], heatmap[1, 3, 3] = 0.7, 0.2
    torch.testing.assert_close(HeatmapScored()({"pred": heatmap})["image_score"], torch.tensor([0.7, 0.2]))


def test_heatmap_peaks_respect_min_distance_floor_and_order():
    heatmap = torch.zeros(1, 16, 16)
    heatmap[0, 4, 4], heatmap[0, 5, 5], heatmap[0, 12, 3], heatmap[0, 1, 14] = 0.9, 0.5, 0.6, 0.005
    peaks = heatmap_peaks(heatmap, min_distance=2, score_floor=0.01)
    torch.testing.assert_close(peaks, torch.tensor([[4.0, 4.0, 0.9, 0.0], [12.0, 3.0, 0.6, 0.0]]))


def test_known_peaks_come_back_at_the_right_original_pixels_after_resize_and_pad():
    """A file of 300 x 200 pixels letterboxed to 128 (scale 128/300), heatmap at stride 4 (32 x 32 cells)."""
    letterboxed = LetterboxResized("image", spatial_size=128)({"image": _image(300, 200)})
    scale = letterboxed["scale"]
    heatmap = torch.zeros(2, 32, 32)
    heatmap[0, 10, 6] = 0.8  # rib peak in cell (10, 6)
    heatmap[1, 25, 20] = 0.4  # clavicle peak in cell (25, 20)
    heatmap[1, 31, 31] = 0.99  # inside the padding (rows beyond 200 * 128 / 300 = 85.3 px): ignored
    out = HeatmapToDetectionsd()({"pred": heatmap, "scale": scale, "original_size": torch.tensor([300.0, 200.0])})
    detections = out["detections"]
    assert detections.shape == (2, 4)
    # cell centre (4 * (i + 0.5)) in network pixels, divided by the scale, gives file pixels
    sx, sy = scale.tolist()
    np.testing.assert_allclose(detections[0].tolist(), [42 / sx, 26 / sy, 0.8, 0], rtol=1e-5)
    np.testing.assert_allclose(detections[1].tolist(), [102 / sx, 82 / sy, 0.4, 1], rtol=1e-5)
    assert 98.0 < float(detections[0, 0]) < 99.0  # 42 / (128 / 300) = 98.4 file pixels


def test_letterbox_content_size_is_the_resized_image_not_a_float_error_more():
    # 40 x 20 letterboxed to 32: resized to 32 x 16, and the float32 scale 0.8 makes 20 * 0.8 = 16.0000002
    item = LetterboxResized(keys="image", spatial_size=32)({"image": torch.zeros(1, 40, 20)})
    assert letterbox_content_size([40, 20], item["scale"]) == (32, 16)
    assert letterbox_content_size([40, 20], item["scale"], stride=4) == (8, 4)
    assert letterbox_content_size([41, 20], torch.tensor([1.0, 1.0]), stride=4) == (11, 5)


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(0).integers(0, 4096, size=(1, 301, 257)),  # 12-bit radiograph: histogram path
        np.random.default_rng(1).integers(-1024, 3000, size=(1, 33, 31)),  # negative integers
        np.random.default_rng(2).normal(size=(1, 60, 50)),  # non-integer values: np.percentile path
        np.full((1, 10, 10), 7.0),  # constant
    ],
)
def test_percentiles_equal_numpy_and_the_scaling_equals_monai(values):
    image = torch.as_tensor(values.astype(np.float32))
    for q in [(0.5, 99.5), (0, 100), (37.3, 50)]:
        expected = [float(np.percentile(image.numpy(), v)) for v in q]
        assert np.allclose(percentiles(image, q), expected, rtol=0, atol=1e-4)
    # a transposed view (how DICOM pixels arrive) gives the same percentiles
    assert percentiles(image[0].T[None], (0.5, 99.5)) == percentiles(image, (0.5, 99.5))
    ours = PercentileScaleIntensityd("image", 0.5, 99.5, 0.0, 1.0, clip=True)({"image": image})["image"]
    monai = ScaleIntensityRangePercentilesd("image", 0.5, 99.5, 0.0, 1.0, clip=True)({"image": image})["image"]
    assert torch.allclose(torch.as_tensor(ours), torch.as_tensor(monai), atol=1e-6)
