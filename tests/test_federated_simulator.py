"""Federated stage 1 and stage 2 of the bundle in NVIDIA FLARE's simulator (2 sites, 1 round, 64 px phantoms).

Sites: ``site-a`` holds R + N, ``site-x`` R + N, ``site-b`` P + N (dealt from one phantom set).

* Stage 1 runs at the two R sites with a quorum of 1; ``site-x`` diverges during the round (its loss weight is NaN,
  so its weights become NaN and ``MonaiAlgo`` refuses to send them). The job must finish with ``site-a``'s update
  alone: a site dropping out mid-round does not stop the consortium.
* Stage 2 starts from stage 1's global model at ``site-a`` and ``site-b`` (a site without boxes joins stage 2 only);
  ``site-b`` distils its P images with AALS from the received global model (teacher policy ``global``).
* Stage 1 again, 2 rounds, quorum 1, a short ``wait_after_quorum``: ``site-x``'s process is killed (SIGKILL) while it
  trains in the first round. Each round ends ``wait_after_quorum`` seconds after ``site-a`` answered, and the job
  finishes with status 0.

Full tier only (three simulator runs, about 40 CPU-seconds, and a minute of the third spent waiting); needs
``requirements-fl.txt``.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import torch
from conftest import BUNDLE_ROOT
from cxr_fl.sites import split_sites, write_site_datalists

from cxr_phantom import generate_dataset

pytestmark = pytest.mark.slow
pytest.importorskip("nvflare")

from cxr_fl.jobs import build_job  # noqa: E402  (needs nvflare)

#: Light network and 64 px images (as tests/bundle_runs.py), 8 samples per local epoch: seconds per round.
TINY = {
    "image_size": 64, "network_def#block": "basic", "network_def#layers": [1, 1, 1, 1],
    "network_def#widths": [8, 16, 32, 64], "network_def#fpn_channels": 16, "batch_size": 4, "num_workers": 0,
    "train#samples_per_epoch": 8, "tensorboard_overlays": 0,
}  # fmt: skip


@pytest.fixture(scope="module")
def consortium(tmp_path_factory) -> Path:
    """Phantoms dealt to three sites and their settings file (``sites.json``); ``site-x`` diverges."""
    root = tmp_path_factory.mktemp("fl")
    data = root / "data"
    generate_dataset(
        data, num_images=40, size=64, seed=11, prevalence=0.5, r_fraction=0.5, val_fraction=0.2,
        test_fraction=0.1, difficulty=0.0, image_format="png", progress=False,
    )  # fmt: skip
    holdings = {"site-a": ("R", "N"), "site-x": ("R", "N"), "site-b": ("P", "N")}
    paths = write_site_datalists(data, split_sites(json.loads((data / "datalist.json").read_text()), holdings))
    settings = {
        site: {"dataset_dir": str(data), "datalist": str(path), "bundle_root": str(BUNDLE_ROOT),
               "work_dir": str(root / "work" / site)}
        for site, path in paths.items()
    }  # fmt: skip
    settings["site-x"]["overrides"] = {"loss#pos_weight": "$float('nan')"}  # diverges during its first round
    (root / "sites.json").write_text(json.dumps(settings, indent=1))
    return root


def simulate(job: Path, workspace: Path, sites: list[str], site_config: Path) -> str:
    """``nvflare simulator`` as the deployment guide types it; returns the combined log of a job that finished.

    An aborted job also prints "Finished FedAvg" and writes a global model, so the exit status and FLARE's abort
    line are checked here.
    """
    env = dict(os.environ, CXR_FL_SITE_CONFIG=str(site_config), OMP_NUM_THREADS="1")
    command = [str(Path(sys.executable).with_name("nvflare")), "simulator", str(job), "-w", str(workspace)]
    command += ["-c", ",".join(sites), "-t", str(len(sites))]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=workspace.parent)
    log = result.stdout + result.stderr
    assert result.returncode == 0 and "Aborting current RUN" not in log, log[-3000:]
    return log


def global_model(workspace: Path) -> dict[str, torch.Tensor]:
    path = workspace / "server" / "simulate_job" / "app_server" / "FL_global_model.pt"
    assert path.is_file(), f"no global model in {workspace}"
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def initial_model(job: Path) -> dict[str, torch.Tensor]:
    return torch.load(job / "app_server" / "custom" / "initial_model.pt", weights_only=True)["model"]


def test_stage1_survives_a_site_dropping_out_then_stage2_distils_at_a_site_without_boxes(consortium):
    site_config = consortium / "sites.json"

    # stage 1 at the two R sites, quorum 1: site-x's round fails, site-a's update makes the global model
    job1 = build_job(
        stage=1, sites=["site-a", "site-x"], rounds=1, configs=["train.json", "demo.json"],
        out_dir=consortium / "jobs", overrides=TINY, seed=0, quorum=1, wait_after_quorum=120,
    )  # fmt: skip
    ws1 = consortium / "ws1"
    log = simulate(job1, ws1, ["site-a", "site-x"], site_config)
    assert "Finished FedAvg" in log, log[-3000:]
    assert "Ignore the result from site-x" in log and "Aggregated 1/1 results" not in log, log[-3000:]
    assert "Aggregated 1/2 results" in log and "Aggregated 2/2 results" not in log
    assert "became NaN" in (ws1 / "site-x" / "log.txt").read_text()  # MonaiAlgo refused to send NaN weights
    stage1, start = global_model(ws1), initial_model(job1)
    assert set(stage1) == set(start)
    assert all(torch.isfinite(value).all() for value in stage1.values())
    changed = [name for name in start if start[name].is_floating_point() and not torch.equal(start[name], stage1[name])]
    assert len(changed) > len(start) // 2  # site-a's training moved the global model
    assert (consortium / "work" / "site-a" / "models" / "model.pt").is_file()  # site-a validated the global model

    # stage 2 from stage 1's global model at site-a (R + N) and site-b (P + N, AALS on its P)
    job2 = build_job(
        stage=2, sites=["site-a", "site-b"], rounds=1, configs=["train.json", "distill.json", "demo.json"],
        out_dir=consortium / "jobs", initial_ckpt=ws1 / "server" / "simulate_job" / "app_server" / "FL_global_model.pt",
        overrides={**TINY, "ema_decay": 0.9}, seed=0, teacher="global",
    )  # fmt: skip
    ws2 = consortium / "ws2"
    log = simulate(job2, ws2, ["site-a", "site-b"], site_config)
    assert "Finished FedAvg" in log and "Aggregated 2/2 results" in log, log[-3000:]
    site_b = (ws2 / "site-b" / "log.txt").read_text()
    assert "teacher set to the received global model (policy global, round 0)" in site_b
    p_images = [int(n) for n in re.findall(r"teacher map maxima, positive classes of P images \(n=(\d+)\)", site_b)]
    assert p_images and sum(p_images) > 0, site_b[-2000:]  # AALS targets were made for site-b's P images
    stage2 = global_model(ws2)
    assert all(torch.isfinite(value).all() for value in stage2.values())
    assert any(not torch.equal(stage1[name], stage2[name]) for name in stage1 if stage1[name].is_floating_point())

    # the global checkpoint is a bundle checkpoint: the bundle's own loader takes it (weights only)
    from monai.bundle import ConfigParser

    from scripts.distill.aals import load_weights

    parser = ConfigParser()
    parser.read_config([str(BUNDLE_ROOT / "configs" / name) for name in ("train.json", "demo.json")])
    for key, value in TINY.items():
        parser[key] = value
    network = load_weights(
        parser.get_parsed_content("network_def"),
        str(ws2 / "server" / "simulate_job" / "app_server" / "FL_global_model.pt"),
    )
    with torch.no_grad():
        heatmap = torch.sigmoid(network.eval()(torch.rand(1, 1, 64, 64)))
    assert heatmap.shape == (1, 2, 16, 16) and math.isfinite(float(heatmap.sum()))


#: ``wait_after_quorum`` of the killed-site test: long enough for ``site-x`` to reach its training in round 0 (both
#: sites start together; ``site-a`` answers about when ``site-x`` starts training), short enough for a test.
KILL_WAIT = 30


def log_times(log: str, message: str) -> list[datetime]:
    """Timestamps of the log lines that contain ``message`` (FLARE's ``2026-12-05 06:02:20,222 - ...`` format)."""
    stamps = re.findall(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) - .*" + re.escape(message), log, re.M)
    return [datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f") for stamp in stamps]


def test_stage1_with_quorum_1_survives_a_site_process_killed_while_training(consortium):
    """A site's process killed outright (SIGKILL, no error result, no goodbye) in round 0 of 2, quorum 1.

    ``site-x``'s loss function sends SIGKILL to its own process at its first training iteration: the FLARE
    simulator runs each site in its own worker process (``simulator_worker``; the training script runs in-process
    there, in a thread), so this is what ``kill -9`` of that worker does, at a fixed point of the round instead of a
    timed one. Shows: the simulator logs a communication error with the site; each round (the site is sampled again
    in round 1) ends ``wait_after_quorum`` seconds after ``site-a``'s update, aggregated alone; the job finishes
    with status 0 and writes the global model (``site-a``'s training). FLARE never reports the site dead.
    """
    settings = json.loads((consortium / "sites.json").read_text())
    for site in settings.values():
        site["work_dir"] = str(consortium / "work-killed" / Path(site["work_dir"]).name)
    kill = "__import__('os').kill(__import__('os').getpid(), __import__('signal').SIGKILL)"
    settings["site-x"]["overrides"] = {"loss": f"$lambda *args, **kwargs: {kill}"}  # at its first training step
    site_config = consortium / "sites-killed.json"
    site_config.write_text(json.dumps(settings, indent=1))
    job = build_job(
        stage=1, sites=["site-a", "site-x"], rounds=2, configs=["train.json", "demo.json"],
        out_dir=consortium / "jobs", overrides=TINY, seed=0, quorum=1, wait_after_quorum=KILL_WAIT,
        name="cxr_stage1_killed",
    )  # fmt: skip
    ws = consortium / "ws-killed"
    log = simulate(job, ws, ["site-a", "site-x"], site_config)

    site_x = (ws / "site-x" / "log.txt").read_text()
    assert "site-x round 0: global model on local validation" in site_x, site_x[-2000:]  # killed in round 0,
    assert "site-x round 1" not in site_x and "site-x finished" not in site_x  # after validating, in training
    assert "Start site-x training" in log and "Communication error with client site-x" in log, log[-3000:]
    assert "Round 1 started" in log and "Finished FedAvg" in log, log[-3000:]
    assert log.count("Aggregated 1/2 results") == 2 and "Aggregated 2/2 results" not in log, log[-3000:]
    assert "Ignore the result from site-x" not in log  # no result at all, not an error result
    assert not re.search(r"dead.*site-x|site-x.*dead", log, re.I)

    # each round ends wait_after_quorum after site-a's update (the controller's wait), not earlier, not much later
    answered, closed = log_times(log, "Aggregated 1/2 results"), log_times(log, "Start persist model on server")
    assert len(answered) == len(closed) == 2, log[-3000:]
    waits = [(end - start).total_seconds() for start, end in zip(answered, closed, strict=True)]
    assert all(KILL_WAIT - 1 <= wait <= KILL_WAIT + 30 for wait in waits), waits

    model, start = global_model(ws), initial_model(job)
    assert all(torch.isfinite(value).all() for value in model.values())
    changed = [name for name in start if start[name].is_floating_point() and not torch.equal(start[name], model[name])]
    assert len(changed) > len(start) // 2  # site-a's two rounds of training
