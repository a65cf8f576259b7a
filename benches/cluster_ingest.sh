#!/usr/bin/env bash
# Replicated ingest (issue 18): the same load (benches/examples/loadgen.rs, PutRecords of 500,
# 8 requests in flight, 3 shards, then a verified replay) against one `sluice serve` and
# against a cluster of three on one etcd (Debian's etcd-server), every shard on all three
# nodes (R = 3, a quorum of two acknowledges). The load goes to one node of the cluster,
# which leads one shard and forwards the other two shards' records to their leaders.
# All processes share this machine's cores, so the ratio counts replication's CPU (three
# appends, two network hops per record) as well as its latency.
#
#   benches/cluster_ingest.sh [seconds per ingest phase, default 5]
#
# Prints loadgen's JSON lines (label single-* and cluster-*) and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-5}"
etcd_bin="${SLUICE_ETCD_BIN:-$(command -v etcd || true)}"
[ -x "$etcd_bin" ] || { echo "no etcd binary (SLUICE_ETCD_BIN or etcd on the PATH; apt-get install etcd-server)" >&2; exit 1; }
cargo build --release --quiet --locked --bin sluice
cargo build --release --quiet --locked -p sluice-benches --example loadgen
loadgen=target/release/examples/loadgen
out=target/cluster-ingest; rm -rf "$out"; mkdir -p "$out"
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

config() { # file, port, data dir, [cluster section]
  printf 'bind = "127.0.0.1:%s"\ndata_dir = "%s"\nthrottle = "off"\nauth = "none"\nfsync = "interval"\nstream_transition_ms = 0\n%s' "$2" "$3" "${4:-}" >"$1"
}

for bytes in 100 1024; do
  p=$(port); config "$out/single.toml" "$p" "$out/single-$bytes"
  target/release/sluice serve --config "$out/single.toml" >"$out/single.log" 2>&1 & pid=$!; pids+=("$pid")
  wait_port "$p"
  "$loadgen" --endpoint "http://127.0.0.1:$p" --label "single-${bytes}B" --server-pid "$pid" --record-bytes "$bytes" \
    --seconds "$seconds" --shards 3 --batch 500 --concurrency 8 | tee -a "$out/results.jsonl"
  kill "$pid"; wait "$pid" 2>/dev/null || true

  ec=$(port); ep=$(port)
  "$etcd_bin" --name e1 --data-dir "$out/etcd-$bytes" --listen-client-urls "http://127.0.0.1:$ec" \
    --advertise-client-urls "http://127.0.0.1:$ec" --listen-peer-urls "http://127.0.0.1:$ep" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ep" --initial-cluster "e1=http://127.0.0.1:$ep" >"$out/etcd.log" 2>&1 &
  etcd_pid=$!; pids+=("$etcd_pid")
  wait_port "$ec"
  node_pids=(); first_port=
  for id in n1 n2 n3; do
    p=$(port); first_port=${first_port:-$p}
    config "$out/$id.toml" "$p" "$out/$id-$bytes" "[cluster]
etcd_endpoints = [\"http://127.0.0.1:$ec\"]
node_id = \"$id\"
name = \"bench$bytes\"
"
    target/release/sluice serve --config "$out/$id.toml" >"$out/$id.log" 2>&1 & node_pids+=($!); pids+=($!)
    wait_port "$p"
  done
  sleep 2
  "$loadgen" --endpoint "http://127.0.0.1:$first_port" --label "cluster-${bytes}B" --server-pid "${node_pids[0]}" \
    --record-bytes "$bytes" --seconds "$seconds" --shards 3 --batch 500 --concurrency 8 | tee -a "$out/results.jsonl"
  kill "${node_pids[@]}" "$etcd_pid"; wait "${node_pids[@]}" "$etcd_pid" 2>/dev/null || true
done
python3 - "$out/results.jsonl" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith("{"):
        r = json.loads(line); rows[(r["label"], r["phase"])] = r
for b in ("100B", "1024B"):
    s, c = rows.get((f"single-{b}", "ingest")), rows.get((f"cluster-{b}", "ingest"))
    if s and c:
        sl, cl = rows[(f"single-{b}", "latency")], rows[(f"cluster-{b}", "latency")]
        sv, cv = rows[(f"single-{b}", "verify")], rows[(f"cluster-{b}", "verify")]
        print(f"{b}: single node {s['records_per_s']:,.0f} records/s (put p99 {sl['p99_ms']:.2f} ms), "
              f"cluster R=3 {c['records_per_s']:,.0f} records/s (put p99 {cl['p99_ms']:.2f} ms): "
              f"{c['records_per_s'] / s['records_per_s']:.2f}x; verify problems {sv['problems']} / {cv['problems']}")
PY
