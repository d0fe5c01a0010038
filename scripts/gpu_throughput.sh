#!/usr/bin/env bash
# The throughput benchmark on a GPU machine that has PyTorch but not this project's other packages (such as the
# `device` machines lent to some development sessions), in one command:
#
#   here, once (wheels for the GPU machine's Python, pure-Python packages only):
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
#         monai==1.6.1 pytorch-ignite==0.5.5 pydicom==3.0.1 nibabel
#   there:
#     bash scripts/gpu_throughput.sh [output folder]        # default: $OUT, else runs/
#
# It installs the wheels from .whl/ (no network needed), then measures the default network (ResNet-50 + FPN,
# 512 px) and the light one, with and without AMP, and records peak GPU memory; the JSON and the model-card
# table (between the throughput-gpu markers) are written to the output folder, to be copied into bundle/docs/.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-runs}}"
mkdir -p "$out"
python3 -m pip install --quiet --no-index --find-links .whl monai pytorch-ignite pydicom nibabel
python3 -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"; print(torch.cuda.get_device_name(0))'
cp bundle/docs/README.md "$out/model_card_README.md"
PYTHONPATH=scripts python3 scripts/benchmark_throughput.py --device cuda:0 --amp both --networks default light \
    --rounds 3 --work-dir /tmp/benchmark_throughput --output "$out/benchmark_throughput_gpu.json" \
    --model-card "$out/model_card_README.md"
