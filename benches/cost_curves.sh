#!/usr/bin/env bash
# Cost as the work grows (issue 17): ingest and replay throughput and server RSS against the
# shard count of the loaded stream (1, 4, 64, 500) and against idle streams beside it (0, 100,
# 1,000 streams of one shard); and what the streams cost once created, before any record
# (threads, descriptors, RSS, disk). Each point is one `sluice serve` (release, fsync = "interval", throttle off,
# auth none) driven by the verifying load generator (benches/examples/loadgen.rs, 1 KiB
# records, PutRecords of 500, 8 in flight); a point whose read-back fails verification stops
# the script.
#
#   benches/cost_curves.sh [seconds per ingest phase, default 3]
#
# Writes benches/results/cost_curves.jsonl and benches/results/cost_curves.png (matplotlib,
# installed from PyPI into ~/.cache/sluice/plot-venv when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-3}"
out=benches/results
mkdir -p "$out"
results="$out/cost_curves.jsonl"
: >"$results"
cargo build --release --quiet --locked --bin sluice
cargo build --release --quiet --locked -p sluice-benches --example loadgen
loadgen=target/release/examples/loadgen
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }

# Creates, on port $1, the stream `loaded` of $2 shards (which the load generator then
# recreates and loads) and $3 idle streams of one shard (auth = none: unsigned requests are
# taken).
create_streams() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys, urllib.request
port, shards, idle = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for name, count in [("loaded", shards)] + [(f"idle-{i}", 1) for i in range(idle)]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", data=json.dumps({"StreamName": name, "ShardCount": count}).encode(),
        headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "Kinesis_20131202.CreateStream"})
    urllib.request.urlopen(req).read()
PY
}

# Threads, descriptors, RSS (bytes) of pid $1 and disk (bytes) of folder $2, as JSON fields.
footprint() {
  python3 - "$1" "$2" <<'PY'
import os, subprocess, sys
pid, data = sys.argv[1], sys.argv[2]
status = dict(l.split(":", 1) for l in open(f"/proc/{pid}/status"))
disk = int(subprocess.run(["du", "-sb", data], capture_output=True, text=True).stdout.split()[0])
print(f'"threads": {int(status["Threads"])}, "fds": {len(os.listdir(f"/proc/{pid}/fd"))}, '
      f'"rss_bytes": {int(status["VmRSS"].split()[0]) * 1024}, "disk_bytes": {disk}')
PY
}

point() { # series, x, shards of the loaded stream, idle streams
  local p data pid
  p=$(port); data=$(mktemp -d)
  printf 'bind = "127.0.0.1:%s"\ndata_dir = "%s"\nthrottle = "off"\nauth = "none"\nfsync = "interval"\nstream_transition_ms = 0\nshard_limit = 100000\n' \
    "$p" "$data" >"$data.toml"
  target/release/sluice serve --config "$data.toml" >"$data.log" 2>&1 & pid=$!
  wait_port "$p"
  create_streams "$p" "$3" "$4"
  sleep 2.5 # two housekeeping passes: idle descriptors closed
  echo "{\"series\": \"$1\", \"x\": $2, \"phase\": \"idle\", $(footprint "$pid" "$data")}" >>"$results"
  "$loadgen" --endpoint "http://127.0.0.1:$p" --stream loaded --label "$1-$2" --server-pid "$pid" --record-bytes 1024 \
    --seconds "$seconds" --shards "$3" --batch 500 --concurrency 8 --latency-samples 200 \
    | python3 -c 'import json, sys
for l in sys.stdin:
    if l.startswith("{"):
        r = json.loads(l); r["series"], r["x"] = sys.argv[1], int(sys.argv[2]); print(json.dumps(r))' "$1" "$2" >>"$results"
  kill "$pid"; wait "$pid" 2>/dev/null || true; rm -rf "$data" "$data.toml" "$data.log"
  python3 - "$results" "$1" "$2" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
v = [r for r in rows if r["series"] == sys.argv[2] and r["x"] == int(sys.argv[3]) and r["phase"] == "verify"]
if not v or v[0]["problems"]:
    sys.exit(f"{sys.argv[2]} {sys.argv[3]}: verification failed")
PY
}

