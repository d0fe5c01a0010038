#!/usr/bin/env bash
# The main job, end to end, on a synthetic phantom data set:
#   set up .venv -> generate phantoms -> stage 1 (supervised) -> calibrate stage 1 on validation
#   -> stage 2 (AALS distillation) -> evaluate stage 1, student and teacher on the test split -> inference.
# About 8 minutes on a 2-core CPU whose bare light-network step runs at 150 samples/s (docs/benchmarks.md).
# Every setting below can be overridden from the environment, e.g.
#   DEMO_OUT=/tmp/demo DEMO_STAGE1_EPOCHS=5 bash scripts/run_demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

OUT="${DEMO_OUT:-demo}"
DATA="${DEMO_DATA:-$OUT/data}"
NUM_IMAGES="${DEMO_NUM_IMAGES:-1000}"
PHANTOM_SIZE="${DEMO_PHANTOM_SIZE:-320}"
DIFFICULTY="${DEMO_DIFFICULTY:-0.2}"
SEED="${DEMO_SEED:-2026}"
PREVALENCE="${DEMO_PREVALENCE:-0.4}"
R_FRACTION="${DEMO_R_FRACTION:-0.4}"
STAGE1_EPOCHS="${DEMO_STAGE1_EPOCHS:-40}"
STAGE2_EPOCHS="${DEMO_STAGE2_EPOCHS:-16}"
SAMPLES_PER_EPOCH="${DEMO_SAMPLES_PER_EPOCH:-512}"

step() { printf '\n==== [%4ds] %s\n' "$(($(date +%s) - started))" "$*"; }

step "1/7 environment"
bash scripts/setup_env.sh
PY=.venv/bin/python
CONFIGS=bundle/configs
META="--meta_file $CONFIGS/metadata.json --logging_file $CONFIGS/logging.conf"
DEMO_CFG="$CONFIGS/demo.json"

step "2/7 synthetic phantoms: $NUM_IMAGES images, $PHANTOM_SIZE px, difficulty $DIFFICULTY -> $DATA"
if [ -f "$DATA/datalist.json" ]; then
    echo "reusing $DATA/datalist.json (delete the folder to regenerate)"
else
    "$PY" scripts/generate_phantoms.py --out "$DATA" --num-images "$NUM_IMAGES" --size "$PHANTOM_SIZE" \
        --seed "$SEED" --difficulty "$DIFFICULTY" --r-fraction "$R_FRACTION" --prevalence "$PREVALENCE" --workers 2
fi

step "3/7 stage 1: supervised training on R + N ($STAGE1_EPOCHS epochs x $SAMPLES_PER_EPOCH samples)"
"$PY" -m monai.bundle run training $META \
    --config_file "['$CONFIGS/train.json','$DEMO_CFG']" \
    --dataset_dir "$DATA" --ckpt_dir "$OUT/models/stage1" --output_dir "$OUT/runs/stage1" \
    --train#trainer#max_epochs "$STAGE1_EPOCHS" --train#samples_per_epoch "$SAMPLES_PER_EPOCH" \
    --learning_rate 0.002 --loss#pos_weight 20

step "4/7 Platt calibration of stage 1 on the validation split (so that t = 0.4 means a probability)"
"$PY" -m monai.bundle run calibrating $META \
    --config_file "['$CONFIGS/train.json','$CONFIGS/calibrate.json','$DEMO_CFG']" \
    --dataset_dir "$DATA" --ckpt_path "$OUT/models/stage1/model.pt" \
    --calibrated_path "$OUT/models/stage1/model_calibrated.pt"
"$PY" scripts/stage2_advice.py "$OUT/models/stage1/model_calibrated_calibration.json"

step "5/7 stage 2: AALS teacher-student distillation on R + N + P ($STAGE2_EPOCHS epochs, unweighted BCE)"
"$PY" -m monai.bundle run training $META \
    --config_file "['$CONFIGS/train.json','$CONFIGS/distill.json','$DEMO_CFG']" \
    --dataset_dir "$DATA" --stage1_checkpoint "$OUT/models/stage1/model_calibrated.pt" \
    --ckpt_dir "$OUT/models/distill" --output_dir "$OUT/runs/distill" \
    --train#trainer#max_epochs "$STAGE2_EPOCHS" --train#samples_per_epoch "$SAMPLES_PER_EPOCH" \
    --ema_decay 0.99

step "6/7 evaluation on the test split (FROC + AUROC reports)"
for model in stage1/model.pt stage1/model_calibrated.pt distill/model.pt distill/teacher.pt; do
    name="${model%.pt}"
    "$PY" -m monai.bundle run evaluating $META \
        --config_file "['$CONFIGS/train.json','$CONFIGS/evaluate.json','$DEMO_CFG']" \
        --dataset_dir "$DATA" --ckpt_path "$OUT/models/$model" --output_dir "$OUT/eval/${name//\//_}"
done

step "7/7 inference on the test images (detections JSON + overlays)"
"$PY" -m monai.bundle run inference $META \
    --config_file "['$CONFIGS/inference.json','$DEMO_CFG']" \
    --dataset_dir "$DATA/images" --datalist_file "$DATA/datalist.json" --datalist_split test \
    --ckpt_path "$OUT/models/distill/model.pt" --output_dir "$OUT/inference"

step "done in $(($(date +%s) - started)) s"
"$PY" scripts/summarize_evaluations.py "$OUT/eval/stage1_model" "$OUT/eval/stage1_model_calibrated" \
    "$OUT/eval/distill_model" "$OUT/eval/distill_teacher"
cat <<EOF

Results
  models:            $OUT/models/stage1/{model,model_calibrated}.pt, $OUT/models/distill/{model,teacher}.pt
  operating points:  $OUT/models/*/*_operating_point.json (thresholds chosen on validation, 0.2 FP/image)
  evaluation:        $OUT/eval/*/report.html (metrics.json, FROC/ROC curves, overlays)
  inference:         $OUT/inference/*.json ("finding": true/false, image_call) and *_overlay.png, summary.json
  TensorBoard logs:  $OUT/runs  (.venv/bin/tensorboard --logdir $OUT/runs)
EOF
