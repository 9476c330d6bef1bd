#!/usr/bin/env bash
# Collect the reference data set on a GPU host (configs/plans/reference-gpu.yaml):
#   1. check the meter: NVML's total-energy counter present, its observed update period, an idle
#      reading (saved as OUT_DIR/meter-check*.json); stop if the meter is missing;
#   2. run the plan within the budget: gzip JSONL trees appended as they are made, the
#      measurement cache and the summary beside them (per-node run-to-run spread, sum of
#      children / parent per level, minutes spent); the run's log in OUT_DIR/run-*.log.
# Resumable: run it again -- here, or on a fresh machine with a copy of OUT_DIR -- and it makes
# only what is missing, measuring only nodes not measured before (on the same GPU model, meter
# and protocol; anything else is refused).
#
# usage: scripts/collect_reference.sh [OUT_DIR] [BUDGET_MINUTES] [PLAN]
#   OUT_DIR         default datasets/<gpu name>, e.g. datasets/nvidia-h100-80gb-hbm3
#   BUDGET_MINUTES  wall time to stop cleanly before (default 25; a host that allows 10 minutes
#                   per command: 9, then run again)
#   PLAN            default configs/plans/reference-gpu.yaml (forward passes); then
#                   configs/plans/reference-gpu-decode.yaml and reference-gpu-train.yaml
#                   (decode and training steps) write trees-decode / trees-train beside it
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # this checkout, installed or not
PLAN=${3:-configs/plans/reference-gpu.yaml}
BUDGET=${2:-25}
if [ -n "${1:-}" ]; then
    OUT_DIR=$1
else
    GPU=$(python3 -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")')
    if [ -z "$GPU" ]; then
        echo "collect_reference: torch sees no CUDA device here; this script needs the GPU" >&2
        exit 2
    fi
    OUT_DIR=datasets/$(echo "$GPU" | tr 'A-Z ' 'a-z-' | tr -cd 'a-z0-9.-')
fi
# trees.jsonl.gz for reference-gpu.yaml, trees-decode.jsonl.gz for reference-gpu-decode.yaml, ...
STEM=$(basename "$PLAN" .yaml)
SUFFIX=${STEM#reference-gpu}
if [ "$SUFFIX" = "$STEM" ]; then SUFFIX=-$STEM; fi
OUTPUT=$OUT_DIR/trees$SUFFIX.jsonl.gz

echo "== meter check ($PLAN)"
CHECK=$(python3 -m irene run "$PLAN" -o "$OUTPUT" --check-meter --json)   # stops here if absent
mkdir -p "$OUT_DIR"
LOG=$OUT_DIR/run-$(date -u +%Y%m%dT%H%M%SZ).log
echo "$CHECK" > "$OUT_DIR/meter-check$SUFFIX.json"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv | tee -a "$LOG"
fi
echo "$CHECK" | tee -a "$LOG"

echo "== campaign: $PLAN -> $OUTPUT, budget $BUDGET min" | tee -a "$LOG"
python3 -m irene run "$PLAN" -o "$OUTPUT" --budget-minutes "$BUDGET" --no-progress 2>&1 \
    | tee -a "$LOG"
echo "== done: trees $OUTPUT, summary ${OUTPUT%.jsonl.gz}.summary.json, log $LOG"
