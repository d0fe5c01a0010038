#!/usr/bin/env bash
# MONAI Label 0.8.5 integration check (heavy: builds .venv-monailabel, about 3 GB; not part of run_tests.sh).
# Writes its PASS/FAIL report to bundle/docs/monailabel_check.txt; exits non-zero when a check fails.
# Options go to scripts/check_monailabel.py (--rebuild, --work DIR, --server-port 0 to skip the server, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python scripts/check_monailabel.py "$@"
