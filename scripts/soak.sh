#!/usr/bin/env bash
# The model-based checker (tests/model_check.rs, issue 24) for as long as asked: rounds of
# generated concurrent calls against the real binary, stopped by SIGTERM, kill -9 (at rest and
# under load), file damage or a second process, each checked against the reference model.
# Usage: scripts/soak.sh [SEED] [MINUTES] [OPS_PER_CLIENT]
# Prints the seed of the first failing run; replay it with
#   RAPPORT_CHECK_SEED=<seed> RAPPORT_CHECK_ROUNDS=1 cargo test --test model_check
set -euo pipefail
cd "$(dirname "$0")/.."
seed="${1:-$(date +%s)}"
minutes="${2:-10}"
ops="${3:-80}"
cargo test --locked --test model_check --no-run
deadline=$(( $(date +%s) + minutes * 60 ))
runs=0
while [ "$(date +%s)" -lt "$deadline" ]; do
  if ! RAPPORT_CHECK_SEED="$seed" RAPPORT_CHECK_ROUNDS=4 RAPPORT_CHECK_OPS="$ops" \
      cargo test --locked --test model_check -- --nocapture >"/tmp/soak-$seed.log" 2>&1; then
    echo "FAILED: seed $seed (log /tmp/soak-$seed.log)"
    grep -A30 "violation" "/tmp/soak-$seed.log" | head -60 || true
    exit 1
  fi
  runs=$((runs + 1))
  seed=$((seed + 4))
done
echo "soak: $runs runs of 4 rounds passed (last seed $seed)"
