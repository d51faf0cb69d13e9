#!/usr/bin/env bash
# CDNOW retention benchmark: rapport's retention_risk vs BTYD models, recency and a logistic model (see README.md).
# Usage: benches/retention/run.sh [path/to/rapport [script options: --grid, --cut, --horizon-days ...]]
#        (default binary: target/release/rapport)
# VENV: where the Python environment goes (default /tmp/retention-venv; reused when present).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
RAPPORT=${1:-$REPO/target/release/rapport}
shift || true   # the rest goes to the script (e.g. --grid, --cut, --horizon-days)
case $RAPPORT in /*) ;; *) RAPPORT=$PWD/$RAPPORT ;; esac
[ -x "$RAPPORT" ] || { echo "no rapport binary at $RAPPORT" >&2; exit 1; }
VENV=${VENV:-/tmp/retention-venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$HERE/requirements.txt"
STUBS=$(mktemp -d /tmp/rapport-retention-stubs.XXXXXX)
trap 'rm -rf "$STUBS"' EXIT
# Stubs are generated from proto/ into $STUBS by examples/python/rapport_stubs.py (never committed).
"$VENV/bin/python" "$HERE/cdnow_retention.py" --rapport "$RAPPORT" --stubs "$STUBS" "$@"
