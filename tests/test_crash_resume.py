"""Stage 2 killed with SIGKILL mid-epoch, during validation and during a checkpoint write, resumed with ``latest``.

Each run is ``python -m monai.bundle run`` with an extra config file that arms one crash point (a small module
written below: it ends its own process with SIGKILL at the chosen moment) and records every completed validation
(score and a hash of the weights validated). After the last resume the run must have completed the full iteration
count, every checkpoint file must load, no temporary file may be left, and ``model.pt``/``teacher.pt`` must hold
the weights of the first validation with the best score over all runs.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from bundle_runs import CONFIGS, LIGHT, config_files
from conftest import REPO_ROOT

from scripts.model.network import FractureHeatmapNet

pytestmark = pytest.mark.slow  # stage 2 killed and resumed several times: full tier only

EPOCHS, SAMPLES, BATCH = 5, 16, 4
ITERATIONS_PER_EPOCH = SAMPLES // BATCH

CRASH_MODULE = '''
"""Test-only fault injection: SIGKILL this process at one point; log every completed validation."""
import hashlib, io, json, os, signal

import torch
from ignite.engine import Events


def weights_hash(module):
    digest = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _kill():
    os.kill(os.getpid(), signal.SIGKILL)


def _validators(trainer):
    """The evaluators run by the trainer's ValidationHandlers (found when the trainer starts)."""
    found = []
    for handlers in trainer._event_handlers.values():
        for handler, _, _ in handlers:
            owner = handler._parent() if hasattr(handler, "_parent") else handler
            validator = getattr(owner, "validator", None)
            if validator is not None and all(validator is not v for v in found):
                found.append(validator)
    return found


def arm(trainer, student, log_path, point):
    """Record validations; SIGKILL at ``point``: iteration:N, validation:EPOCH, checkpoint_write:ITERATION, none."""
    kind, _, value = point.partition(":")
    value = int(value or 0)
    state = {}

    def record(engine):
        name = "student" if engine.network is student else "teacher"
        score = engine.state.metrics[engine.state.key_metric_name]
        entry = {"validator": name, "epoch": trainer.state.epoch, "score": float(score)}
        entry["hash"] = weights_hash(engine.network)
        with open(log_path, "a") as stream:
            stream.write(json.dumps(entry) + "\\n")

    def started(engine):  # the teacher's validator is attached in the run sequence, after initialize
        for evaluator in _validators(trainer):
            evaluator.add_event_handler(Events.EPOCH_COMPLETED, record)
            if kind == "validation" and evaluator.network is student:
                evaluator.add_event_handler(
                    Events.ITERATION_COMPLETED, lambda engine: _kill() if trainer.state.epoch == value else None
                )

    trainer.add_event_handler(Events.STARTED, started)
    if kind == "iteration":
        trainer.add_event_handler(Events.ITERATION_COMPLETED(once=value), lambda engine: _kill())
    elif kind == "checkpoint_write":  # write half of the epoch checkpoint's bytes, then die
        real_save = torch.save

        def save(obj, f, *args, **kwargs):
            if isinstance(obj, dict) and obj.get("trainer", {}).get("iteration") == value and hasattr(f, "write"):
                buffer = io.BytesIO()
                real_save(obj, buffer, *args, **kwargs)
                f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
                f.flush()
                os.fsync(f.fileno())
                _kill()
            return real_save(obj, f, *args, **kwargs)

        torch.save = save
