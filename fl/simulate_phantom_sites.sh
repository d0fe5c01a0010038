#!/usr/bin/env bash
# Federated stage 1 and stage 2 of the bundle on three simulated phantom sites, from a fresh clone, in NVIDIA FLARE's
# simulator (CPU): site-a holds boxed positives (R) and negatives (N), site-b and site-c image-level positives (P)
# and negatives. Stage 1 runs at site-a (the only R site), is calibrated on site-a's validation split, then stage 2
# runs at all three sites (each distils its own P with AALS); the final global model is evaluated on the test split,
# which no site holds. Everything lands in $OUT (default runs/fl_demo). Sizes are the variables below.
#
#   bash fl/simulate_phantom_sites.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/fl_demo}"
NUM_IMAGES="${NUM_IMAGES:-400}"        # phantoms in the pool (70 % training, 15 % validation, 15 % test)
SIZE="${SIZE:-256}"
STAGE1_ROUNDS="${STAGE1_ROUNDS:-3}"    # x 2 local epochs x SAMPLES samples at site-a
STAGE2_ROUNDS="${STAGE2_ROUNDS:-3}"    # x 1 local epoch x SAMPLES samples at each site
SAMPLES="${SAMPLES:-256}"

bash scripts/setup_env.sh
if ! .venv/bin/python -c "import nvflare" 2>/dev/null; then
    echo "[fl] installing the optional federated extra (requirements-fl.txt)"
    .venv/bin/python -m pip install --quiet -r requirements-fl.txt
fi
PY=.venv/bin/python
mkdir -p "$OUT"
if [ ! -f "$OUT/data/datalist.json" ]; then
    $PY scripts/generate_phantoms.py --out "$OUT/data" --num-images "$NUM_IMAGES" --size "$SIZE" --seed 7 \
        --zoom 2 --difficulty 0.1 --prevalence 0.3 --r-fraction 0.25 --format png --workers 2
fi
$PY fl/make_sites.py --data "$OUT/data" --sites site-a=R,N site-b=P,N site-c=P,N --work_dir "$OUT/work" \
    --out "$OUT/sites.json"
overrides="{\"train#samples_per_epoch\": $SAMPLES, \"learning_rate\": 0.002, \"loss#pos_weight\": 10, \"tensorboard_overlays\": 0}"
$PY fl/job.py --stage 1 --sites site-a --rounds "$STAGE1_ROUNDS" --local_epochs 2 --configs train.json,demo.json \
    --overrides "$overrides" --export "$OUT/jobs" --simulate "$OUT/ws_stage1" --site_config "$OUT/sites.json"
stage1="$OUT/ws_stage1/server/simulate_job/app_server/FL_global_model.pt"
echo "[fl] calibrating the stage-1 global model on site-a's validation split"
$PY -m monai.bundle run calibrating \
    --config_file "['bundle/configs/train.json','bundle/configs/calibrate.json','bundle/configs/demo.json']" \
    --dataset_dir "$OUT/data" --datalist "$OUT/data/site-a.json" --ckpt_path "$stage1" \
    --calibrated_path "$OUT/stage1_calibrated.pt" > "$OUT/calibrate.log" 2>&1
overrides="{\"train#samples_per_epoch\": $SAMPLES, \"ema_decay\": 0.99, \"tensorboard_overlays\": 0}"
OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" $PY fl/job.py --stage 2 --sites site-a,site-b,site-c \
    --rounds "$STAGE2_ROUNDS" --configs train.json,distill.json,demo.json --initial_ckpt "$OUT/stage1_calibrated.pt" \
    --overrides "$overrides" --export "$OUT/jobs" --simulate "$OUT/ws_stage2" --site_config "$OUT/sites.json"
stage2="$OUT/ws_stage2/server/simulate_job/app_server/FL_global_model.pt"
echo "[fl] evaluating the federated student on the test split"
$PY -m monai.bundle run evaluating \
    --config_file "['bundle/configs/train.json','bundle/configs/evaluate.json','bundle/configs/demo.json']" \
    --dataset_dir "$OUT/data" --ckpt_path "$stage2" --output_dir "$OUT/eval" > "$OUT/evaluate.log" 2>&1
$PY scripts/summarize_evaluations.py "$OUT/eval" 2>/dev/null || cat "$OUT/eval/metrics.json"
echo "[fl] global models: stage 1 $stage1, stage 2 $stage2; evaluation report $OUT/eval/report.html"
