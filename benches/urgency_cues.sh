#!/usr/bin/env bash
# How often each urgency cue fires on tweets, per language: UMSAB's train and val splits and
# TweetEval's train pool (../shared/data/sentiment). Tweets are not customer messages: this is the
# false-alarm side (how often general chatter carries a cue), with the matching tweets printed for
# reading (`--show N` per cue and language).
#
#   benches/urgency_cues.sh [path/to/rapport] [--show N]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/rapport}
SHOW=0
if [[ ${2:-} == --show ]]; then SHOW=${3:-5}; fi
DATA=../shared/data/sentiment
printf '%-12s %7s %8s' language tweets any
for cue in cancel_threat legal_threat manager_request repeat_contact safety; do printf ' %15s' "$cue"; done
printf '\n'
for file in "$DATA"/umsab/*_train.tsv "$DATA"/train.tsv; do
  name=$(basename "$file" .tsv)
  case $name in
    train) name=en-tweeteval; texts=$(tail -n +2 "$file" | cut -f2-) ;;
    *) lang=${name%_train}; texts=$(tail -n +2 "$file" "$DATA/umsab/${lang}_val.tsv" | grep -v '^==>' | grep -v '^$' | cut -f2-); name=$lang ;;
  esac
  printf '%s\n' "$texts" | "$BIN" classify 2>/dev/null | cut -f6 > /tmp/urgency-cues.$$
  total=$(wc -l < /tmp/urgency-cues.$$)
  any=$(grep -vc '^-$' /tmp/urgency-cues.$$ || true)
  printf '%-12s %7d %7.2f%%' "$name" "$total" "$(awk -v a="$any" -v t="$total" 'BEGIN { print 100 * a / t }')"
  for cue in cancel_threat legal_threat manager_request repeat_contact safety; do
    n=$(grep -c "$cue" /tmp/urgency-cues.$$ || true)
    printf ' %14.2f%%' "$(awk -v a="$n" -v t="$total" 'BEGIN { print 100 * a / t }')"
  done
  printf '\n'
  if (( SHOW > 0 )); then
    paste /tmp/urgency-cues.$$ <(printf '%s\n' "$texts") | grep -v '^-	' | sort -k1,1 -s | awk -F'\t' -v n="$SHOW" '{ if (c[$1]++ < n) print "    " $1 "\t" substr($2, 1, 140) }'
  fi
  rm -f /tmp/urgency-cues.$$
done
