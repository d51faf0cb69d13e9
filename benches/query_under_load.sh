#!/usr/bin/env bash
# A/B: TopCustomers(100) and ClaimNext p50/p99 while ingest runs flat out, for each binary given,
# interleaved ROUNDS times (CONFIG: a config file for both). Usage: benches/query_under_load.sh BIN_A BIN_B
set -euo pipefail
ROUNDS=${ROUNDS:-2}; CUSTOMERS=${CUSTOMERS:-1000000}; SECS=${SECS:-20}
GRPC=127.0.0.1:50093; METRICS=127.0.0.1:9493
for round in $(seq 1 "$ROUNDS"); do
  for BIN in "$@"; do
    RUST_LOG=warn "$BIN" serve ${CONFIG:+--config "$CONFIG"} --models-dir models --grpc-addr "$GRPC" --metrics-addr "$METRICS" & server=$!
    for _ in $(seq 1 500); do "$BIN" health --server "$GRPC" --timeout-seconds 1 >/dev/null 2>&1 && break; sleep 0.01; done
    "$BIN" loadgen --server "http://$GRPC" --tenants 1 --customers "$CUSTOMERS" --preload --duration-seconds 0 >/dev/null
    sleep 7
    echo "### round $round $BIN"
    "$BIN" loadgen --server "http://$GRPC" --tenants 1 --customers "$CUSTOMERS" --connections 2 --in-flight 2 \
      --duration-seconds "$SECS" --top-queries-per-second 10 --claim-queries-per-second 10 | grep -E "events/s|latency"
    kill $server; wait $server 2>/dev/null || true
  done
done
