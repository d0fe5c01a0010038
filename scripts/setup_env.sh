#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv with the pinned dependencies.
# Re-running is cheap: pip is skipped while requirements*.txt are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating virtual environment .venv with $("$PYTHON" --version)"
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(cat requirements.txt requirements-dev.txt requirements-tracking.txt requirements-deploy.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "[setup] installing pinned dependencies (first run: a few minutes)"
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -r requirements-dev.txt
    echo "$want" > "$stamp"
fi
echo "[setup] environment ready: .venv ($(.venv/bin/python -c 'import monai, torch; print(f"monai {monai.__version__}, torch {torch.__version__}")'))"
