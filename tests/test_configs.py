"""Structure of the bundle configs: stage 2 states only its differences, one name per setting."""

from __future__ import annotations

import json
from typing import Any

from conftest import BUNDLE_ROOT
from monai.bundle import ConfigParser

CONFIGS = BUNDLE_ROOT / "configs"


def _load(name: str) -> dict:
    return json.loads((CONFIGS / name).read_text())


def _blocks(value: Any) -> list[str]:
    """Canonical JSON of every dict or list with at least three entries inside ``value`` (itself included)."""
    found = []
    if isinstance(value, dict | list):
        if len(value) >= 3:
            found.append(json.dumps(value, sort_keys=True))
        for child in value.values() if isinstance(value, dict) else value:
            found += _blocks(child)
    return found


def test_distill_copies_no_block_of_train():
    copies = set(_blocks(_load("distill.json"))) & set(_blocks(_load("train.json")))
    assert not copies, f"distill.json repeats train.json blocks (use % or @ references): {sorted(copies)}"


def test_stage2_runs_the_run_list_of_train():
    """A change to train.json's ``run`` reaches stage 2: distill.json only fills its extension points."""
    assert "run" not in _load("distill.json")
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.json"), str(CONFIGS / "distill.json")])
    assert parser["run"] == _load("train.json")["run"]
    assert parser["stage_handlers"] == ["@ema_handler", "@aals_handler", "@teacher_validation"]
    assert set(parser["train"]["checkpoint_dict"]) == {*_load("train.json")["train"]["checkpoint_dict"], "teacher"}
    assert parser["resume_steps"][: len(_load("train.json")["resume_steps"])] == _load("train.json")["resume_steps"]
    parser.parse()  # the % macros expand to the validation metrics
    assert parser["validate_teacher"]["froc_metric"] == parser["validate"]["froc_metric"]


def test_the_peak_score_floor_has_one_name():
    """``score_floor`` in every config that sets it (the values differ on purpose: inference output, see
    docs/inference-and-clinical-outputs.md)."""
    for name in ("train.json", "inference.json"):
        text = (CONFIGS / name).read_text()
        assert '"score_floor": "@score_floor"' in text and "detection_score_floor" not in text, name
    assert 0 < _load("train.json")["score_floor"] < _load("inference.json")["score_floor"]


def test_the_network_is_created_before_the_training_data():
    """MONAI instantiates in reference order; the network's initialisation and the training data both draw from the
    seeded global generator, so the trainer must name the network first for a seed to give the same weights."""
    trainer = list(_load("train.json")["train"]["trainer"])
    assert trainer.index("network") < trainer.index("train_data_loader")
