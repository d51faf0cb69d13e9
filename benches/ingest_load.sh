#!/usr/bin/env bash
# Load runs for BENCHMARKS.md, each against its baseline in the same run:
#   1. gRPC ingest: `rapport loadgen` against `rapport noop-serve` (same proto, no work) and against
#      `rapport serve`, ROUNDS times each, interleaved; events/s and ack latency p50/p99.
#   2. TopCustomers(limit 100) and ClaimNext (an agent registered with room on every channel, each
#      claim released at once) over CUSTOMERS customers in one tenant while ingest runs (at full
#      speed, then paced at PACED_RATES events/s), and the server's RSS growth per tracked customer.
#   3. Time from process start until `rapport health` reports SERVING (polled every 10 ms).
# Usage: benches/ingest_load.sh [path/to/rapport]   (default: target/release/rapport, built first)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-}
if [ -z "$BIN" ]; then cargo build --release --locked >/dev/null; BIN=target/release/rapport; fi
ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-8}
CUSTOMERS=${CUSTOMERS:-1000000}
TOP_SECONDS=${TOP_SECONDS:-20}
TOP_QPS=${TOP_QPS:-10}
CLAIM_QPS=${CLAIM_QPS:-10}
PACED_RATES=${PACED_RATES:-100000 1000}
PIN=${PIN:-}            # e.g. "taskset -c 0,1" to confine everything to two cores
GRPC=127.0.0.1:50091
METRICS=127.0.0.1:9491
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_ready() { # polls until health says SERVING; prints the milliseconds it took from $1 (ns)
  for _ in $(seq 1 500); do
    if $PIN "$BIN" health --server "$GRPC" --timeout-seconds 1 >/dev/null 2>&1; then
      echo $(( ($(date +%s%N) - $1) / 1000000 )); return 0
    fi
    sleep 0.01
  done
  echo "server did not come up" >&2; return 1
}
wait_port() { for _ in $(seq 1 500); do (exec 3<>"/dev/tcp/${GRPC%:*}/${GRPC#*:}") 2>/dev/null && return 0; sleep 0.01; done; return 1; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

echo "## machine: $(nproc) cores visible, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); pin: ${PIN:-none}"
for round in $(seq 1 "$ROUNDS"); do
  $PIN "$BIN" noop-serve --grpc-addr "$GRPC" 2>/dev/null & pids+=($!); noop=$!
  wait_port
  echo "### round $round: baseline (noop-serve)"
  $PIN "$BIN" loadgen --server "http://$GRPC" --duration-seconds "$SECONDS_PER_RUN" | grep -E "events/s|ack latency"
  kill "$noop"; wait "$noop" 2>/dev/null || true
  start=$(date +%s%N)
  RUST_LOG=warn $PIN "$BIN" serve --models-dir models --grpc-addr "$GRPC" --metrics-addr "$METRICS" & pids+=($!); server=$!
  echo "### round $round: rapport serve (fast model); ready after $(wait_ready "$start") ms"
  $PIN "$BIN" loadgen --server "http://$GRPC" --duration-seconds "$SECONDS_PER_RUN" | grep -E "events/s|ack latency"
  kill "$server"; wait "$server" 2>/dev/null || true
done

echo "### TopCustomers and ClaimNext over $CUSTOMERS customers in one tenant, while ingest runs"
RUST_LOG=warn $PIN "$BIN" serve --models-dir models --grpc-addr "$GRPC" --metrics-addr "$METRICS" & pids+=($!); server=$!
wait_ready "$(date +%s%N)" >/dev/null
before=$(rss_kb "$server")
$PIN "$BIN" loadgen --server "http://$GRPC" --tenants 1 --customers "$CUSTOMERS" --preload --duration-seconds 0 >/dev/null
after=$(rss_kb "$server")
echo "rss before ${before} kB, after preload ${after} kB: $(( (after - before) * 1024 / CUSTOMERS )) bytes per customer (1 event each)"
# Steady state: let the ranking pass (every ranking_pass_seconds, default 5) index the preloaded tenant.
sleep 7
# TopCustomers(limit 100) TOP_QPS and ClaimNext CLAIM_QPS times a second for TOP_SECONDS, first while
# ingest runs as fast as it is acknowledged, then with ingest paced at each of PACED_RATES events/s
# (below saturation).
for rate in 0 $PACED_RATES; do
  echo "#### ingest offered: $([ "$rate" = 0 ] && echo 'as fast as acknowledged' || echo "$rate events/s")"
  $PIN "$BIN" loadgen --server "http://$GRPC" --tenants 1 --customers "$CUSTOMERS" --connections 2 --in-flight 2 \
    --duration-seconds "$TOP_SECONDS" --top-queries-per-second "$TOP_QPS" --claim-queries-per-second "$CLAIM_QPS" --events-per-second "$rate" \
    | grep -E "events/s|latency"
done
kill "$server"; wait "$server" 2>/dev/null || true
