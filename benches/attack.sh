#!/usr/bin/env bash
# Memory under attack (benches/examples/attack.rs): a release `sluice serve` with the default
# config (auth = "sigv4", key pair sluice / sluice-secret, default server limits), a temporary
# data dir and a free port on 127.0.0.1; the attack runs against it, then the server stops.
#
#   benches/attack.sh [attack options, e.g. --seconds 10 --forged-bodies 64]
#
# The table goes to stderr; the JSON line to stdout and target/attack/results.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/attack
mkdir -p "$out"
cargo build --release --quiet --locked -p sluice --bin sluice -p sluice-benches --example attack
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }

p=$(port); dir=$(mktemp -d)
printf 'bind = "127.0.0.1:%s"\ndata_dir = "%s/data"\n' "$p" "$dir" >"$dir/sluice.toml"
target/release/sluice serve --config "$dir/sluice.toml" >"$dir/server.log" 2>&1 & pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
wait_port "$p" || { cat "$dir/server.log" >&2; exit 1; }
target/release/examples/attack --endpoint "http://127.0.0.1:$p" --server-pid "$pid" "$@" | tee -a "$out/results.jsonl"
kill -0 "$pid" 2>/dev/null || { echo "the server exited during the attack:" >&2; cat "$dir/server.log" >&2; exit 1; }
