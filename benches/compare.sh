#!/usr/bin/env bash
# Sluice next to kinesalite and kinesis-mock (npm's kinesis-local), on this machine, with the
# same load and the same verification (benches/examples/loadgen.rs).
#
#   benches/compare.sh [seconds per ingest phase, default 5]
#
# The peers keep data in memory, never fsync, never throttle and never check signatures, so
# Sluice runs with throttle = "off" and auth = "none" (the load generator still signs every
# request) under each fsync setting; "never" is the like-for-like row. Results go to
# target/compare/results.jsonl and a table with ratios to kinesalite is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-5}"
cache="${SLUICE_CACHE_DIR:-$HOME/.cache/sluice}/peers"
out=target/compare
mkdir -p "$out" "$cache"
: >"$out/results.jsonl"

if [ ! -x "$cache/node_modules/.bin/kinesalite" ] || [ ! -e "$cache/node_modules/kinesis-local/main.js" ]; then
  npm install --prefix "$cache" --no-audit --no-fund --silent kinesalite@3.3.3 kinesis-local@0.6.2
fi
cargo build --release --quiet --locked --bin sluice
cargo build --release --quiet --locked -p sluice-benches --example loadgen
loadgen=target/release/examples/loadgen
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }

run() { # label, pid, port, record bytes
  "$loadgen" --endpoint "http://127.0.0.1:$3" --label "$1" --server-pid "$2" --record-bytes "$4" \
    --seconds "$seconds" --shards 4 --batch 500 --concurrency 8 >>"$out/results.jsonl"
}

for bytes in 100 1024; do
  for fsync in never interval always; do
    p=$(port); data=$(mktemp -d)
    printf 'bind = "127.0.0.1:%s"\ndata_dir = "%s"\nthrottle = "off"\nauth = "none"\nfsync = "%s"\nstream_transition_ms = 0\n' "$p" "$data" "$fsync" >"$data.toml"
    target/release/sluice serve --config "$data.toml" >"$data.log" 2>&1 & pid=$!
    wait_port "$p"; run "sluice-$fsync-${bytes}B" "$pid" "$p" "$bytes"
    kill "$pid"; wait "$pid" 2>/dev/null || true; rm -rf "$data" "$data.toml" "$data.log"
  done
  p=$(port)
  node "$cache/node_modules/kinesalite/cli.js" --port "$p" --createStreamMs 0 --deleteStreamMs 0 --shardLimit 100 >/dev/null 2>&1 & pid=$!
  wait_port "$p"; run "kinesalite-${bytes}B" "$pid" "$p" "$bytes"; kill "$pid"; wait "$pid" 2>/dev/null || true
  p=$(port)
  # kinesis-mock reads its TLS certificate (server.json) from the working directory.
  (cd "$cache/node_modules/kinesis-local" && KINESIS_MOCK_PLAIN_PORT=$p KINESIS_MOCK_TLS_PORT=$(port) \
    CREATE_STREAM_DURATION=0ms DELETE_STREAM_DURATION=0ms LOG_LEVEL=ERROR exec node main.js >/dev/null 2>&1) & pid=$!
  wait_port "$p"; run "kinesis-mock-${bytes}B" "$pid" "$p" "$bytes"; kill "$pid"; wait "$pid" 2>/dev/null || true
done

python3 - "$out/results.jsonl" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows.setdefault(r["label"], {})[r["phase"]] = r
print(f'{"server":<24}{"ingest rec/s":>14}{"× kinesalite":>14}{"replay rec/s":>14}{"× kinesalite":>14}{"put p99 ms":>12}{"e2e p99 ms":>12}{"RSS MiB":>9}{"verified":>10}')
for label, p in rows.items():
    size = label.rsplit("-", 1)[1]
    base = rows.get(f"kinesalite-{size}", {})
    ing, rep = p["ingest"]["records_per_s"], p["replay"]["records_per_s"]
    bi, br = base.get("ingest", {}).get("records_per_s"), base.get("replay", {}).get("records_per_s")
    rss = (p["verify"].get("server_rss_bytes") or 0) / 2**20
    print(f'{label:<24}{ing:>14,.0f}{(ing / bi if bi else float("nan")):>14.1f}{rep:>14,.0f}{(rep / br if br else float("nan")):>14.1f}'
          f'{p["latency"]["p99_ms"]:>12.2f}{p["e2e"]["p99_ms"]:>12.2f}{rss:>9.0f}{("yes" if p["verify"]["problems"] == 0 else "NO"):>10}')
PY
