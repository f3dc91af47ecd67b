#!/usr/bin/env bash
# Calibration of the inverse-sharpness blockwise-lr policy (Sharpness Disparity, Wang et al. 2025): train
# a GPT-2-like model with GPT-2's BPE vocabulary on Brown, profile it, and compare the multipliers that
# inverse-sharpness derives from the measured per-group average sharpness with the paper's tuned table
# (Norm 1, VO 4, FFN 6, QK 8, Emb 10). Writes a Markdown report.
# Environment: STEPS (600) OUT (out/calibrate) REPORT (docs/blockwise_calibration.md) THREADS ("")
#              BLOCKSHARP (build/bin/blocksharp)
set -euo pipefail
cd "$(dirname "$0")/../.."
STEPS=${STEPS:-600} OUT=${OUT:-out/calibrate} REPORT=${REPORT:-docs/blockwise_calibration.md}
BS=${BLOCKSHARP:-build/bin/blocksharp}
THREADS=${THREADS:-}
MODEL=(--model gpt2-tiny --set n_layer=4 --set dim=128 --set n_heads=4 --tokenizer gpt2 --batch-size 8
       ${THREADS:+--threads $THREADS})
mkdir -p "$OUT"
: > "$OUT/commands.txt"
run() { echo "$*" >> "$OUT/commands.txt"; "$@"; }
run "$BS" train "${MODEL[@]}" --steps "$STEPS" --warmup $((STEPS / 20)) --schedule cosine --eval-every 100 \
  --out "$OUT/train" > "$OUT/train.log"
run "$BS" profile "${MODEL[@]}" --params "$OUT/train/final_params.h5" --topk 1 --probes 20 --density-runs 0 \
  --block-eigs none --lr-policy inverse-sharpness --out "$OUT/profile" > "$OUT/profile.log"
/usr/bin/python3 tools/experiments/summarize_calibration.py "$OUT" "$REPORT"
echo "wrote $REPORT"
