#!/usr/bin/env bash
# What the web console and the stream-level metrics cost ingest when nobody has the console
# open: PutRecords throughput (benches/examples/kinesis_http.rs: 500 × 100 B per request,
# 8 connections, in-process server, unsigned) of this checkout against a build of BASE (a
# commit without them), alternating runs so both see the same machine.
# Usage: benches/console_cost.sh BASE [runs, default 4] [seconds per run, default 5]
# BASE is built in a worktree under target/console-cost-base with a target directory of its own
# (sharing this checkout's would mix the two builds' path crates: cargo names them by their
# path within the workspace and judges them fresh by time).
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:?a base commit}
runs=${2:-4}
secs=${3:-5}
worktree=target/console-cost-base
if [ ! -d "$worktree" ]; then git worktree add --detach "$worktree" "$base" >/dev/null; fi
git -C "$worktree" checkout --quiet --detach "$base"
(cd "$worktree" && CARGO_TARGET_DIR="$PWD/../console-cost-target" cargo build --release --quiet --locked -p sluice-benches --example kinesis_http)
cp target/console-cost-target/release/examples/kinesis_http target/console-cost-base.kinesis_http
cargo build --release --quiet --locked -p sluice-benches --example kinesis_http
rate() { "$1" "$secs" 8 | sed -n 's/^PutRecords: .*: \([0-9]*\) records\/s.*/\1/p'; }
head=() base_rates=()
for _ in $(seq "$runs"); do
  base_rates+=("$(rate target/console-cost-base.kinesis_http)")
  head+=("$(rate target/release/examples/kinesis_http)")
done
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
echo "base $(git rev-parse --short "$base"): ${base_rates[*]} records/s (median $(median "${base_rates[@]}"))"
echo "head $(git rev-parse --short HEAD): ${head[*]} records/s (median $(median "${head[@]}"))"
