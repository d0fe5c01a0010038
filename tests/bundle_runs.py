"""Run the bundle exactly as a user types it (``python -m monai.bundle run`` or ``torchrun``) on tiny settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from repo_paths import REPO_ROOT

CONFIGS = REPO_ROOT / "bundle" / "configs"
#: Light network, 64 px images, no worker processes: a bundle run on a tiny phantom set takes seconds.
LIGHT = [
    "--image_size", "64",
    "--network_def#block", "basic",
    "--network_def#layers", "[1,1,1,1]",
    "--network_def#widths", "[8,16,32,64]",
    "--network_def#fpn_channels", "16",
    "--batch_size", "4",
    "--num_workers", "0",
]  # fmt: skip


def config_files(configs: list[str]) -> str:
    """The ``--config_file`` argument merging ``configs`` (file names in ``bundle/configs``) in order."""
    return "[" + ",".join(f"'{CONFIGS / name}'" for name in configs) + "]"


def run_bundle(run_id: str | None, configs: list[str], *overrides: str, processes: int = 1, status: int = 0) -> str:
    """Run ``python -m monai.bundle run [run_id] --config_file [...] overrides``; return its output.

    The run must end with exit status ``status`` (inference: 2 when some inputs were refused). With
    ``processes > 1`` the run is launched by ``torchrun --standalone --nproc_per_node=processes`` (gloo on CPU), as
    the multi-GPU command in docs/deployment.md does.
    """
    if processes > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1"]
        launcher += [f"--nproc_per_node={processes}", "-m", "monai.bundle"]
    else:
        launcher = [sys.executable, "-m", "monai.bundle"]
    command = [*launcher, "run", *([run_id] if run_id else [])]
    command += ["--config_file", config_files(configs), "--meta_file", str(CONFIGS / "metadata.json")]
    command += [*LIGHT, *overrides]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == status, f"bundle run ended with {result.returncode}, not {status}:\n{output[-4000:]}"
    return output


def read_metrics_csv(path: Path) -> dict[str, float]:
    """Metrics written by MONAI's ``MetricsSaver`` (``name,value`` rows) as floats (``nan`` kept)."""
    rows = (line.split(",") for line in path.read_text().splitlines() if line.strip())
    return {name: float(value) for name, value in rows}
