"""The NVIDIA FLARE job of one stage of the bundle's training: build it, export it, simulate it.

Stage 1 (supervised on R + N) runs at the sites that hold boxed positives (R); stage 2 (AALS distillation of the
student) at every site, each applying AALS to its own P images. Both are FedAvg over the listed sites, each site
training with the bundle's own configs through ``monai.fl``'s ``MonaiAlgo`` (``cxr_fl/client.py``). The job folder
holds:

* ``app_server``: FLARE's ``FedAvg`` with a quorum (``cxr_fl.controller.QuorumFedAvg``) and FLARE's PyTorch
  persistor, which starts from ``initial_model.pt`` (stage 1: the bundle's network as built from its configs with
  the job seed; stage 2: the calibrated stage-1 global model) and writes the global model atomically
  (``FL_global_model.pt``, temporary file, fsync, rename);
* ``app_<site>``: ``cxr_fl`` (the client script and its modules) and ``recipe.json``, the training recipe that is
  the same for every site (stage, bundle config names, local epochs, overrides, teacher policy).

The command line is ``fl/job.py``. What each site sets (data, bundle, work folder) is not in the job: see
:mod:`cxr_fl.site_settings`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cxr_fl.teacher import TEACHER_POLICIES

__all__ = ["build_job", "copy_weights", "initial_network_weights", "simulate"]

PACKAGE = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE.parents[1]
INITIAL_MODEL = "initial_model.pt"


def initial_network_weights(
    bundle_root: Path, configs: Sequence[str], overrides: Mapping[str, Any], seed: int, path: Path
) -> Path:
    """Build the bundle's ``network_def`` from its configs (with ``overrides``) after seeding torch; save its
    state dict as ``{"model": ...}`` to ``path`` (stage 1's common starting point; every site gets these weights).
    """
    import torch
    from monai.bundle import ConfigParser

    if str(bundle_root) not in sys.path:
        sys.path.insert(0, str(bundle_root))
    parser = ConfigParser()
    parser.read_config([str(bundle_root / "configs" / name) for name in configs])
    for key, value in overrides.items():
        if key.startswith("network_def") or key in ("num_classes", "classes"):
            parser[key] = value
    torch.manual_seed(seed)
    network = parser.get_parsed_content("network_def")
    torch.save({"model": {name: value.contiguous() for name, value in network.state_dict().items()}}, path)
    return path


def copy_weights(source: Path, target: Path, key: str = "model") -> Path:
    """Save the state dict of checkpoint ``source`` (bare or under ``key``) as ``{key: ...}`` with contiguous
    tensors: checkpoints of the channels-last network hold strided tensors, which FLARE's tensor streaming refuses,
    and nothing but the weights (no optimizer or trainer state) is to go into the job."""
    import torch

    state = torch.load(source, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get(key), dict):
        state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{source}: expected a state dict of tensors (bare or under {key!r}).")
    torch.save({key: {name: value.contiguous() for name, value in state.items()}}, target)
    return target


def build_job(
    stage: int,
    sites: Sequence[str],
    rounds: int,
    configs: Sequence[str],
    out_dir: Path,
    initial_ckpt: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    local_epochs: int = 1,
    teacher: str = "global",
    seed: int = 0,
    validate_every: int = 1,
    quorum: int | None = None,
    wait_after_quorum: int = 3600,
    round_timeout: int = 0,
    bundle_root: Path = REPO_ROOT / "bundle",
    name: str | None = None,
) -> Path:
    """Export the FLARE job of ``stage`` for ``sites`` into ``out_dir/<name>``; returns the job folder.

    Args:
        stage: 1 (R + N, sites with boxed positives only) or 2 (AALS distillation, every site).
        sites: FLARE site names that run the job (its deploy map).
        rounds: FedAvg rounds.
        configs: bundle config names merged in order at every site (``train.json`` first; stage 2 adds
            ``distill.json``).
        out_dir: where the job folder is written (replaced if it exists).
        initial_ckpt: the starting global model; stage 2 needs the calibrated stage-1 model. Stage 1 without it
            starts from the bundle's network built with ``seed`` (needs the bundle at ``bundle_root`` here only).
        overrides: bundle overrides applied at every site (the consortium's training recipe).
        local_epochs: bundle epochs (``train#samples_per_epoch`` samples each) a site trains per round.
        teacher: stage-2 teacher policy (:mod:`cxr_fl.teacher`): ``global`` or ``local``.
        seed: job seed (initial weights; each site derives its sampling seed from it and its name).
        validate_every: each site validates the received global model every that many rounds (0: never).
        quorum: results a round needs (default: every site).
        wait_after_quorum: seconds a round waits for the other sites after the quorum answered.
        round_timeout: seconds after which a round ends whatever has arrived (0: no limit).
        bundle_root: the bundle used to build the stage-1 initial model.
        name: job name (default ``cxr_stage<stage>``).
    """
    from nvflare.app_opt.pt.file_model_persistor import PTFileModelPersistor
    from nvflare.client.config import ExchangeFormat
    from nvflare.fuel.utils.constants import FrameworkType
    from nvflare.job_config.api import FedJob
    from nvflare.job_config.script_runner import ScriptRunner

    from cxr_fl.controller import QuorumFedAvg

    if stage not in (1, 2):
        raise ValueError(f"stage must be 1 or 2, got {stage}.")
    if not sites or len(set(sites)) != len(sites):
        raise ValueError(f"sites must be distinct names, got {list(sites)}.")
    if teacher not in TEACHER_POLICIES:
        raise ValueError(f"teacher must be one of {TEACHER_POLICIES}, got {teacher!r}.")
    if stage == 2 and initial_ckpt is None:
        raise ValueError("stage 2 starts from the calibrated stage-1 global model: give initial_ckpt.")
    if initial_ckpt is not None and not Path(initial_ckpt).is_file():
        raise FileNotFoundError(f"initial checkpoint {initial_ckpt} does not exist.")
    quorum = len(sites) if quorum is None else quorum
    name = name or f"cxr_stage{stage}"
    recipe = {
        "stage": stage,
        "configs": list(configs),
        "local_epochs": local_epochs,
        "teacher": teacher,
        "overrides": dict(overrides or {}),
        "seed": seed,
        "validate_every": validate_every,
    }
    with tempfile.TemporaryDirectory() as staging:
        server_files, client_files = Path(staging) / "server", Path(staging) / "client"
        for folder in (server_files, client_files):  # each becomes the app's custom/ folder
            shutil.copytree(PACKAGE, folder / PACKAGE.name, ignore=shutil.ignore_patterns("__pycache__"))
        if initial_ckpt is None:
            initial_network_weights(Path(bundle_root), configs, recipe["overrides"], seed, server_files / INITIAL_MODEL)
        else:
            copy_weights(Path(initial_ckpt), server_files / INITIAL_MODEL)
        (client_files / "recipe.json").write_text(json.dumps(recipe, indent=1) + "\n")

        job = FedJob(name=name, min_clients=quorum)
        job.to_server(
            QuorumFedAvg(
                num_clients=len(sites),
                num_rounds=rounds,
                quorum=quorum,
                wait_after_quorum=wait_after_quorum,
                round_timeout=round_timeout,
                persistor_id="persistor",
            )
        )
        # tensors end to end (no NumPy round trip): the sites send PyTorch tensors (server_expected_format)
        persistor = PTFileModelPersistor(source_ckpt_file_full_name=INITIAL_MODEL, allow_numpy_conversion=False)
        job.to_server(persistor, id="persistor")
        job.to_server(str(server_files))
        cwd = Path.cwd()
        os.chdir(client_files)  # FLARE resolves the script path against the working folder
        try:
            for site in sites:
                runner = ScriptRunner(
                    script=f"{PACKAGE.name}/client.py",
                    script_args="--recipe recipe.json",
                    framework=FrameworkType.PYTORCH,
                    server_expected_format=ExchangeFormat.PYTORCH,
                )
                job.to(runner, site)
                job.to(str(client_files), site)
        finally:
            os.chdir(cwd)
        out_dir = Path(out_dir).resolve()
        out_dir.mkdir(parents=True, exist_ok=True)
        if (out_dir / name).exists():
            shutil.rmtree(out_dir / name)
        os.chdir(client_files)
        try:
            job.export_job(str(out_dir))
        finally:
            os.chdir(cwd)
    return out_dir / name


def simulate(job_dir: Path, workspace: Path, sites: Sequence[str], site_config: Path, threads: int = 0) -> int:
    """Run ``nvflare simulator`` on the job for ``sites`` (``CXR_FL_SITE_CONFIG=site_config``); returns its code."""
    env = dict(os.environ, CXR_FL_SITE_CONFIG=str(Path(site_config).resolve()))
    command = [str(Path(sys.executable).with_name("nvflare")), "simulator", str(job_dir), "-w", str(workspace)]
    command += ["-c", ",".join(sites), "-t", str(threads or len(sites))]
    return subprocess.run(command, env=env).returncode
