#!/usr/bin/env bash
# Runs examples/python/client.py (grpcio, stubs generated from proto/ at run time) against a live
# rapport on 127.0.0.1; the client asserts on ingest, TopCustomers, health and reflection; then
# examples/python/stream_check.py streams 200k small events to Ingest and IngestScored.
# Usage: scripts/python_client_check.sh [path/to/rapport]   (default: target/debug/rapport)
# PYTHON: an interpreter with the packages of examples/python/requirements.txt; without it a venv is
# made under /tmp and they are installed from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
RAPPORT=${1:-target/debug/rapport}
[ -x "$RAPPORT" ] || { echo "no rapport binary at $RAPPORT" >&2; exit 1; }
if [ -z "${PYTHON:-}" ]; then
  VENV=/tmp/rapport-python-venv
  if [ ! -x "$VENV/bin/python" ] && ! python3 -m venv "$VENV"; then
    # Debian's own python3 needs python3-venv for this (pyenv builds have it).
    rm -rf "$VENV"
    [ "$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r examples/python/requirements.txt
  PYTHON=$VENV/bin/python
fi
PID=
LOG=$(mktemp)
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; [ -n "$PID" ] && wait "$PID" 2>/dev/null; rm -f "$LOG"' EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
MPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$RAPPORT" serve --grpc-addr 127.0.0.1:$PORT --metrics-addr 127.0.0.1:$MPORT 2>"$LOG" &
PID=$!
for _ in $(seq 1 100); do
  "$RAPPORT" health --server http://127.0.0.1:$PORT >/dev/null 2>&1 && break
  sleep 0.2
done
timeout 120 "$PYTHON" examples/python/client.py --server 127.0.0.1:$PORT
# Issue 15 D2: grpcio streaming 200k small events as fast as it can to Ingest and IngestScored must
# be throttled by flow control, never cut off (GOAWAY ENHANCE_YOUR_CALM "too_many_data_frames").
timeout 300 "$PYTHON" examples/python/stream_check.py --server 127.0.0.1:$PORT --events 200000
