#!/usr/bin/env bash
# MONAI Label pins tier (run by .ci/run after the full suite): pydicom 2.4.4 and numpy 1.26.4, the versions MONAI
# Label 0.8.5 forces, under the bundle's DICOM and PNG inference the way MONAI Label runs it
# (tests/test_monailabel_pins.py), its training on image/label pairs, and the loading, decoding and crash-containment
# tests. Further arguments go to pytest.
#
# .venv-pins holds only the packages whose versions differ (scripts/monailabel-pins-requirements.txt); a path file
# puts the project's .venv after them for the rest (same versions and wheels as MONAI Label's environment), so the
# tier costs seconds instead of a 3 GB install. It is rebuilt when either requirement set changes.
# Not covered here (scripts/check_monailabel.sh covers it, by hand: 3.3 GB, about 6 minutes): MONAI Label's own code
# (BundleInferTask, Restored, its label writer, datastore, server and BundleTrainTask) and the rest of its
# environment (ITK and SciPy releases it resolves, the torchvision stand-in).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh >/dev/null
venv=.venv-pins
requirements=scripts/monailabel-pins-requirements.txt
stamp=$venv/.requirements.sha256
want=$(cat "$requirements" .venv/.requirements.sha256 | sha256sum | cut -d' ' -f1)
started=$(date +%s)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "[pins] building $venv from $requirements"
    rm -rf "$venv"
    .venv/bin/python -m venv "$venv"  # the same Python as .venv, with its own pip
    # Its own pip, before the path file exists: it sees only the new environment, never the project's packages (a
    # pip that saw them would replace numpy and pydicom in .venv itself).
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    .venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > "$site/zz_project_venv.pth"
    echo "$want" > "$stamp"
fi
"$venv/bin/python" - <<'PY'
import monai, numpy, pydicom, torch
versions = f"pydicom {pydicom.__version__}, numpy {numpy.__version__}, monai {monai.__version__}, torch {torch.__version__}"
assert pydicom.__version__.startswith("2.4.") and numpy.__version__.startswith("1."), f"not MONAI Label's pins: {versions}"
print(f"[pins] environment ready: {versions}")
PY
echo "[pins] environment in $(( $(date +%s) - started )) s; tests:"
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider \
    tests/test_monailabel_pins.py tests/test_labelled_images.py tests/test_corrupt_inputs.py \
    tests/test_compressed_dicom.py tests/test_loading.py tests/test_input_checks.py "$@"
