"""A worker pool on a Kinesis queue through boto3, with the server SIGKILLed under it.

Starts `sluice serve` itself (throttling off), puts the Beijing readings into an on-demand
stream, creates a queue (visibility 2 s, built-in dead letters after 2 receives), and runs 8
competing worker processes: each receives up to 10 records (long polling), acknowledges them,
except the 1% of records it deliberately never acknowledges (by CRC-32 of the data). While
they work the server is SIGKILLed and restarted `kills` times at random moments on the same
data directory. Checked at the end:

- every record but the 1% was acknowledged exactly once (one successful acknowledgement);
- no record was received after an acknowledgement of it had been answered (the only
  redeliveries are of records whose acknowledgement was not answered: AWS's at-least-once);
- the 1% are in the dead-letter area, each once; restored, they are delivered again.

Usage: queue_workers.py <sluice binary> <work folder> <dataset .jsonl.gz> <records or 0 for all> <kills>.
Prints "queues: N passed, M failed"."""
import gzip
import json
import multiprocessing as mp
import random
import signal
import sys
import time
import zlib

from sluice_server import Server

binary, work, dataset, limit, kills = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
WORKERS = 8
passed, failed = 0, 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"queues {name}: {detail}", flush=True)


server_process = Server(binary, work, 'throttle = "off"\nstream_transition_ms = 0\n[lake]\nurl = "file://%s/lake"\n' % work)


def client():
    return server_process.client("kinesis")


def start():
    return server_process.start()


def worker(arn, events, stop):
    """Receives and acknowledges until `stop`; reports (kind, key, monotonic time)."""
    k = client()
    while not stop.is_set():
        started = time.monotonic()
        try:
            out = k.receive_queue_records(QueueARN=arn, Limit=10, WaitTimeSeconds=1)
        except Exception:
            time.sleep(0.1)
            continue
        records = out["QueueRecords"]
        for r in records:
            events.put(("receive", r["Data"].decode(), started))
        keep = [r for r in records if zlib.crc32(r["Data"]) % 100 != 0]
        if not keep:
            continue
        try:
            ack = k.acknowledge_queue_records(QueueARN=arn, Entries=[{"ReceiptHandle": r["ReceiptHandle"]} for r in keep])
        except Exception:
            # Not answered: the server may or may not have acknowledged them; if not, they
            # come again (at-least-once).
            for r in keep:
                events.put(("unanswered", r["Data"].decode(), time.monotonic()))
            continue
        answered = time.monotonic()
        by_handle = {r["ReceiptHandle"]: r["Data"].decode() for r in keep}
        for s in ack["Successful"]:
            events.put(("ack", by_handle[s["ReceiptHandle"]], answered))
        # A handle refused as stale may be one the SDK retried after a server killed before
        # it answered a first attempt that took it: that record may never come again.
        for f in ack.get("Failed", []):
            events.put(("unanswered", by_handle[f["ReceiptHandle"]], answered))


def put_part(lines, name):
    k = client()
    for i in range(0, len(lines), 500):
        chunk = lines[i:i + 500]
        entries = [{"Data": l.encode(), "PartitionKey": json.loads(l)["station"]} for l in chunk]
        while entries:
            out = k.put_records(StreamName=name, Records=entries)
            entries = [e for e, r in zip(entries, out["Records"]) if "ErrorCode" in r]


