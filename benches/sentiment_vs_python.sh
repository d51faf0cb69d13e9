#!/usr/bin/env bash
# Sentiment throughput on one core against VADER-Python on the same texts, in the same run,
# interleaved ROUNDS times. Needs `pip install vaderSentiment==3.3.2`.
# Usage: benches/sentiment_vs_python.sh [FILE.tsv]
set -euo pipefail
cd "$(dirname "$0")/.."
FILE=${1:-../shared/data/sentiment/val.tsv}
ROUNDS=${ROUNDS:-5}
cargo build --release --locked >/dev/null
python3 -c "import vaderSentiment" 2>/dev/null || python3 -m pip install -q vaderSentiment==3.3.2
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round"
  for backend in fast vader; do
    printf '  rapport %-6s ' "$backend"; taskset -c 0 target/release/rapport eval "$FILE" --sentiment "$backend" | grep texts/s
  done
  printf '  '; taskset -c 0 python3 benches/vader_python.py "$FILE" 1
done
