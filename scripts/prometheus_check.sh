#!/usr/bin/env bash
# Runs a real Prometheus (Debian package `prometheus`) against a live rapport under simulated traffic:
#   - every PromQL expression in deploy/grafana/dashboards/rapport.json must return data,
#   - `promtool check metrics` must pass on a scrape of /metrics,
#   - `promtool check rules` must pass on deploy/prometheus/rules.yml.
# Everything listens on 127.0.0.1; every wait is bounded; the trap stops what it started.
# Usage: scripts/prometheus_check.sh [path/to/rapport]   (default: target/debug/rapport)
set -euo pipefail
cd "$(dirname "$0")/.."
RAPPORT=${1:-target/debug/rapport}
SIM_SECONDS=${SIM_SECONDS:-30}
command -v prometheus >/dev/null && command -v promtool >/dev/null || {
  echo "needs prometheus and promtool (apt-get install prometheus)" >&2; exit 1; }
[ -x "$RAPPORT" ] || { echo "no rapport binary at $RAPPORT (cargo build)" >&2; exit 1; }

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url, seconds
  for _ in $(seq 1 $(($2 * 10))); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "timed out waiting for $1" >&2; return 1
}
GRPC=$(free_port); METRICS=$(free_port); PROM=$(free_port)
SERVER=http://127.0.0.1:$GRPC

# Durability on, with snapshots every 5 s, so the log and snapshot panels have data; intents for
# the simulated tenant, so the intents panel has data.
cat >"$WORK/rapport.toml" <<TOML
[durability]
data_dir = "$WORK/rapport-data"
snapshot_interval_seconds = 5

[[intents]]
tenant = "acme"
name = "order_problem"
examples = ["my order arrived broken", "lost my package", "still waiting for my refund", "the item is damaged", "wrong size delivered"]

[[intents]]
tenant = "acme"
name = "shipping"
examples = ["do you ship to Canada?", "I changed my delivery address", "how long does delivery take", "can you ship abroad", "update my shipping address"]

[[intents]]
tenant = "acme"
name = "store_info"
examples = ["what are your opening hours", "when does the sale start", "can I pay with a gift card", "is the shop open on Sunday", "do you have this in size M"]
TOML
"$RAPPORT" serve --config "$WORK/rapport.toml" --grpc-addr 127.0.0.1:$GRPC \
  --metrics-addr 127.0.0.1:$METRICS 2>"$WORK/rapport.log" &
PIDS+=($!)
wait_http "http://127.0.0.1:$METRICS/metrics" 30

cat >"$WORK/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $PWD/deploy/prometheus/rules.yml
scrape_configs:
  - job_name: rapport
    static_configs:
      - targets: ["127.0.0.1:$METRICS"]
YAML
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/data" \
  --web.listen-address=127.0.0.1:$PROM >"$WORK/prometheus.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$PROM/-/ready" 60

# A watcher (watchers gauge) and one bad request (gRPC errors panel), then the traffic.
"$RAPPORT" watch --tenant acme --min-priority 0.5 --server "$SERVER" >/dev/null 2>&1 &
PIDS+=($!)
if "$RAPPORT" top --tenant "" --server "$SERVER" >/dev/null 2>&1; then
  echo "expected INVALID_ARGUMENT for an empty tenant" >&2; exit 1
fi
timeout $((SIM_SECONDS + 60)) "$RAPPORT" simulate --server "$SERVER" --tenants 2 --customers 100 \
  --rate 40 --backfill-days 7 --duration-seconds "$SIM_SECONDS" --seed 7 --agents 2 2>"$WORK/simulate.log"
tail -n 1 "$WORK/simulate.log"
grep -q "rejected 0 " "$WORK/simulate.log" || { echo "simulate saw rejections" >&2; cat "$WORK/simulate.log" >&2; exit 1; }

curl -fsS "http://127.0.0.1:$METRICS/metrics" >"$WORK/scrape.txt"
promtool check metrics <"$WORK/scrape.txt"
echo "promtool check metrics: ok"
promtool check rules deploy/prometheus/rules.yml

python3 - "$PROM" deploy/grafana/dashboards/rapport.json <<'PY'
import json, sys, time, urllib.parse, urllib.request
port, path = sys.argv[1], sys.argv[2]
exprs = []
def walk(node):
    if isinstance(node, dict):
        if isinstance(node.get("expr"), str):
            exprs.append(node["expr"])
        for value in node.values():
            walk(value)
    elif isinstance(node, list):
        for value in node:
            walk(value)
walk(json.load(open(path)))
assert exprs, "no expressions in the dashboard"
failed = []
for expr in exprs:
    result = None
    for _ in range(30):  # bounded: up to ~30 s per expression
        url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        body = json.load(urllib.request.urlopen(url, timeout=10))
        assert body["status"] == "success", body
        result = [r for r in body["data"]["result"] if r["value"][1] not in ("NaN",)]
        if result:
            break
        time.sleep(1)
    print(("ok   " if result else "FAIL ") + f"{len(result or [])} series  {expr}")
    if not result:
        failed.append(expr)
if failed:
    sys.exit(f"{len(failed)} of {len(exprs)} dashboard expressions returned no data")
print(f"all {len(exprs)} dashboard expressions returned data")
PY