def main():
    with gzip.open(dataset, "rt") as f:
        lines = [l.strip() for l in f if l.strip()]
    if limit:
        lines = lines[:limit]
    poison = {l for l in lines if zlib.crc32(l.encode()) % 100 == 0}
    server = start()
    k = client()
    name = "beijing-queue"
    k.create_stream(StreamName=name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    arn = k.create_queue(
        QueueName="workers",
        StreamConfigurationList=[{"StreamARN": f"arn:aws:kinesis:us-east-1:000000000000:stream/{name}", "StartingPosition": {"Type": "TRIM_HORIZON"}}],
        QueueAttributes={"VisibilityTimeoutSeconds": 2, "DeadLetterConfiguration": {"TargetType": "BUILT_IN", "MaxReceiveCount": 2}},
    )["QueueDescription"]["QueueARN"]
    started = time.monotonic()
    parts = [lines[i::4] for i in range(4)]
    putters = [mp.Process(target=put_part, args=(p, name)) for p in parts]
    for p in putters:
        p.start()
    for p in putters:
        p.join()
    put_s = time.monotonic() - started

    events, stop = mp.Queue(), mp.Event()
    workers = [mp.Process(target=worker, args=(arn, events, stop)) for _ in range(WORKERS)]
    for w in workers:
        w.start()
    acked_at, acks, received, unanswered = {}, {}, {}, set()
    violations = []
    want = len(lines) - len(poison)
    rng = random.Random(42)
    next_kill = time.monotonic() + rng.uniform(2, 6)
    killed = 0
    deadline = time.monotonic() + 1800
    good = set(lines) - poison

    waiting = set(good)

    def take(kind, key, at):
        if kind == "receive":
            received[key] = received.get(key, 0) + 1
            if key in acked_at and at > acked_at[key]:
                violations.append(key)
        elif kind == "ack":
            acks[key] = acks.get(key, 0) + 1
            acked_at.setdefault(key, at)
            waiting.discard(key)
        else:
            unanswered.add(key)
            waiting.discard(key)

    # Until every good record is acknowledged, or had an acknowledgement that went
    # unanswered (the server may have taken it: then it never comes again).
    while waiting and time.monotonic() < deadline:
        try:
            take(*events.get(timeout=0.5))
        except Exception:
            pass
        if killed < kills and time.monotonic() >= next_kill:
            server.send_signal(signal.SIGKILL)
            server.wait()
            server = start()
            killed += 1
            next_kill = time.monotonic() + rng.uniform(2, 6)
    work_s = time.monotonic() - started - put_s
    # The poison records reach the dead-letter area once their receives are used up, and
    # records whose acknowledgement went unanswered come again if it was not taken.
    time.sleep(6)
    stop.set()
    for w in workers:
        w.join()
    while not events.empty():
        take(*events.get())
    left = k.receive_queue_records(QueueARN=arn, Limit=10, WaitTimeSeconds=1)["QueueRecords"]
    check("the queue is drained", not left, f"{len(left)} records still delivered")
    check("every record but the 1% acknowledged", good <= set(acked_at) | unanswered,
          f"{len(acked_at)} of {want}; missing e.g. {list(good - set(acked_at) - unanswered)[:2]}")
    if not good <= set(acked_at) | unanswered:
        # What the server said about it (a queue logs a record it cannot read).
        import os
        with open(os.path.join(work, "server.log"), "rb") as log:
            errors = [l for l in log.read().decode(errors="replace").splitlines() if "ERROR" in l]
        print("server errors:", *errors[-20:], sep="\n  ", flush=True)
        missing = list(good - set(acked_at) - unanswered)[:2]
        print("received before:", [received.get(m, 0) for m in missing], flush=True)
    check("each acknowledged once", all(n == 1 for n in acks.values()), f"{sum(1 for n in acks.values() if n > 1)} acknowledged twice")
    check("nothing received after its acknowledgement was answered", not violations, f"{len(violations)}: {violations[:2]}")
    check("the server was killed under the workers", killed == kills, f"{killed} of {kills}")
    dead = []
    until = time.monotonic() + 120
    while time.monotonic() < until:
        out = k.receive_dead_letter_queue_records(QueueARN=arn, Limit=10, VisibilityTimeoutSeconds=600)
        if not out["QueueRecords"]:
            if len(dead) >= len(poison):
                break
            time.sleep(0.5)
        dead.extend(out["QueueRecords"])
    dead_data = [r["Data"].decode() for r in dead]
    check("the 1% are dead letters, each once", sorted(dead_data) == sorted(poison), f"{len(dead_data)} dead, {len(poison)} expected")
    for i in range(0, len(dead), 10):
        k.restore_dead_letter_queue_records(QueueARN=arn, Entries=[{"ReceiptHandle": r["ReceiptHandle"]} for r in dead[i:i + 10]])
    again = []
    until = time.monotonic() + 120
    while time.monotonic() < until:
        out = k.receive_queue_records(QueueARN=arn, Limit=10, WaitTimeSeconds=1, VisibilityTimeoutSeconds=600)
        again.extend(r["Data"].decode() for r in out["QueueRecords"])
        if len(again) >= len(poison) and not out["QueueRecords"]:
            break
    check("restored dead letters are delivered again", sorted(again) == sorted(poison), f"{len(again)} of {len(poison)}")
    print(f"queue workers: {len(lines)} records put in {put_s:.1f} s; {want} acknowledged by {WORKERS} workers in {work_s:.1f} s "
          f"through {killed} SIGKILLs ({len(unanswered - set(acked_at))} acknowledgements unanswered by a killed server and taken); "
          f"{len(poison)} dead-lettered and restored", flush=True)
    server.send_signal(signal.SIGTERM)
    server.wait()
    print(f"queues: {passed} passed, {failed} failed", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