for shards in 1 4 64 500; do point shards "$shards" "$shards" 0; done
for idle in 100 1000; do point idle_streams "$idle" 4 "$idle"; done

venv="${SLUICE_CACHE_DIR:-$HOME/.cache/sluice}/plot-venv"
if ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
  python3 -m venv "$venv" && "$venv/bin/pip" install --quiet matplotlib==3.11.2
fi
"$venv/bin/python" - "$results" "$out/cost_curves.png" <<'PY'
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
rows = [json.loads(l) for l in open(sys.argv[1])]
def series(name, phase, field, scale=1.0):
    pts = sorted((r["x"], r[field] * scale) for r in rows if r["series"] == name and r["phase"] == phase)
    return [x for x, _ in pts], [y for _, y in pts]
# The idle-streams series starts at the 4-shard point with no idle stream.
def with_base(name, phase, field, scale=1.0):
    xs, ys = series(name, phase, field, scale)
    bx, by = series("shards", phase, field, scale)
    base = [y for x, y in zip(bx, by) if x == 4]
    return ([0] + xs, base + ys) if base else (xs, ys)
fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
for row, (name, label, get) in enumerate([("shards", "shards of the loaded stream", series),
                                          ("idle_streams", "idle streams of 1 shard beside a 4-shard stream", with_base)]):
    ax = axes[row][0]
    for phase, style in [("ingest", "o-"), ("replay", "s-")]:
        ax.plot(*get(name, phase, "mb_per_s"), style, label=phase)
    ax.set(xlabel=label, ylabel="MB/s (1 KiB records)", title="throughput"); ax.legend()
    ax = axes[row][1]
    ax.plot(*get(name, "verify", "server_rss_bytes", 1 / 2**20), "o-", label="after the run")
    ax.plot(*get(name, "idle", "rss_bytes", 1 / 2**20), "s--", label="streams created, no record yet")
    ax.set(xlabel=label, ylabel="server RSS, MiB", title="memory"); ax.legend()
    ax = axes[row][2]
    ax.plot(*get(name, "idle", "threads"), "o-", label="threads")
    ax.plot(*get(name, "idle", "fds"), "s-", label="file descriptors")
    ax.plot(*get(name, "idle", "disk_bytes", 1 / 2**20), "^-", label="disk, MiB")
    ax.set(xlabel=label, title="idle cost: every stream created, no record yet"); ax.legend()
    if name == "shards":
        for ax in axes[row]:
            ax.set_xscale("log")
    else:
        for ax in axes[row]:
            ax.set_xscale("symlog", linthresh=100)
fig.suptitle("Sluice: cost as the work grows (benches/cost_curves.sh; 2-core VM)")
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=80)
print(f'{"series":<14}{"x":>6}{"ingest MB/s":>13}{"replay MB/s":>13}{"RSS MiB":>9}{"idle thr":>9}{"idle fds":>9}{"idle RSS":>9}{"disk MiB":>9}')
for name in ["shards", "idle_streams"]:
    for x in sorted({r["x"] for r in rows if r["series"] == name}):
        p = {r["phase"]: r for r in rows if r["series"] == name and r["x"] == x}
        print(f'{name:<14}{x:>6}{p["ingest"]["mb_per_s"]:>13.1f}{p["replay"]["mb_per_s"]:>13.1f}'
              f'{p["verify"]["server_rss_bytes"] / 2**20:>9.0f}{p["idle"]["threads"]:>9}{p["idle"]["fds"]:>9}'
              f'{p["idle"]["rss_bytes"] / 2**20:>9.0f}{p["idle"]["disk_bytes"] / 2**20:>9.1f}')
PY
