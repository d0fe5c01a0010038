"""Class-agnostic positives (training subset A): the top_class target rule and the handler that applies it."""

from __future__ import annotations

import json

import pytest
import torch
from bundle_runs import run_bundle
from ignite.engine import Engine
from torch import nn

from scripts.distill.aals import AALSTargetHandler, agnostic_masks, make_target_fn, sharpen


class FixedTeacher(nn.Module):
    """Returns fixed logits ``(B, 2, 4, 4)`` chosen per image, whatever the input."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.logits[image[:, 0, 0, 0].long()]


def test_top_class_is_chosen_among_candidates_only():
    prob = torch.zeros(3, 3, 2, 2)
    prob[:, 0, 0, 0], prob[:, 1, 1, 1], prob[:, 2, 0, 1] = 0.3, 0.6, 0.9
    candidates = torch.tensor([[1, 1, 0], [1, 0, 1], [1, 0, 0]])
    sharpen_mask, keep = agnostic_masks(prob, candidates)
    assert sharpen_mask[..., 0, 0].tolist() == [[0, 1, 0], [0, 0, 1], [1, 0, 0]]  # class 2 is no candidate in row 0
    assert keep[..., 0, 0].tolist() == [[1, 0, 0], [1, 0, 0], [0, 0, 0]]
    with pytest.raises(ValueError, match="unknown class-agnostic rule"):
        agnostic_masks(prob, candidates, "all")


def test_handler_sharpens_the_top_class_of_agnostic_images_and_keeps_the_teacher_map_elsewhere():
    torch.manual_seed(0)
    logits = torch.randn(4, 2, 4, 4)
    logits[2, 1] += 2.0  # image 2 (subset A): the clavicle map has the higher maximum
    teacher = FixedTeacher(logits)
    subsets = ["R", "P", "A", "N"]
    batch = {
        "image": torch.arange(4.0).reshape(4, 1, 1, 1).expand(4, 1, 16, 16).clone(),  # pixel value = logits row
        "label": torch.zeros(4, 2, 4, 4),
        "image_label": torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]),
        "subset": subsets,
    }
    batch["label"][0, 0, 1, 1] = 1.0  # R image's box target
    original = batch["label"].clone()
    engine = Engine(lambda e, b: None)
    engine.state.batch = batch
    AALSTargetHandler(teacher, make_target_fn("aals", a0=4.0))(engine)
    new = engine.state.batch["label"]
    prob = torch.sigmoid(logits)
    torch.testing.assert_close(new[[0, 3]], original[[0, 3]])  # R and N keep their targets
    torch.testing.assert_close(new[1, 0], sharpen(prob[1:2], 4.0)[0, 0])  # P: its class sharpened...
    assert (new[1, 1] == 0).all()  # ...the class labelled negative zero
    torch.testing.assert_close(new[2, 1], sharpen(prob[2:3], 4.0)[0, 1])  # A: the top class sharpened...
    torch.testing.assert_close(new[2, 0], prob[2, 0])  # ...the other candidate keeps the teacher's map
    # the oracle arm has no teacher targets: a batch with A images is refused, not trained on zero maps
    engine.state.batch = {**batch, "label": original.clone()}
    with pytest.raises(ValueError, match="subset A"):
        AALSTargetHandler(teacher, None)(engine)


@pytest.mark.slow
def test_stage2_trains_on_class_agnostic_positives_when_asked(stage1, phantoms, tmp_path):
    """The phantom set's P images as subset A, read by stage 2 when its datalist subsets name A (the default
    subsets leave A out: ``test_combine_keeps_class_agnostic_entries_in_training_only``)."""
    datalist = json.loads((phantoms / "datalist.json").read_text())
    for entry in datalist["training"]:
        entry["image"] = str(phantoms / entry["image"])
        if entry["subset"] == "P":
            entry.update({"subset": "A", "labels": {"rib": 1, "clavicle": 1}})
    for split in ("validation", "test"):
        for entry in datalist[split]:
            entry["image"] = str(phantoms / entry["image"])
    (tmp_path / "datalist.json").write_text(json.dumps(datalist))
    common = [
        "--dataset_dir", str(tmp_path), "--stage1_checkpoint", str(stage1 / "model.pt"), "--ckpt_dir", str(tmp_path),
        "--output_dir", str(tmp_path / "runs"), "--train#samples_per_epoch", "8", "--train#trainer#max_epochs", "1",
    ]  # fmt: skip
    output = run_bundle(
        "training", ["train.json", "distill.json"], *common, "--train#datalist#subsets", "['R','N','A']",
        "--train#subset_mix", "{'R': 0.25, 'N': 0.25, 'A': 0.5}",
    )  # fmt: skip
    assert "teacher map maxima" in output and "not used by this stage" not in output
    assert (tmp_path / "model.pt").is_file()
