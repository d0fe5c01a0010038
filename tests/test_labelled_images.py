"""MONAI Label training pairs (image + label map) turned into the bundle's boxed items, and their sampling."""

import numpy as np
import pytest
import torch
from PIL import Image

from scripts.data.labelled_images import (
    LabelMapToBoxesd,
    connected_components,
    label_map_boxes,
    read_label_map,
)
from scripts.data.loading import CXRInputError


def _map(width: int, height: int) -> torch.Tensor:
    label = torch.zeros(width, height, dtype=torch.int64)
    label[10:20, 30:35] = 1  # rib region
    label[50:52, 5:9] = 1  # second rib region
    label[60:70, 40:44] = 2  # clavicle region
    return label


def test_png_label_map_reads_in_the_loader_layout(tmp_path):
    label = _map(80, 50)
    Image.fromarray(label.numpy().T.astype(np.uint8)).save(tmp_path / "l.png")  # PNG rows are y
    read = read_label_map(tmp_path / "l.png")
    assert read.shape == (80, 50)
    torch.testing.assert_close(read, label)


def test_label_map_reader_refuses_bad_files(tmp_path):
    with pytest.raises(CXRInputError, match="unsupported label map type"):
        read_label_map(tmp_path / "l.json")
    with pytest.raises(CXRInputError, match="not found"):
        read_label_map(tmp_path / "missing.png")
    Image.fromarray(np.zeros((5, 6, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(CXRInputError, match="one 2D channel"):
        read_label_map(tmp_path / "rgb.png")


def test_each_region_becomes_one_box_of_its_class():
    boxes, classes = label_map_boxes(_map(80, 50), num_classes=2)
    order = np.lexsort((boxes[:, 0], classes))
    np.testing.assert_array_equal(classes[order], [0, 0, 1])
    np.testing.assert_array_equal(boxes[order], [[10, 30, 20, 35], [50, 5, 52, 9], [60, 40, 70, 44]])
    empty_boxes, empty_classes = label_map_boxes(torch.zeros(8, 8, dtype=torch.int64), 2)
    assert empty_boxes.shape == (0, 4) and empty_classes.shape == (0,)


def test_boxes_are_exact_on_large_maps_found_on_a_coarse_grid():
    label = torch.zeros(1500, 1100, dtype=torch.int64)
    label[101:140, 900:907] = 2
    label[1000:1003, 10:400] = 1  # long thin region: one component
    boxes, classes = label_map_boxes(label, num_classes=2)
    assert sorted(zip(classes.tolist(), boxes.tolist(), strict=True)) == [
        (0, [1000, 10, 1003, 400]),
        (1, [101, 900, 140, 907]),
    ]


def test_connected_components_use_8_connectivity():
    mask = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 0], [1, 1, 0]], dtype=torch.bool)
    regions = connected_components(mask)
    assert regions[0, 0] == regions[1, 1] != regions[3, 0] == regions[3, 1]
    assert int(regions.max()) == 2 and int(regions[2].sum()) == 0
    assert connected_components(torch.ones(3, 3, dtype=torch.bool)).unique().tolist() == [1]


def test_transform_gives_datalist_keys_and_checks_size_and_values(tmp_path):
    label = _map(80, 50)
    size = torch.tensor([80.0, 50.0])
    out = LabelMapToBoxesd("label", classes=("rib", "clavicle"))({"label": label, "original_size": size})
    assert "label" not in out and out["subset"] == "R" and len(out["boxes"]) == 3
    np.testing.assert_array_equal(out["image_label"], [1.0, 1.0])
    negative = LabelMapToBoxesd("label")({"label": torch.zeros(80, 50), "original_size": torch.tensor([80.0, 50.0])})
    assert negative["subset"] == "N" and negative["boxes"].shape == (0, 4)
    np.testing.assert_array_equal(negative["image_label"], [0.0, 0.0])
    untouched = {"image": "a.png", "boxes": np.zeros((0, 4)), "original_size": torch.tensor([8.0, 8.0])}
    assert LabelMapToBoxesd("label")(untouched) == untouched
    Image.fromarray(label.numpy().T.astype(np.uint8)).save(tmp_path / "l.png")
    with pytest.raises(CXRInputError, match=r"l.png: label map of \(80, 50\) pixels .* image of \(50, 80\)"):
        LabelMapToBoxesd("label")({"label": str(tmp_path / "l.png"), "original_size": torch.tensor([50.0, 80.0])})
    with pytest.raises(CXRInputError, match=r"label values \[3\] outside 0..2"):
        LabelMapToBoxesd("label")({"label": torch.full((4, 4), 3), "original_size": torch.tensor([4.0, 4.0])})


def test_train_config_runs_one_epoch_with_monai_label_overrides(tmp_path):
    """``configs/train.json`` as MONAI Label 0.8.5 runs it: image/label pairs and its override keys, nothing else.

    Besides MONAI Label's own overrides, only the network size, image size and output folders are changed here,
    to keep the test short.
    """
    import monai.bundle
    from conftest import BUNDLE_ROOT
    from helpers import write_dicom
    from monai.bundle import ConfigParser

    from cxr_phantom import render_phantom, write_png

    pairs = []
    for index in range(5):  # DICOM and PNG images, as MONAI Label's datastore holds them
        phantom = render_phantom(np.random.default_rng([7, index]), size=96, difficulty=0.0, num_fractures=index % 3)
        if index % 2:
            write_dicom(tmp_path / f"i{index}.dcm", phantom.pixels, Modality="DX", BodyPartExamined="CHEST")
        else:
            write_png(tmp_path / f"i{index}.png", phantom.pixels)
        label = np.zeros(phantom.pixels.shape, np.uint8)  # rows = y
        for (x1, y1, x2, y2), name in zip(phantom.boxes, phantom.box_classes, strict=True):
            label[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))] = 1 + ("rib", "clavicle").index(name)
        Image.fromarray(label).save(tmp_path / f"l{index}.png")
        image = tmp_path / f"i{index}.{'dcm' if index % 2 else 'png'}"
        pairs.append({"image": str(image), "label": str(tmp_path / f"l{index}.png")})
    config = ConfigParser()
    config.read_config(BUNDLE_ROOT / "configs" / "train.json")
    monai_label_overrides = {
        "bundle_root": str(BUNDLE_ROOT),
        "train#trainer#max_epochs": 1,
        "train#dataset#data": pairs[:4],
        "device": torch.device("cpu"),
        "train#handlers": config.get("train#handlers"),
        "validate#dataset#data": pairs[4:],
    }
    light = {"image_size": 64, "network_def#block": "basic", "network_def#layers": [1, 1, 1, 1]}
    light |= {"network_def#widths": [8, 16, 32, 64], "network_def#fpn_channels": 16, "num_workers": 0}
    folders = {"ckpt_dir": str(tmp_path / "models"), "output_dir": str(tmp_path / "runs")}
    monai.bundle.run(
        run_id="run",
        init_id=None,
        final_id=None,
        meta_file=str(BUNDLE_ROOT / "configs" / "metadata.json"),
        config_file=str(BUNDLE_ROOT / "configs" / "train.json"),
        **monai_label_overrides,
        **light,
        **folders,
    )
    checkpoint = torch.load(tmp_path / "models" / "checkpoint_final.pt", weights_only=True)
    # 4 pairs, one draw each per epoch, batch 8: one iteration (not samples_per_epoch = 512 draws)
    assert checkpoint["trainer"]["max_epochs"] == 1 and checkpoint["trainer"]["iteration"] == 1
    assert (tmp_path / "models" / "model.pt").is_file()  # the validation's best model, which MONAI Label serves
