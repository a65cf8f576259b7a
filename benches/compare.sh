#!/usr/bin/env bash
# Sluice next to kinesalite and kinesis-mock (npm's kinesis-local), on this machine, with the
# same load and the same verification (benches/examples/loadgen.rs).
#
#   benches/compare.sh [seconds per ingest phase, default 5] [--no-firehose]
#
# The peers keep data in memory, never fsync, never throttle and never check signatures, so
# Sluice runs with throttle = "off" and auth = "none" (the load generator still signs every
# request) under each fsync setting; "never" is the like-for-like row. Sluice also runs
# with signatures checked (auth = "sigv4", fsync = "interval": what a deployment runs) and
# with five consumers replaying each shard at once; then benches/firehose_vs_duckdb.sh
# (skipped with --no-firehose). Results go to target/compare/results.jsonl; the table, with
# ratios to kinesalite, goes to benches/results/compare.md and between the compare.sh
# markers of README.md (so the README's table is this script's output, never hand-copied).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-5}"
firehose=yes; [ "${2:-}" = --no-firehose ] && firehose=no
cache="${SLUICE_CACHE_DIR:-$HOME/.cache/sluice}/peers"
out=target/compare
mkdir -p "$out" "$cache"
: >"$out/results.jsonl"; : >"$out/firehose.txt"

if [ ! -x "$cache/node_modules/.bin/kinesalite" ] || [ ! -e "$cache/node_modules/kinesis-local/main.js" ]; then
  npm install --prefix "$cache" --no-audit --no-fund --silent kinesalite@3.3.3 kinesis-local@0.6.2
fi
cargo build --release --quiet --locked --bin sluice
cargo build --release --quiet --locked -p sluice-benches --example loadgen
loadgen=target/release/examples/loadgen
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }

run() { # label, pid, port, record bytes, [more loadgen options]
  "$loadgen" --endpoint "http://127.0.0.1:$3" --label "$1" --server-pid "$2" --record-bytes "$4" \
    --seconds "$seconds" --shards 4 --batch 500 --concurrency 8 "${@:5}" >>"$out/results.jsonl"
}

run_sluice() { # label, record bytes, fsync, auth, [more loadgen options]
  p=$(port); data=$(mktemp -d)
  printf 'bind = "127.0.0.1:%s"\ndata_dir = "%s"\nthrottle = "off"\nauth = "%s"\nfsync = "%s"\nstream_transition_ms = 0\n' "$p" "$data" "$4" "$3" >"$data.toml"
  target/release/sluice serve --config "$data.toml" >"$data.log" 2>&1 & pid=$!
  wait_port "$p"; run "$1" "$pid" "$p" "$2" "${@:5}"
  kill "$pid"; wait "$pid" 2>/dev/null || true; rm -rf "$data" "$data.toml" "$data.log"
}

for bytes in 100 1024; do
  for fsync in never interval always; do
    run_sluice "sluice-$fsync-${bytes}B" "$bytes" "$fsync" none
  done
  run_sluice "sluice-interval-sigv4-${bytes}B" "$bytes" interval sigv4
  run_sluice "sluice-interval-5-consumers-${bytes}B" "$bytes" interval none --replay-consumers 5
  p=$(port)
  node "$cache/node_modules/kinesalite/cli.js" --port "$p" --createStreamMs 0 --deleteStreamMs 0 --shardLimit 100 >/dev/null 2>&1 & pid=$!
  wait_port "$p"; run "kinesalite-${bytes}B" "$pid" "$p" "$bytes"; kill "$pid"; wait "$pid" 2>/dev/null || true
  p=$(port)
  # kinesis-mock reads its TLS certificate (server.json) from the working directory.
  (cd "$cache/node_modules/kinesis-local" && KINESIS_MOCK_PLAIN_PORT=$p KINESIS_MOCK_TLS_PORT=$(port) \
    CREATE_STREAM_DURATION=0ms DELETE_STREAM_DURATION=0ms LOG_LEVEL=ERROR exec node main.js >/dev/null 2>&1) & pid=$!
  wait_port "$p"; run "kinesis-mock-${bytes}B" "$pid" "$p" "$bytes"; kill "$pid"; wait "$pid" 2>/dev/null || true
done

if [ "$firehose" = yes ]; then
  benches/firehose_vs_duckdb.sh | tee "$out/firehose.txt"
fi

python3 benches/compare_table.py "$out/results.jsonl" "$out/firehose.txt" benches/results/compare.md README.md
