#!/usr/bin/env bash
# Live PutRecords latency without and during a replay on the running server (issue 20):
# builds the release server and benches/examples/replay_latency.rs, starts `sluice serve`
# (throttling off, fsync interval, SigV4 on, lake in a temporary folder, the example schemas),
# fills a 4-shard stream with the 420,768 Beijing readings, then measures PutRecords p50/p99
# under a steady 2,000 records/s live load for each phase. Prints a Markdown table.
# Usage: benches/replay_latency.sh [seconds per phase, default 15]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15}
cargo build --release --quiet --locked --bin sluice
cargo build --release --quiet --locked -p sluice-benches --example replay_latency
. scripts/serve-lib.sh
work=$(mktemp -d)
port=$(free_port)
printf 'throttle = "off"\nfsync = "interval"\nschema_dir = "%s/examples/schemas"\n[lake]\nurl = "file://%s/lake"\n' \
  "$PWD" "$work" >"$work/sluice.toml"
target/release/sluice serve --config "$work/sluice.toml" --bind "127.0.0.1:$port" --data-dir "$work/data" \
  >"$work/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
target/release/examples/replay_latency "http://127.0.0.1:$port" \
  examples/data/beijing_multisite_air_quality_2013_2017.jsonl.gz "$secs"
