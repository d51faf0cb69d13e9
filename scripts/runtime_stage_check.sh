#!/usr/bin/env bash
# Performs the Dockerfile's runtime stage outside Docker (CI runs as root on Debian 12, no Docker
# daemon): a system user with uid 10001, the binary alone in a bin dir (it carries its models), the
# server started as that user from / with an empty environment, then the HEALTHCHECK command.
# Bounded waits; cleans up what it made.
# Usage: scripts/runtime_stage_check.sh [path/to/rapport]   (default: target/debug/rapport)
set -euo pipefail
cd "$(dirname "$0")/.."
RAPPORT=${1:-target/debug/rapport}
[ "$(id -u)" = 0 ] || { echo "skipped: needs root (useradd, runuser)" >&2; exit 0; }
[ -x "$RAPPORT" ] || { echo "no rapport binary at $RAPPORT" >&2; exit 1; }

ROOT=$(mktemp -d)
USER_NAME=rapport-ci
PID=
cleanup() {
  if [ -n "$PID" ]; then
    pkill -TERM -P "$PID" 2>/dev/null || true   # the server (runuser's child)
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
  fi
  rm -rf "$ROOT"
}
trap cleanup EXIT
chmod 755 "$ROOT"
# COPY --from=builder ... (same layout under $ROOT)
install -d "$ROOT/usr/local/bin" "$ROOT/var/lib"
install -m 755 "$RAPPORT" "$ROOT/usr/local/bin/rapport"
chmod -R a+rX "$ROOT"
# RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin rapport
id "$USER_NAME" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$USER_NAME"
# ... && install -d -o rapport -g rapport /var/lib/rapport (the volume compose mounts)
install -d -o "$USER_NAME" -g "$(id -gn "$USER_NAME")" "$ROOT/var/lib/rapport"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
MPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# USER rapport + ENTRYPOINT + compose's command (--data-dir on the volume)
runuser -u "$USER_NAME" -- env -i -C / "$ROOT/usr/local/bin/rapport" serve \
  --data-dir "$ROOT/var/lib/rapport" \
  --grpc-addr 127.0.0.1:$PORT --metrics-addr 127.0.0.1:$MPORT 2>"$ROOT/serve.log" &
PID=$!
# HEALTHCHECK (retried, bounded)
for _ in $(seq 1 50); do
  if runuser -u "$USER_NAME" -- "$ROOT/usr/local/bin/rapport" health --server http://127.0.0.1:$PORT --timeout-seconds 3 >/dev/null 2>&1; then
    break
  fi
  sleep 0.2
done
STATUS=$(runuser -u "$USER_NAME" -- "$ROOT/usr/local/bin/rapport" health --server http://127.0.0.1:$PORT)
[ "$STATUS" = SERVING ] || { echo "health: $STATUS" >&2; cat "$ROOT/serve.log" >&2; exit 1; }
# $PID is runuser; the server is its child and must run as the unprivileged user.
SERVER_UID=$(ps -o uid= --ppid "$PID" | tr -d ' ' | head -n 1)
[ "$SERVER_UID" = "$(id -u "$USER_NAME")" ] || {
  echo "server runs as uid $SERVER_UID, expected $USER_NAME" >&2; exit 1; }
# The server could write its data directory as that user.
[ -e "$ROOT/var/lib/rapport/wal.log" ] || [ -e "$ROOT/var/lib/rapport/snapshot.bin" ] || {
  echo "no wal.log or snapshot.bin in the data directory" >&2; ls -la "$ROOT/var/lib/rapport" >&2; exit 1; }
echo "runtime stage: server as $USER_NAME, data in its volume, health $STATUS"
