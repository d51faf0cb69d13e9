#!/usr/bin/env bash
# Checks the minimum Rust version in Cargo.toml (`rust-version`) against what Cargo.lock needs:
# no locked crate that the build or the tests compile (Linux, default features) may declare a newer
# `rust-version`. Clippy's `incompatible_msrv` lint (on in .ci/run's clippy step) checks that
# rapport's own code uses no standard library API newer than it. When that toolchain is installed
# (`rustup toolchain install 1.89`), the tests are also built with it.
# Usage: scripts/msrv_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

MSRV=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
[ -n "$MSRV" ] || { echo "no rust-version in Cargo.toml" >&2; exit 1; }
TARGET=$(rustc -vV | sed -n 's/^host: //p')
METADATA=$(mktemp)
trap 'rm -f "$METADATA"' EXIT
cargo metadata --locked --format-version 1 --filter-platform "$TARGET" >"$METADATA"
python3 - "$METADATA" "$MSRV" <<'PY'
import json, sys

def version(text):
    parts = [int(part) for part in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))

def dotted(parts):
    return ".".join(map(str, parts))

metadata = json.load(open(sys.argv[1]))
msrv_text = sys.argv[2]
packages = {package["id"]: package for package in metadata["packages"]}
nodes = {node["id"]: node for node in metadata["resolve"]["nodes"]}
root = metadata["resolve"]["root"]
# The root's normal, build and dev dependencies, then their normal and build dependencies.
seen, stack = set(), [root]
while stack:
    current = stack.pop()
    if current in seen:
        continue
    seen.add(current)
    for dependency in nodes[current]["deps"]:
        kinds = {kind["kind"] for kind in dependency["dep_kinds"]}
        if current == root or kinds & {None, "build"}:
            stack.append(dependency["pkg"])
declared = sorted(
    (version(packages[id]["rust_version"]), packages[id]["name"], packages[id]["version"])
    for id in seen - {root}
    if packages[id].get("rust_version")
)
too_new = [entry for entry in declared if entry[0] > version(msrv_text)]
for needed, name, package_version in too_new:
    print(f"{name} {package_version} needs Rust {dotted(needed)}", file=sys.stderr)
if too_new:
    sys.exit(f"Cargo.toml rust-version {msrv_text} is older than Cargo.lock needs")
needed, name, package_version = declared[-1]
print(
    f"rust-version {msrv_text}: {len(seen) - 1} locked crates, the newest requirement "
    f"{dotted(needed)} ({name} {package_version})"
)
PY
if rustup toolchain list 2>/dev/null | grep -q "^$MSRV"; then
  cargo "+$MSRV" test --locked --no-run
else
  echo "toolchain $MSRV not installed: not built with it (rustup toolchain install $MSRV)"
fi
