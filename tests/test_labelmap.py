"""Heatmap -> label map at the file's size (MONAI Label's ``pred``) and detections -> JSON ``result``."""

import json

import pytest
import torch
import torch.nn.functional as F
from monai.data import MetaTensor

from scripts.data.transforms import LetterboxResized
from scripts.deliver.labelmap import DetectionsToResultd, HeatmapToLabelMapd, heatmap_to_label_map, upsample_to_original
from scripts.model.detection import HeatmapToDetectionsd

SIZE, STRIDE = 64, 4


def _letterboxed_heatmap(mask: torch.Tensor) -> dict:
    """Push a file-resolution mask ``(C, W, H)`` through the letterbox and a stride-4 average pool."""
    image = MetaTensor(mask.clone(), meta={"filename_or_obj": "x.png"})
    d = LetterboxResized("image", spatial_size=SIZE, mode="area")({"image": image})
    heatmap = F.avg_pool2d(torch.as_tensor(d["image"])[None], STRIDE)[0]
    return {"pred": heatmap, "scale": d["scale"], "original_size": torch.tensor(mask.shape[1:], dtype=torch.float32)}


def test_label_map_has_the_file_size_and_orientation_of_a_non_square_image():
    width, height = 200, 120  # landscape: a transposed map would be (120, 200)
    mask = torch.zeros(2, width, height)
    mask[0, 20:70, 70:110] = 1.0  # rib region: left, bottom
    mask[1, 140:190, 10:50] = 1.0  # clavicle region: right, top
    out = HeatmapToLabelMapd("pred", threshold=0.5)(_letterboxed_heatmap(mask))
    label = out["pred"]
    assert label.shape == (width, height) and label.dtype == torch.uint8
    assert set(label.unique().tolist()) == {0, 1, 2}
    expected = torch.zeros(width, height, dtype=torch.uint8)
    expected[mask[0] > 0], expected[mask[1] > 0] = 1, 2
    for value in (1, 2):
        found, wanted = label == value, expected == value
        iou = (found & wanted).sum() / (found | wanted).sum()
        assert iou > 0.8, (value, float(iou))  # stride-4 cells at scale 0.32 blur edges by a few pixels
    assert out["heatmap"].shape == (2, SIZE // STRIDE, SIZE // STRIDE)  # kept for the overlays


def test_upsampling_puts_each_file_pixel_at_its_network_position():
    # a heatmap that is linear in the cell index is reproduced exactly by bilinear sampling, so every interior
    # pixel must read (k + 0.5) * s / stride - 0.5 cells (cell i has its centre at i + 0.5)
    cells = torch.arange(16, dtype=torch.float32)
    heatmap = torch.stack([cells[:, None].expand(16, 16), cells[None, :].expand(16, 16)])
    scale = torch.tensor([0.32, 0.3])
    probs = upsample_to_original(heatmap, scale, (200, 100), stride=STRIDE)
    assert probs.shape == (2, 200, 100)
    k = torch.arange(20, 180, dtype=torch.float32)
    torch.testing.assert_close(probs[0, 20:180, 50], (k + 0.5) * 0.32 / STRIDE - 0.5)
    k = torch.arange(20, 90, dtype=torch.float32)
    torch.testing.assert_close(probs[1, 100, 20:90], (k + 0.5) * 0.3 / STRIDE - 0.5)


def test_padding_cells_never_reach_the_label_map():
    heatmap = torch.zeros(2, 16, 16)
    heatmap[:, :, 8:] = 1.0  # 200 x 100 at scale 0.32: content ends at y = 32 px = 8 cells; rows >= 8 are padding
    label = HeatmapToLabelMapd("pred", threshold=0.3)(
        {"pred": heatmap, "scale": torch.tensor([0.32, 0.32]), "original_size": torch.tensor([200.0, 100.0])}
    )["pred"]
    assert label.shape == (200, 100) and int(label.max()) == 0


def test_most_probable_class_wins_and_threshold_is_inclusive():
    probs = torch.tensor([[[0.6, 0.5, 0.2, 0.9]], [[0.7, 0.1, 0.49, 0.3]]])  # (C=2, W=1, H=4)
    assert heatmap_to_label_map(probs, threshold=0.5).tolist() == [[2, 1, 0, 1]]
    with pytest.raises(ValueError, match="threshold"):
        HeatmapToLabelMapd("pred", threshold=1.5)


def test_placeholders_of_unreadable_files_pass_unchanged():
    placeholder = {"image": torch.zeros(1, 32, 32), "pred": torch.zeros(2, 8, 8), "error": "cannot read"}
    assert HeatmapToLabelMapd("pred")(placeholder)["pred"] is placeholder["pred"]
    assert "result" not in DetectionsToResultd("detections")({**placeholder, "detections": torch.zeros(0, 4)})


def test_result_holds_json_detections_in_file_pixels_and_image_scores():
    heatmap = torch.zeros(2, 16, 16)
    heatmap[0, 5, 3] = 0.9
    heatmap[1, 10, 6] = 0.4
    d = {"pred": heatmap, "scale": torch.tensor([0.32, 0.32]), "original_size": torch.tensor([200.0, 100.0])}
    d = HeatmapToDetectionsd("pred", stride=STRIDE, score_floor=0.1)(d)
    d["image_score"] = torch.tensor([0.9, 0.4])
    result = DetectionsToResultd("detections", class_names=("rib", "clavicle"))(d)["result"]
    assert json.loads(json.dumps(result)) == result
    assert result["label_values"] == {"rib": 1, "clavicle": 2}
    assert result["image_size"] == [200, 100]
    assert result["image_score"] == {"rib": 0.9, "clavicle": 0.4}
    # cell (5, 3) centre = network pixel (22, 14) = file pixel (68.75, 43.75)
    assert result["detections"] == [
        {"class": "rib", "x": 68.8, "y": 43.8, "score": 0.9},
        {"class": "clavicle", "x": 131.2, "y": 81.2, "score": 0.4},
    ]


def test_label_map_sampled_only_near_hot_cells_equals_the_full_map():
    """The transform samples only around cells at or above the threshold; the map is the same as sampling all."""
    generator = torch.Generator().manual_seed(0)
    transform = HeatmapToLabelMapd("pred", threshold=0.5, stride=4)
    for trial in range(60):
        width, height = (int(v) for v in torch.randint(150, 2600, (2,), generator=generator))
        size = (64, 256)[trial % 2]
        factor = size / max(width, height)
        scale = torch.tensor([round(width * factor) / width, round(height * factor) / height])
        heatmap = torch.rand(2, size // 4, size // 4, generator=generator) * 0.45
        for _ in range(trial % 4):  # 0 to 3 hot spots, anywhere (also in the padding and at the content edge)
            i, j = (int(v) for v in torch.randint(0, size // 4, (2,), generator=generator))
            heatmap[trial % 2, i : i + 3, j : j + 2] = 0.5 + 0.5 * torch.rand(1, generator=generator)
        item = {"pred": heatmap, "scale": scale, "original_size": torch.tensor([float(width), float(height)])}
        expected = heatmap_to_label_map(upsample_to_original(heatmap, scale, (width, height), 4), 0.5)
        assert torch.equal(transform(item)["pred"], expected)
