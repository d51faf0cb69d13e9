#!/usr/bin/env bash
# Usage: benches/compare_binaries.sh BASE_BINARY HEAD_BINARY   (ports 50071; 3 rounds of 15 s each way)
# Same-run comparison: the session's base binary against HEAD, in memory and durable.
# HEAD_ARGS: extra `serve` arguments for HEAD only (e.g. "--config benches/intents_load.toml").
set -u
BASE=$1; HEAD=$2; LOAD=$HEAD
GRPC=127.0.0.1:50071
run() { # bin label datadir
  local bin=$1 label=$2 dir=$3 args=()
  [ -n "$dir" ] && { rm -rf "$dir"; args=(--data-dir "$dir"); }
  if [ "$bin" = "$HEAD" ] && [ -n "${HEAD_ARGS:-}" ]; then read -ra extra <<<"$HEAD_ARGS"; args+=("${extra[@]}"); fi
  RUST_LOG=warn "$bin" serve --grpc-addr $GRPC --metrics-addr 127.0.0.1:0 "${args[@]}" >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 1 300); do "$LOAD" health --server http://$GRPC --timeout-seconds 1 >/dev/null 2>&1 && break; sleep 0.05; done
  echo "$label: $("$LOAD" loadgen --server http://$GRPC --customers 25000 --duration-seconds 15 2>&1 | grep -E 'events/s' | head -1)"
  kill $pid; wait $pid 2>/dev/null
}
for round in 1 2 3; do
  run "$BASE" "round $round base memory" ""
  run "$HEAD" "round $round head memory" ""
  run "$BASE" "round $round base durable" /tmp/cmp-data
  run "$HEAD" "round $round head durable" /tmp/cmp-data
done
