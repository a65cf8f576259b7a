#!/usr/bin/env python3
"""Failover time of a Sluice cluster (issue 18): etcd and three `sluice serve` nodes on
loopback, a 3-shard stream (R = 3), then N rounds of: SIGKILL the leader of shard 0, time
until `sluice cluster status` shows another leader at the next epoch, start the killed node
again and wait for it to rejoin. Prints each round and p50/p99/max.

    python3 benches/cluster_failover.py [rounds, default 20] [lease_ttl_s, default 5]

Needs a release build (`cargo build --release --bin sluice`) and Debian's etcd-server
(SLUICE_ETCD_BIN or etcd on the PATH).
"""
import json, os, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
ttl = int(sys.argv[2]) if len(sys.argv) > 2 else 5
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sluice = os.path.join(root, "target/release/sluice")
etcd_bin = os.environ.get("SLUICE_ETCD_BIN") or shutil.which("etcd")
if not etcd_bin or not os.path.exists(sluice):
    sys.exit("needs target/release/sluice and an etcd binary (SLUICE_ETCD_BIN or etcd on the PATH)")


def port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(p):
    for _ in range(400):
        try:
            socket.create_connection(("127.0.0.1", p), 0.1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {p} never opened")


work = tempfile.mkdtemp()
ec, ep = port(), port()
procs = []
etcd = subprocess.Popen([etcd_bin, "--name", "e1", "--data-dir", f"{work}/etcd",
                         "--listen-client-urls", f"http://127.0.0.1:{ec}", "--advertise-client-urls", f"http://127.0.0.1:{ec}",
                         "--listen-peer-urls", f"http://127.0.0.1:{ep}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{ep}",
                         "--initial-cluster", f"e1=http://127.0.0.1:{ep}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
procs.append(etcd)
wait_port(ec)
ports = {n: port() for n in ("n1", "n2", "n3")}


def start(node):
    cfg = f"{work}/{node}.toml"
    with open(cfg, "w") as f:
        f.write(f'bind = "127.0.0.1:{ports[node]}"\ndata_dir = "{work}/{node}"\nauth = "none"\nthrottle = "off"\n'
                f'[cluster]\netcd_endpoints = ["http://127.0.0.1:{ec}"]\nnode_id = "{node}"\nname = "bench"\nlease_ttl_s = {ttl}\n')
    p = subprocess.Popen([sluice, "serve", "--config", cfg], stdout=subprocess.DEVNULL, stderr=open(f"{work}/{node}.log", "a"))
    procs.append(p)
    wait_port(ports[node])
    return p


def status():
    out = subprocess.run([sluice, "cluster", "status", "--name", "bench", "--json", "--etcd", f"http://127.0.0.1:{ec}"],
                         capture_output=True, check=True).stdout
    return json.loads(out)


def members():
    return sorted(n["node_id"] for n in status()["nodes"])


try:
    nodes = {n: start(n) for n in ports}
    while members() != ["n1", "n2", "n3"]:
        time.sleep(0.1)
    req = urllib.request.Request(f"http://127.0.0.1:{ports['n1']}/", method="POST",
                                 data=json.dumps({"StreamName": "failover", "ShardCount": 3}).encode(),
                                 headers={"X-Amz-Target": "Kinesis_20131202.CreateStream", "Content-Type": "application/x-amz-json-1.1"})
    urllib.request.urlopen(req).read()
    time.sleep(2)
    times = []
    for r in range(rounds):
        shard = next(s for s in status()["streams"] if s["name"] == "failover")["shards"][0]
        leader, epoch = shard["leader"], shard["epoch"]
        nodes[leader].send_signal(signal.SIGKILL)
        nodes[leader].wait()
        t0 = time.monotonic()
        while True:
            now = next(s for s in status()["streams"] if s["name"] == "failover")["shards"][0]
            if now["leader"] != leader and now["epoch"] == epoch + 1:
                break
            if time.monotonic() - t0 > 60:
                raise SystemExit(f"round {r}: no new leader after 60 s: {now}")
            time.sleep(0.05)
        took = time.monotonic() - t0
        times.append(took)
        print(json.dumps({"round": r, "killed": leader, "new_leader": now["leader"], "epoch": now["epoch"], "failover_s": round(took, 3)}), flush=True)
        nodes[leader] = start(leader)
        while members() != ["n1", "n2", "n3"]:
            time.sleep(0.1)
        time.sleep(1.5)
    times.sort()
    pct = lambda q: times[min(len(times) - 1, int(q * len(times)))]
    print(json.dumps({"rounds": rounds, "lease_ttl_s": ttl, "p50_s": round(pct(0.5), 3), "p99_s": round(pct(0.99), 3), "max_s": round(times[-1], 3)}))
finally:
    for p in procs:
        p.kill()
    shutil.rmtree(work, ignore_errors=True)
