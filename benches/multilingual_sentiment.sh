#!/usr/bin/env bash
# Per-language sentiment on validation splits: TweetEval's val.tsv (English) and UMSAB's eight
# *_val.tsv, macro-recall and accuracy of one backend, as a Markdown table. Validation splits
# only: UMSAB's and TweetEval's test splits are for reporting, never for choosing a model.
# Usage: benches/multilingual_sentiment.sh [BINARY] [rapport eval options, e.g. --sentiment fast-gold
#        or --models-dir DIR]   (default binary: target/debug/rapport, built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/debug/rapport}
shift || true
DATA=${DATA:-../shared/data/sentiment}
[ -x "$BIN" ] || cargo build --locked >/dev/null
echo "| split | texts | macro-recall | accuracy | recall neg / neu / pos |"
echo "|---|---|---|---|---|"
row() {
  local name=$1 file=$2 out
  shift 2
  out=$("$BIN" eval "$file" "$@" 2>&1) || { echo "$out" >&2; exit 1; }
  awk -v name="$name" '
    /^texts /        { n = $2 }
    /^macro-recall / { mr = $2 }
    /^accuracy /     { acc = $2 }
    /^recall negative/ { neg = $3 } /^recall neutral/ { neu = $3 } /^recall positive/ { pos = $3 }
    END { printf "| %s | %s | %s | %s | %.3f / %.3f / %.3f |\n", name, n, mr, acc, neg, neu, pos }
  ' <<<"$out"
}
row "TweetEval val (English)" "$DATA/val.tsv" "$@"
sum=0
for lang in arabic english french german hindi italian portuguese spanish; do
  line=$(row "UMSAB $lang val" "$DATA/umsab/${lang}_val.tsv" "$@")
  echo "$line"
  sum=$(awk -v s="$sum" -v l="$line" 'BEGIN { split(l, f, "|"); printf "%.6f", s + f[4] }')
done
awk -v s="$sum" 'BEGIN { printf "| UMSAB mean of the eight | | %.4f | | |\n", s / 8 }'
