"""Datalist validation: every problem reported with its entry and file, subsets filtered, labels parsed."""

import json

import numpy as np
import pytest

from scripts.data.datalist import DatalistError, load_datalist
from scripts.data.sampling import samples_per_epoch, sampling_weights, subset_weights


def _write(tmp_path, content, images=("a.png", "b.png", "c.png", "d.png")):
    for name in images:
        (tmp_path / name).write_bytes(b"x")
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps(content))
    return path


GOOD = {
    "classes": ["rib", "clavicle"],
    "training": [
        {
            "image": "a.png",
            "subset": "R",
            "labels": {"rib": 1, "clavicle": 0},
            "boxes": [[1, 2, 10, 12]],
            "box_classes": ["rib"],
        },
        {"image": "b.png", "subset": "P", "labels": {"rib": 1, "clavicle": 1}},
        {"image": "c.png", "subset": "N", "labels": {"rib": 0, "clavicle": 0}},
    ],
    "validation": [
        {"image": "d.png", "labels": {"rib": 0, "clavicle": 1}, "boxes": [[3, 3, 5, 5]], "box_classes": ["clavicle"]}
    ],
}


def test_good_datalist_is_parsed(tmp_path):
    items = load_datalist(_write(tmp_path, GOOD), "training")
    assert [i["subset"] for i in items] == ["R", "P", "N"]
    assert items[0]["image"] == str(tmp_path / "a.png")
    np.testing.assert_array_equal(items[0]["boxes"], [[1, 2, 10, 12]])
    np.testing.assert_array_equal(items[0]["box_classes"], [0])
    np.testing.assert_array_equal(items[1]["image_label"], [1, 1])
    assert items[1]["boxes"].shape == (0, 4)
    val = load_datalist(tmp_path / "datalist.json", "validation")
    np.testing.assert_array_equal(val[0]["box_classes"], [1])
    assert val[0]["subset"] == "eval"


def test_subsets_are_filtered(tmp_path):
    items = load_datalist(_write(tmp_path, GOOD), "training", subsets=("R", "N"))
    assert [i["subset"] for i in items] == ["R", "N"]


def test_every_problem_is_reported_with_entry_and_file(tmp_path):
    bad = json.loads(json.dumps(GOOD))
    bad["training"][0]["box_classes"] = ["femur"]
    bad["training"][1]["image"] = "missing.png"
    bad["training"][2]["labels"] = {"rib": 1}
    bad["training"].append({"image": "a.png", "subset": "X", "labels": {}})
    bad["training"].append(
        {"image": "a.png", "subset": "R", "labels": {"rib": 1}, "boxes": [[5, 5, 2, 9]], "box_classes": ["rib"]}
    )
    with pytest.raises(DatalistError) as error:
        load_datalist(_write(tmp_path, bad), "training")
    message = str(error.value)
    assert "training[0] a.png: box class 'femur' is not one of ['rib', 'clavicle']" in message
    assert "training[1] missing.png: image file not found" in message
    assert "training[2] c.png: subset N (negative) but labels mark a fracture" in message
    assert "training[3] a.png: subset must be one of" in message
    assert "training[4] a.png: every box needs x1 < x2 and y1 < y2" in message


def test_unparseable_and_missing_datalists(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(DatalistError, match="broken.json: not valid JSON"):
        load_datalist(tmp_path / "broken.json", "training")
    with pytest.raises(DatalistError, match="nothere.json: datalist file not found"):
        load_datalist(tmp_path / "nothere.json", "training")
    with pytest.raises(DatalistError, match="no list named 'test'"):
        load_datalist(_write(tmp_path, GOOD), "test")


def test_subset_weights_give_the_requested_mix():
    items = [{"subset": "R"}] * 2 + [{"subset": "N"}] * 8
    weights = subset_weights(items, {"R": 0.5, "N": 0.5})
    assert sum(weights[:2]) == pytest.approx(0.5) and sum(weights[2:]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no weight to subsets"):
        subset_weights(items + [{"subset": "P"}], {"R": 1.0, "N": 1.0})


def test_sampling_is_uniform_for_image_label_pairs_and_subset_mixed_for_datalists():
    pairs = [{"image": "a.png", "label": "a_l.png"}, {"image": "b.png", "label": "b_l.png"}]
    assert sampling_weights(pairs, {"R": 0.5, "N": 0.5}) == [1.0, 1.0]
    assert samples_per_epoch(pairs, 512) == 2
    datalist = [{"subset": "R"}, {"subset": "N"}, {"subset": "N"}]
    assert sampling_weights(datalist, {"R": 0.5, "N": 0.5}) == pytest.approx([0.5, 0.25, 0.25])
    assert samples_per_epoch(datalist, 512) == 512
    with pytest.raises(ValueError, match="1 of 3 training items have a 'subset'"):
        sampling_weights([{"subset": "R"}, *pairs], {"R": 1.0})


def test_image_level_only_evaluation_entries(tmp_path):
    content = {
        "classes": ["rib", "clavicle"],
        "test": [
            {"image": "a.png", "labels": {"rib": 1, "clavicle": 0}, "boxed": False},
            {"image": "b.png", "labels": {"rib": 1, "clavicle": 0}, "boxes": [[1, 1, 4, 4]], "box_classes": ["rib"]},
            {"image": "c.png", "labels": {"rib": 1, "clavicle": 0}},
            {"image": "d.png", "labels": {"rib": 1}, "boxed": False, "boxes": [[1, 1, 4, 4]], "box_classes": ["rib"]},
        ],
        "training": [{"image": "e.png", "subset": "N", "labels": {"rib": 0}, "boxed": False}],
    }
    path = _write(tmp_path, content, images=("a.png", "b.png", "c.png", "d.png", "e.png"))
    with pytest.raises(DatalistError) as error:
        load_datalist(path, "test")
    message = str(error.value)
    assert "test[2] c.png: labels mark ['rib'] positive but no box" in message  # boxed by default: needs its box
    assert "test[3] d.png: 'boxed': false but boxes are given" in message
    assert "test[0]" not in message and "test[1]" not in message
    with pytest.raises(DatalistError, match="training\\[0\\] e.png: 'boxed': false is for validation/test"):
        load_datalist(path, "training")
    content["test"] = content["test"][:2]
    items = load_datalist(_write(tmp_path, content), "test")
    assert [item["boxed"] for item in items] == [False, True]


@pytest.mark.parametrize("split", ["training", "validation", "test"])
def test_image_in_two_splits_is_refused_naming_both_entries(tmp_path, split):
    leaky = json.loads(json.dumps(GOOD))
    (tmp_path / "sub").mkdir()
    leaky["test"] = [{"image": "sub/../c.png", "labels": {"rib": 0, "clavicle": 0}, "boxes": [], "box_classes": []}]
    with pytest.raises(DatalistError, match="one split only") as error:
        load_datalist(_write(tmp_path, leaky), split)
    assert "training[2] c.png and test[0] sub/../c.png are the same image" in str(error.value)


def test_symbolic_link_to_a_training_image_is_the_same_image(tmp_path):
    leaky = json.loads(json.dumps(GOOD))
    (tmp_path / "link.png").symlink_to(tmp_path / "a.png")
    leaky["validation"][0]["image"] = "link.png"
    with pytest.raises(DatalistError, match=r"training\[0\] a.png and validation\[0\] link.png"):
        load_datalist(_write(tmp_path, leaky), "training")
