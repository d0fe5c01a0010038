"""The bundle's Python passes the Model Zoo's style checks: black and isort at line length 120, and flake8.

These are the Zoo package's own files (``bundle/scripts``; ``scripts/package_bundle.py`` ships ``bundle/``). Settings
live in ``pyproject.toml`` (black, isort) and ``.flake8``; ``ruff check .`` (``scripts/run_tests.sh``) covers the whole
repository.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import BUNDLE_ROOT, REPO_ROOT

CHECKS = {
    "black": ["black", "--check", "--quiet"],
    "isort": ["isort", "--check-only", "--quiet"],
    "flake8": ["flake8"],
}


@pytest.mark.parametrize("tool", sorted(CHECKS))
def test_bundle_code_passes_model_zoo_style(tool):
    command = [sys.executable, "-m", *CHECKS[tool], str(BUNDLE_ROOT / "scripts")]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{tool} found problems:\n{result.stdout}{result.stderr}"
