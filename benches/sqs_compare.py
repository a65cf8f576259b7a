"""SQS side by side: Sluice and moto's server mode (PyPI moto[server]), the same boto3 client
and load in one run.

For each server: one standard queue; `--messages` messages of `--bytes` bytes sent with
SendMessageBatch (10 a call) by `--clients` client processes, then received (10 a call,
no long polling: moto waits out a whole WaitTimeSeconds) and deleted (DeleteMessageBatch) by as many; every message must come back
at least once (more than once within the visibility timeout is counted). Reported per phase: messages per second, latency of each call (p50, p99), and
the server's peak RSS (VmHWM) and CPU seconds. The client is the same Python for both, so a
server faster than the client shows the client's bound: compare the server CPU columns too.

Moto keeps messages in memory; Sluice runs as deployed (`fsync = "interval"`, SigV4 checked).

Usage: python sqs_compare.py <sluice binary> <moto_server binary> [--messages N] [--bytes B]
[--clients C] [--out benches/results/sqs_compare.md] [--sluice-only]. Prints the table and writes
it to --out (appends with --sluice-only)."""
import argparse
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import boto3
from botocore.config import Config


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def client(endpoint):
    session = boto3.session.Session(aws_access_key_id="sluice", aws_secret_access_key="sluice-secret", region_name="us-east-1")
    return session.client("sqs", endpoint_url=endpoint, config=Config(retries={"max_attempts": 3}, read_timeout=30,
                                                                       max_pool_connections=4))


def sender(endpoint, url, ids, size, results):
    q = client(endpoint)
    body = "x" * size
    lat = []
    for i in range(0, len(ids), 10):
        entries = [{"Id": str(j), "MessageBody": f"{n:010d}{body[10:]}"} for j, n in enumerate(ids[i:i + 10])]
        t = time.perf_counter()
        out = q.send_message_batch(QueueUrl=url, Entries=entries)
        lat.append(time.perf_counter() - t)
        assert not out.get("Failed"), out["Failed"]
    results.put(("send", lat, []))


def receiver(endpoint, url, stop, results):
    q = client(endpoint)
    lat, got = [], []
    while not stop.is_set():
        t = time.perf_counter()
        # No long polling: moto waits out the whole WaitTimeSeconds even with messages there.
        msgs = q.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not msgs:
            time.sleep(0.01)
            continue
        lat.append(time.perf_counter() - t)
        got.extend(int(m["Body"][:10]) for m in msgs)
        q.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])
    results.put(("receive", lat, got))


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p))] * 1000 if v else 0.0


def run(name, endpoint, pid, args):
    q = client(endpoint)
    url = q.create_queue(QueueName=f"bench-{int(time.time())}", Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    results = mp.Queue()
    ids = list(range(args.messages))
    cpu0 = cpu_seconds(pid)
    started = time.perf_counter()
    procs = [mp.Process(target=sender, args=(endpoint, url, ids[i::args.clients], args.bytes, results)) for i in range(args.clients)]
    for p in procs:
        p.start()
    send_lat = []
    for _ in procs:
        send_lat.extend(results.get()[1])
    for p in procs:
        p.join()
    send_s = time.perf_counter() - started
    cpu1 = cpu_seconds(pid)
    stop = mp.Event()
    started = time.perf_counter()
    procs = [mp.Process(target=receiver, args=(endpoint, url, stop, results)) for _ in range(args.clients)]
    for p in procs:
        p.start()
    # Done when the queue is empty, nothing in flight (the receivers then stop).
    while True:
        a = q.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        if a["ApproximateNumberOfMessages"] == "0" and a["ApproximateNumberOfMessagesNotVisible"] == "0":
            break
        time.sleep(0.05)
    receive_s = time.perf_counter() - started
    stop.set()
    recv_lat, got = [], []
    for _ in procs:
        _, lat, g = results.get()
        recv_lat.extend(lat)
        got.extend(g)
    for p in procs:
        p.join()
    cpu2 = cpu_seconds(pid)
    # Every message at least once; more than once within the visibility timeout is counted.
    assert set(got) == set(ids), f"{name}: {len(set(got))} distinct received of {len(ids)}"
    return {
        "server": name,
        "send": args.messages / send_s, "send_p50": pct(send_lat, 0.5), "send_p99": pct(send_lat, 0.99),
        "recv": args.messages / receive_s, "recv_p50": pct(recv_lat, 0.5), "recv_p99": pct(recv_lat, 0.99),
        "cpu_send": cpu1 - cpu0, "cpu_recv": cpu2 - cpu1, "rss": peak_rss_mib(pid), "duplicates": len(got) - len(set(got)),
    }


def wait_up(endpoint):
    q = client(endpoint)
    for _ in range(400):
        try:
            q.list_queues()
            return
        except Exception:
            time.sleep(0.05)
    raise SystemExit(f"{endpoint} did not start")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sluice")
    ap.add_argument("moto_server")
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--bytes", type=int, default=256)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--out", default="benches/results/sqs_compare.md")
    # moto's calls grow with the queue (each receive is O(messages)): large runs are Sluice's.
    ap.add_argument("--sluice-only", action="store_true")
    args = ap.parse_args()
    rows = []
    work = tempfile.mkdtemp()
    try:
        port = free_port()
        conf = os.path.join(work, "sluice.toml")
        with open(conf, "w") as f:
            f.write('throttle = "off"\nfsync = "interval"\nauth = "sigv4"\n')
        servers = [
            ("Sluice", [args.sluice, "serve", "--config", conf, "--bind", f"127.0.0.1:{port}", "--data-dir", os.path.join(work, "data")], port),
        ]
        moto_port = free_port()
        if not args.sluice_only:
            servers.append(("moto (server mode)", [args.moto_server, "-p", str(moto_port)], moto_port))
        for name, command, p in servers:
            server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_up(f"http://127.0.0.1:{p}")
                rows.append(run(name, f"http://127.0.0.1:{p}", server.pid, args))
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    head = (f"{args.messages} messages of {args.bytes} B, {args.clients} boto3 client processes; "
            "send: SendMessageBatch of 10; receive: ReceiveMessage of 10 (no wait) + DeleteMessageBatch.\n\n"
            "| server | send msg/s | send call p50 / p99 ms | receive+delete msg/s | receive call p50 / p99 ms "
            "| server CPU s (send / receive) | server peak RSS MiB | received twice |\n|---|---|---|---|---|---|---|---|\n")
    lines = "".join(
        f"| {r['server']} | {r['send']:,.0f} | {r['send_p50']:.1f} / {r['send_p99']:.1f} | {r['recv']:,.0f} | "
        f"{r['recv_p50']:.1f} / {r['recv_p99']:.1f} | {r['cpu_send']:.1f} / {r['cpu_recv']:.1f} | {r['rss']:.0f} | {r['duplicates']} |\n"
        for r in rows)
    table = head + lines
    print(table)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "a" if args.sluice_only else "w") as f:
        f.write(f"\n<!-- generated by benches/sqs_compare.py on {time.strftime('%Y-%m-%d')} -->\n" + table)


if __name__ == "__main__":
    main()
