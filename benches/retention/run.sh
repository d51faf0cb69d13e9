#!/usr/bin/env bash
# CDNOW retention benchmark: rapport's retention_risk vs BG/NBD (see README.md).
# Usage: benches/retention/run.sh [path/to/rapport]   (default: target/release/rapport)
# VENV: where the Python environment goes (default /tmp/retention-venv; reused when present).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
RAPPORT=${1:-$REPO/target/release/rapport}
case $RAPPORT in /*) ;; *) RAPPORT=$PWD/$RAPPORT ;; esac
[ -x "$RAPPORT" ] || { echo "no rapport binary at $RAPPORT" >&2; exit 1; }
VENV=${VENV:-/tmp/retention-venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$HERE/requirements.txt"
STUBS=$(mktemp -d /tmp/rapport-retention-stubs.XXXXXX)
trap 'rm -rf "$STUBS"' EXIT
# Stubs are generated from proto/ into $STUBS (never committed); the script reuses them.
"$VENV/bin/python" - "$REPO/proto" "$STUBS" <<'PY'
import os, sys
from grpc_tools import protoc
root, out = sys.argv[1], sys.argv[2]
files = sorted(os.path.join("rapport", "v1", n) for n in os.listdir(os.path.join(root, "rapport", "v1")) if n.endswith(".proto"))
wk = os.path.join(os.path.dirname(protoc.__file__), "_proto")
sys.exit(protoc.main(["grpc_tools.protoc", f"-I{root}", f"-I{wk}", f"--python_out={out}", f"--grpc_python_out={out}", *files]))
PY
exec "$VENV/bin/python" "$HERE/cdnow_retention.py" --rapport "$RAPPORT" --stubs "$STUBS"
