#!/usr/bin/env bash
# Optimizer comparison (issue: profile -> configs -> train -> look): profile once, then train AdamW,
# Adam-mini, AdamW + blockwise LR (the paper's table, and inverse-sharpness from the measured sharpness),
# Adam-mini + blockwise LR, SGD-SaI and APOLLO-Mini with the same steps and seeds, and summarize into a
# Markdown report.
# Environment: MODEL (gpt2-small-cpu) DATA (brown) STEPS (2000) SEEDS ("0 1") BATCH (8) EVAL_EVERY (100)
#              OUT (out/compare) REPORT (docs/results.md) BLOCKSHARP (build/bin/blocksharp) THREADS (LibTorch default)
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${MODEL:-gpt2-small-cpu} DATA=${DATA:-brown} STEPS=${STEPS:-2000} SEEDS=${SEEDS:-"0 1"}
BATCH=${BATCH:-8} EVAL_EVERY=${EVAL_EVERY:-100} OUT=${OUT:-out/compare} REPORT=${REPORT:-docs/results.md}
BS=${BLOCKSHARP:-build/bin/blocksharp}
THREADS=${THREADS:-}
mkdir -p "$OUT"
: > "$OUT/commands.txt"
run() { echo "$*" >> "$OUT/commands.txt"; "$@"; }

run "$BS" profile --model "$MODEL" --data "$DATA" --batch-size "$BATCH" --topk 1 --probes 20 --density-runs 0 \
  --block-eigs none ${THREADS:+--threads $THREADS} --out "$OUT/profile" > "$OUT/profile.log"
run "$BS" profile --model "$MODEL" --data "$DATA" --batch-size "$BATCH" --topk 1 --probes 20 --density-runs 0 \
  --block-eigs none ${THREADS:+--threads $THREADS} --lr-policy inverse-sharpness --out "$OUT/profile-inverse" \
  > "$OUT/profile-inverse.log"
CFG="$OUT/profile"
declare -A ARGS=(
  [adamw]="--optimizer adamw"
  [adam-mini]="--optimizer adam-mini --config $CFG/adam_mini.json"
  [adamw+blockwise]="--optimizer adamw --config $CFG/blockwise_lr.json"
  [adamw+blockwise-inverse]="--optimizer adamw --config $OUT/profile-inverse/blockwise_lr.json"
  [adam-mini+blockwise]="--optimizer adam-mini --config $CFG/adam_mini.json --config $CFG/blockwise_lr.json"
  [sgd-sai]="--optimizer sgd-sai --config $CFG/sgd_sai.json"
  [apollo-mini]="--optimizer apollo-mini --lr 1e-2"
)
for name in adamw adam-mini adamw+blockwise adamw+blockwise-inverse adam-mini+blockwise sgd-sai apollo-mini; do
  for seed in $SEEDS; do
    dir="$OUT/$name/seed$seed"
    mkdir -p "$OUT/$name"
    # shellcheck disable=SC2086
    run "$BS" train --model "$MODEL" --data "$DATA" --batch-size "$BATCH" --steps "$STEPS" --seed "$seed" \
      --warmup $((STEPS / 20)) --eval-every "$EVAL_EVERY" --out "$dir" ${THREADS:+--threads $THREADS} ${ARGS[$name]} > "$dir.log"
  done
done
/usr/bin/python3 tools/experiments/summarize_comparison.py "$OUT" "$REPORT" "$STEPS" "$MODEL" "$DATA"
echo "wrote $REPORT"