'''


def _network() -> FractureHeatmapNet:
    values = dict(zip(LIGHT[::2], LIGHT[1::2], strict=True))
    return FractureHeatmapNet(
        num_classes=2,
        block="basic",
        layers=json.loads(values["--network_def#layers"]),
        widths=json.loads(values["--network_def#widths"]),
        fpn_channels=int(values["--network_def#fpn_channels"]),
    )


def _run(work: Path, phantoms: Path, point: str, resume: bool) -> subprocess.CompletedProcess:
    crash_config = work / "crash.json"
    crash_config.write_text(
        json.dumps(
            {
                "+imports": ["$import crash_points"],
                "+initialize": [
                    f"$crash_points.arm(@train#trainer, @network, {str(work / 'validations.jsonl')!r}, {point!r})"
                ],
            }
        )
    )
    configs = config_files(["train.json", "distill.json"])[:-1] + f",'{crash_config}']"
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", configs]
    command += ["--meta_file", str(CONFIGS / "metadata.json"), *LIGHT]
    command += ["--dataset_dir", str(phantoms), "--ckpt_dir", str(work / "ckpt"), "--output_dir", str(work / "runs")]
    command += ["--stage1_checkpoint", str(work / "stage1.pt"), "--train#trainer#max_epochs", str(EPOCHS)]
    command += ["--train#samples_per_epoch", str(SAMPLES), "--batch_size", str(BATCH)]
    if resume:
        command += ["--resume_checkpoint", "latest"]
    # the crash module, and the bundle root: the crash point is armed in `initialize`, before monai.bundle adds it
    paths = [str(work), str(REPO_ROOT / "bundle"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env=env)


def _load_all(folder: Path) -> dict[str, dict]:
    return {path.name: torch.load(path, map_location="cpu", weights_only=True) for path in folder.glob("*.pt")}


def test_stage2_survives_sigkill_at_every_point_and_model_pt_is_the_best_validated(phantoms, tmp_path):
    (tmp_path / "crash_points.py").write_text(CRASH_MODULE)
    torch.manual_seed(0)
    torch.save(_network().state_dict(), tmp_path / "stage1.pt")
    ckpt = tmp_path / "ckpt"
    crashes = [
        ("iteration:6", False),  # mid-epoch 2 (4 iterations per epoch)
        ("validation:3", True),  # during the student's validation after epoch 3
        (f"checkpoint_write:{4 * ITERATIONS_PER_EPOCH}", True),  # half-way through writing checkpoint_epoch=4.pt
    ]
    for point, resume in crashes:
        result = _run(tmp_path, phantoms, point, resume)
        assert result.returncode == -signal.SIGKILL, f"{point}: expected a SIGKILL\n{result.stderr[-3000:]}"
        _load_all(ckpt)  # every .pt file on disk loads after every crash: none is truncated
    partial = [p.name for p in ckpt.iterdir() if p.name.startswith(".checkpoint_epoch=4.pt")]
    assert partial, "the crash during the write must have left its temporary file, not checkpoint_epoch=4.pt"
    assert not (ckpt / "checkpoint_epoch=4.pt").exists() and (ckpt / "checkpoint_epoch=3.pt").exists()

    result = _run(tmp_path, phantoms, "none", resume=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "latest intact checkpoint is" in output and "checkpoint_epoch=3.pt" in output
    assert "holds the best model so far" in output

    files = _load_all(ckpt)
    assert not [p for p in ckpt.iterdir() if p.name.startswith(".")], "temporary files left behind"
    final = files["checkpoint_final.pt"]["trainer"]
    assert final["iteration"] == EPOCHS * ITERATIONS_PER_EPOCH and final["max_epochs"] == EPOCHS
    network = _network()
    network.load_state_dict(files["model.pt"])  # strict: a bare, complete state dict
    network.load_state_dict(files["teacher.pt"])

    sys.path.insert(0, str(tmp_path))
    try:
        from crash_points import weights_hash
    finally:
        sys.path.remove(str(tmp_path))
    validations = [json.loads(line) for line in (tmp_path / "validations.jsonl").read_text().splitlines()]
    epochs = sorted({v["epoch"] for v in validations if v["validator"] == "student"})
    assert epochs == list(range(1, EPOCHS + 1))  # every epoch validated (some twice: redone after a crash)
    for name, file in [("student", "model.pt"), ("teacher", "teacher.pt")]:
        history = [v for v in validations if v["validator"] == name and not math.isnan(v["score"])]
        best = max(v["score"] for v in history)
        first_best = next(v for v in history if v["score"] == best)
        network.load_state_dict(files[file])
        assert weights_hash(network) == first_best["hash"], f"{file} is not the best validated {name}"
        recorded = json.loads((ckpt / f"{Path(file).stem}_key_metric.json").read_text())
        assert recorded["key_metric"] == pytest.approx(best)
