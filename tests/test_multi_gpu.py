"""Multi-process training with ``torchrun`` (gloo on CPU): stage 1 and stage 2 on 2 processes.

The validation metrics are gathered across ranks (each rank validates its shard of the split); they must equal a
single-process evaluation of the same weights on the same split.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from bundle_runs import read_metrics_csv, run_bundle

from cxr_phantom import generate_dataset

pytestmark = pytest.mark.slow  # torchrun with 2 processes: full tier only

PROCESSES = 2


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("phantoms_ddp")
    generate_dataset(
        root, num_images=46, size=96, seed=5, prevalence=0.5, r_fraction=0.5, val_fraction=0.5,
        test_fraction=0.1, difficulty=0.0, progress=False,
    )  # fmt: skip
    return root


def assert_same_metrics(distributed: dict[str, float], single: dict[str, float]) -> None:
    names = [name for name in distributed if name.startswith("val_") or name.startswith("teacher_val_")]
    assert names, distributed
    assert any(0.0 < distributed[name] < 1.0 for name in names), f"only trivial metrics: {distributed}"
    for name in names:
        plain = name.removeprefix("teacher_")
        a, b = distributed[name], single[plain]
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-6), (name, a, b)


def evaluate_single_process(dataset: Path, checkpoint: Path, output_dir: Path, key: str = "model") -> dict:
    """Evaluate ``checkpoint[key]`` on the validation split in one process; return the raw ignite metrics."""
    run_bundle(
        "evaluating", ["train.json", "evaluate.json"], "--dataset_dir", str(dataset), "--validate#split",
        "validation", "--ckpt_path", str(checkpoint), "--output_dir", str(output_dir),
        "--validate#handlers#0#load_dict", f"{{'{key}': '@network'}}",
    )  # fmt: skip
    return read_metrics_csv(output_dir / "metrics.csv")


@pytest.fixture(scope="module")
def stage1(dataset, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("stage1_ddp")
    output = run_bundle(
        "training", ["train.json", "multi_gpu_train.json"], "--dataset_dir", str(dataset),
        "--ckpt_dir", str(work / "models"), "--output_dir", str(work / "runs"),
        "--train#trainer#max_epochs", "2", "--train#samples_per_epoch", "16", processes=PROCESSES,
    )  # fmt: skip
    (work / "log.txt").write_text(output)
    return work


def test_validation_split_is_sharded_unevenly(dataset):
    # an odd split size exercises ranks with different shard sizes (DistributedSampler without padding)
    assert len(json.loads((dataset / "datalist.json").read_text())["validation"]) % PROCESSES == 1


def test_stage1_two_processes_logs_on_rank0_and_gathers_metrics(stage1, dataset, tmp_path):
    models = stage1 / "models"
    assert {"model.pt", "checkpoint_final.pt", "checkpoint_epoch=2.pt"} <= {p.name for p in models.iterdir()}
    # checkpoints hold the bare network (no DDP "module." prefix), loadable by single-process configs
    weights = torch.load(models / "checkpoint_final.pt", weights_only=True)["model"]
    assert not any(key.startswith("module.") for key in weights)
    # logging handlers exist on rank 0 only: one process wrote TensorBoard events, one Stats handler printed
    writers = {path.name.split(".")[-2] for path in (stage1 / "runs" / "tensorboard").iterdir()}
    assert len(writers) == 1, writers
    assert (stage1 / "log.txt").read_text().count("Epoch[2] Metrics -- ") == 1
    gathered = read_metrics_csv(stage1 / "runs" / "validation" / "metrics.csv")
    single = evaluate_single_process(dataset, models / "checkpoint_final.pt", tmp_path)
    assert_same_metrics(gathered, single)


def test_distillation_two_processes_gathers_student_and_teacher_metrics(stage1, dataset, tmp_path):
    work = tmp_path / "distill"
    configs = ["train.json", "distill.json", "multi_gpu_train.json", "multi_gpu_distill.json"]
    run_bundle(
        "training", configs, "--dataset_dir", str(dataset),
        "--stage1_checkpoint", str(stage1 / "models" / "model.pt"), "--ckpt_dir", str(work / "models"),
        "--output_dir", str(work / "runs"), "--train#trainer#max_epochs", "1", "--train#samples_per_epoch", "16",
        "--ema_decay", "0.9", processes=PROCESSES,
    )  # fmt: skip
    checkpoint = work / "models" / "checkpoint_final.pt"
    assert {"model", "teacher", "optimizer", "trainer"} <= set(torch.load(checkpoint, weights_only=True))
    assert (work / "models" / "teacher.pt").is_file()
    student = read_metrics_csv(work / "runs" / "validation" / "metrics.csv")
    assert_same_metrics(student, evaluate_single_process(dataset, checkpoint, tmp_path / "student"))
    teacher = read_metrics_csv(work / "runs" / "validation_teacher" / "metrics.csv")
    assert_same_metrics(teacher, evaluate_single_process(dataset, checkpoint, tmp_path / "teacher", key="teacher"))
