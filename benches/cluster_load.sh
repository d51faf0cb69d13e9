#!/usr/bin/env bash
# Usage: benches/cluster_load.sh [RAPPORT_BINARY]   (default target/release/rapport)
#
# Issue 17's measurements, one run: ingest events/s and ack p99 through 1, 2 and 3 cluster
# replicas (one nats-server, JetStream on this machine's disk, 64 partitions) against the single
# process (in memory, and durable with its local log), then failover: kill -9 of one of three
# replicas until TopCustomers answers again through a survivor.
#
# Each measured server gets `rapport loadgen` for DURATION seconds (default 15) over CUSTOMERS
# customers (default 25000); a cluster gets one loadgen per replica, run together, and the rates
# are summed. "applied" is the rate at which the owners had applied every acknowledged event:
# events / (load time + the time until every replica's consumer lag was 0 again).
# Ports: nats 4290, replicas 50301-50303 (metrics 50401-50403), single process 50300.
set -u
BIN=${1:-target/release/rapport}
DURATION=${DURATION:-15}
CUSTOMERS=${CUSTOMERS:-25000}
NATS=$(command -v nats-server || echo /usr/sbin/nats-server)
WORK=$(mktemp -d)
PIDS=()
trap 'kill -9 "${PIDS[@]}" 2>/dev/null; rm -rf "$WORK"' EXIT

wait_healthy() { # grpc-port
  for _ in $(seq 1 600); do
    "$BIN" health --server "http://127.0.0.1:$1" --timeout-seconds 1 >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "server on $1 never became healthy" >&2
  return 1
}

load() { # label port...
  local label=$1; shift
  local outs=() loaders=()
  for port in "$@"; do
    "$BIN" loadgen --server "http://127.0.0.1:$port" --customers "$CUSTOMERS" \
      --duration-seconds "$DURATION" --seed "$port" >"$WORK/load-$port" 2>&1 &
    loaders+=($!)
    outs+=("$WORK/load-$port")
  done
  wait "${loaders[@]}" 2>/dev/null
  python3 - "$label" "${outs[@]}" <<'PY'
import re, sys
label, files = sys.argv[1], sys.argv[2:]
rate = events = 0.0
p99 = []
for name in files:
    text = open(name).read()
    rate += float(re.search(r"events/s\s+(\d+)", text).group(1))
    events += float(re.search(r"events\s+(\d+) acknowledged", text).group(1))
    p99.append(float(re.search(r"p99 ([\d.]+)", text).group(1)))
print(f"{label:34s} {rate:9.0f} events/s  ack p99 {max(p99):7.2f} ms  ({int(events)} events)")
open("/tmp/cluster_load_events", "w").write(str(int(events)))
PY
}

lag_zero_seconds() { # metrics ports...: seconds until every replica reports consumer lag 0
  local started=$(date +%s.%N)
  for _ in $(seq 1 1200); do
    local total=0
    for port in "$@"; do
      lag=$(curl -s "http://127.0.0.1:$port/metrics" 2>/dev/null | awk '/^rapport_cluster_consumer_lag_events /{print $2}')
      total=$(python3 -c "print(${total} + ${lag:-1})")
    done
    if python3 -c "import sys; sys.exit(0 if float('$total') == 0 else 1)"; then
      python3 -c "print(f'{$(date +%s.%N) - $started:.1f}')"
      return
    fi
    sleep 0.25
  done
  echo "never"
}

single() { # label [data-dir]
  local args=()
  [ -n "${2:-}" ] && args=(--data-dir "$2")
  RUST_LOG=warn "$BIN" serve --grpc-addr 127.0.0.1:50300 --metrics-addr 127.0.0.1:0 "${args[@]}" >/dev/null 2>&1 &
  local pid=$!
  wait_healthy 50300 && load "$1" 50300
  kill "$pid"; wait "$pid" 2>/dev/null
}

cluster() { # replicas
  local n=$1
  rm -rf "$WORK/js"
  "$NATS" -js -a 127.0.0.1 -p 4290 -sd "$WORK/js" >/dev/null 2>&1 &
  local nats=$!
  PIDS+=("$nats")
  sleep 0.5
  local ports=() metrics=() pids=()
  for i in $(seq 1 "$n"); do
    RUST_LOG=warn "$BIN" serve --cluster nats://127.0.0.1:4290 --replica-id "r$i" --partitions 64 \
      --grpc-addr "127.0.0.1:5030$i" --metrics-addr "127.0.0.1:5040$i" >"$WORK/replica-$i.log" 2>&1 &
    pids+=($!); PIDS+=($!)
    ports+=("5030$i"); metrics+=("5040$i")
  done
  for port in "${ports[@]}"; do wait_healthy "$port" || return; done
  local started=$(date +%s.%N)
  load "$n replica(s), loadgen per replica" "${ports[@]}"
  local catchup=$(lag_zero_seconds "${metrics[@]}")
  local events=$(cat /tmp/cluster_load_events)
  python3 -c "
d=$DURATION; c='$catchup'
print(f'{\"\":34s} applied by the owners: {int($events / (d + float(c))) if c != \"never\" else 0} events/s (caught up {c} s after the load)')"
  if [ "$n" = 3 ]; then
    # Failover: kill -9 the third replica; time until TopCustomers answers through the first.
    kill -9 "${pids[2]}"
    local killed=$(date +%s.%N)
    for _ in $(seq 1 1200); do
      "$BIN" top --server http://127.0.0.1:50301 --tenant tenant-0 --limit 10 >/dev/null 2>&1 && break
      sleep 0.1
    done
    python3 -c "print(f'{\"failover (kill -9 of 1 of 3)\":34s} answers restored after {$(date +%s.%N) - $killed:.1f} s (lease_seconds 10)')"
  fi
  kill "${pids[@]}" 2>/dev/null; wait "${pids[@]}" 2>/dev/null
  kill "$nats"; wait "$nats" 2>/dev/null
}

echo "rapport $("$BIN" --version 2>/dev/null), $(nproc) cores, $DURATION s per run, $CUSTOMERS customers per loadgen"
single "single process, in memory"
rm -rf "$WORK/data"; single "single process, durable" "$WORK/data"
cluster 1
cluster 2
cluster 3
true
