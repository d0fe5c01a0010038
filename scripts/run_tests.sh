#!/usr/bin/env bash
# Run the checks in the project's virtual environment (created on first use): ruff (lint and format, pinned in
# requirements-dev.txt) on the whole repository, then pytest. Two tiers:
#   bash scripts/run_tests.sh            full: every test (what .ci/run runs; about 4 CPU-minutes)
#   bash scripts/run_tests.sh --quick    quick: unit tests and one tiny end-to-end bundle run (about one CPU-minute);
#                                        tests marked `slow` (pyproject.toml) are left out
# Further arguments go to pytest, e.g. `bash scripts/run_tests.sh --quick -k froc`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
tier=()
if [ "${1:-}" = "--quick" ]; then
    shift
    tier+=(-m "not slow")
fi
echo "[tests] ruff check . && ruff format --check ."
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest -q "${tier[@]}" "$@"
