"""Run the bundle's own ``python -m monai.bundle run`` command from the repository root (used by the benchmarks)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "bundle" / "configs"


def bundle_command(run_id: str, configs: list[str], overrides: dict[str, object]) -> list[str]:
    """The ``python -m monai.bundle run`` command line for ``configs`` (merged in order) and ``overrides``."""
    files = "[" + ",".join(f"'{CONFIGS / name}'" for name in configs) + "]"
    command = [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", files]
    command += ["--meta_file", str(CONFIGS / "metadata.json")]
    for key, value in overrides.items():
        command += [f"--{key}", str(value)]
    return command


def run_bundle(run_id: str, configs: list[str], overrides: dict[str, object], log_file: Path) -> str:
    """Run one bundle command with ``configs`` (names in ``bundle/configs``, merged in order) and ``overrides``.

    The output streams into ``log_file`` (follow long runs with ``tail -f``) and is returned; a failure raises with
    the log's last 30 lines.
    """
    command = bundle_command(run_id, configs, overrides)
    with log_file.open("w") as handle:
        result = subprocess.run(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)
    log = log_file.read_text()
    if result.returncode != 0:
        tail = "\n".join(log.splitlines()[-30:])
        raise RuntimeError(f"bundle run failed (log: {log_file}):\n{tail}")
    return log
