"""A worker pool on an SQS queue through boto3, with the server SIGKILLed under it.

Starts `sluice serve` itself (throttling off), sends the Beijing readings to a standard queue
(SendMessageBatch of 10, from 4 processes), and runs 8 competing worker processes: each
receives up to 10 messages (long polling, visibility 10 s) and deletes them in a batch, except
the 1% it deliberately never deletes (by CRC-32 of the body); the queue's RedrivePolicy moves
those to a dead-letter queue after 2 receives. While the workers run, the server is SIGKILLed
and restarted `kills` times at random moments on the same data directory. Checked at the end:

- nothing sent is lost: every message but the 1% was deleted by its latest receipt handle, or
  had a delete the killed server never answered (it may have taken it);
- nothing deleted comes back: no message was received after a delete of its latest receipt
  handle had been answered;
- the queue is drained, and the 1% are in the dead-letter queue (each at least once; a
  SIGKILL between the move's append and its journal line may move one twice: at least once);
- StartMessageMoveTask moves them back to the queue, where they are received again.

Usage: sqs_workers.py <sluice binary> <work folder> <dataset .jsonl.gz> <messages or 0 for all> <kills>.
Prints "sqs: N passed, M failed"."""
import gzip
import multiprocessing as mp
import random
import signal
import sys
import time
import zlib

from sluice_server import Server

binary, work, dataset, limit, kills = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
WORKERS = 8
VISIBILITY_S = 10
passed, failed = 0, 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"sqs workers {name}: {detail}", flush=True)


server_process = Server(binary, work, 'throttle = "off"\n[lake]\nurl = "file://%s/lake"\n' % work)


def client():
    return server_process.client("sqs", read_timeout=30)


def poisoned(body):
    return zlib.crc32(body.encode()) % 100 == 0


def worker(url, events, stop):
    """Receives and deletes until `stop`; reports (kind, body, receipt handle, monotonic time)."""
    q = client()
    while not stop.is_set():
        started = time.monotonic()
        try:
            out = q.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        except Exception:
            time.sleep(0.1)
            continue
        messages = out.get("Messages", [])
        for m in messages:
            events.put(("receive", m["Body"], m["ReceiptHandle"], started))
        keep = [m for m in messages if not poisoned(m["Body"])]
        if not keep:
            continue
        entries = [{"Id": f"m{i}", "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(keep)]
        try:
            deleted = q.delete_message_batch(QueueUrl=url, Entries=entries)
        except Exception:
            # Not answered: the server may or may not have deleted them; if not, they come again.
            for m in keep:
                events.put(("unanswered", m["Body"], m["ReceiptHandle"], time.monotonic()))
            continue
        answered = time.monotonic()
        by_id = {f"m{i}": m for i, m in enumerate(keep)}
        for s in deleted.get("Successful", []):
            m = by_id[s["Id"]]
            events.put(("delete", m["Body"], m["ReceiptHandle"], answered))
        for f in deleted.get("Failed", []):
            m = by_id[f["Id"]]
            events.put(("unanswered", m["Body"], m["ReceiptHandle"], answered))


def send_part(lines, url):
    q = client()
    for i in range(0, len(lines), 10):
        entries = [{"Id": str(j), "MessageBody": l} for j, l in enumerate(lines[i:i + 10])]
        while entries:
            out = q.send_message_batch(QueueUrl=url, Entries=entries)
            failed_ids = {f["Id"] for f in out.get("Failed", [])}
            entries = [e for e in entries if e["Id"] in failed_ids]


def main():
    with gzip.open(dataset, "rt") as f:
        lines = [l.strip() for l in f if l.strip()]
    if limit:
        lines = lines[:limit]
    poison = {l for l in lines if poisoned(l)}
    server = server_process.start()
    q = client()
    dlq = q.create_queue(QueueName="beijing-dead")["QueueUrl"]
    dlq_arn = q.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = q.create_queue(QueueName="beijing", Attributes={
        "VisibilityTimeout": str(VISIBILITY_S),
        "RedrivePolicy": '{"deadLetterTargetArn":"%s","maxReceiveCount":"2"}' % dlq_arn,
    })["QueueUrl"]
    started = time.monotonic()
    parts = [lines[i::4] for i in range(4)]
    senders = [mp.Process(target=send_part, args=(p, url)) for p in parts]
    for p in senders:
        p.start()
    for p in senders:
        p.join()
    send_s = time.monotonic() - started
    sent = int(q.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"])
    check("every message sent is in the queue", sent == len(lines), f"{sent} of {len(lines)}")

    events, stop = mp.Queue(), mp.Event()
    workers = [mp.Process(target=worker, args=(url, events, stop)) for _ in range(WORKERS)]
    for w in workers:
        w.start()
    good = set(lines) - poison
    waiting = set(good)
    log = []
    rng = random.Random(42)
    next_kill = time.monotonic() + rng.uniform(2, 6)
    killed = 0
    deadline = time.monotonic() + 1800
    next_report = time.monotonic() + 30
    # Until every good message was deleted, or had a delete that went unanswered; or, once
    # the kills are done, the queue holds nothing more (a message whose receives all went
    # unanswered by killed servers may have reached the dead-letter queue: at least once).
    while waiting and time.monotonic() < deadline:
        try:
            e = events.get(timeout=0.5)
            log.append(e)
            if e[0] in ("delete", "unanswered"):
                waiting.discard(e[1])
        except Exception:
            if killed == kills and events.empty():
                a = q.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages",
                                                                         "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
                if a == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}:
                    break
        if time.monotonic() >= next_report:
            print(f"sqs workers: {len(waiting)} messages to go, {killed} kills, {len(log)} events", flush=True)
            next_report = time.monotonic() + 30
        if killed < kills and time.monotonic() >= next_kill:
            server.send_signal(signal.SIGKILL)
            server.wait()
            server = server_process.start()
            killed += 1
            next_kill = time.monotonic() + rng.uniform(2, 6)
    work_s = time.monotonic() - started - send_s
    # Unanswered deletes not taken come again after the visibility timeout, and the 1% reach
    # the dead-letter queue after their second receive's timeout.
    time.sleep(2 * VISIBILITY_S + 3)
    stop.set()
    # Drained while they stop: a process exits only once its queue's feeder has written all
    # it put, which waits for this reader.
    while any(w.is_alive() for w in workers) or not events.empty():
        try:
            log.append(events.get(timeout=0.2))
        except Exception:
            pass
    for w in workers:
        w.join()
    log.sort(key=lambda e: e[3])
    latest, deleted_at, violations, unanswered = {}, {}, [], set()
    for kind, body, handle, at in log:
        if kind == "receive":
            if body in deleted_at and at > deleted_at[body]:
                violations.append(body)
            latest[body] = handle
        elif kind == "delete" and latest.get(body) == handle:
            deleted_at.setdefault(body, at)
        elif kind == "unanswered":
            unanswered.add(body)
    left = q.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    check("the queue is drained", not left, f"{len(left)} messages still delivered")
    missing = good - set(deleted_at) - unanswered
    check("nothing deleted comes back", not violations, f"{len(violations)}: {violations[:2]}")
    check("the server was killed under the workers", killed == kills, f"{killed} of {kills}")
    # Each dead letter is read once (in flight for 10 minutes), then made visible again for
    # the move task, which moves the visible ones.
    dead = []
    until = time.monotonic() + 120
    while time.monotonic() < until:
        got = q.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, VisibilityTimeout=600,
                                WaitTimeSeconds=1).get("Messages", [])
        dead.extend(got)
        if not got and len({m["Body"] for m in dead}) >= len(poison):
            break
    dead_bodies = {m["Body"] for m in dead}
    check("nothing sent is lost: every message but the 1% deleted, or dead-lettered after unanswered receives",
          missing <= dead_bodies, f"{len(deleted_at)} of {len(good)} deleted; missing e.g. {list(missing - dead_bodies)[:2]}")
    check("the 1% are in the dead-letter queue", poison <= dead_bodies, f"{len(poison & dead_bodies)} of {len(poison)}")
    poison = dead_bodies
    for i in range(0, len(dead), 10):
        q.change_message_visibility_batch(QueueUrl=dlq, Entries=[
            {"Id": str(j), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0} for j, m in enumerate(dead[i:i + 10])])
    moved_task = q.start_message_move_task(SourceArn=dlq_arn)["TaskHandle"]
    status = "RUNNING"
    until = time.monotonic() + 120
    while status == "RUNNING" and time.monotonic() < until:
        time.sleep(0.5)
        status = q.list_message_move_tasks(SourceArn=dlq_arn)["Results"][0]["Status"]
    check("the move task completed", status == "COMPLETED", status)
    again = set()
    until = time.monotonic() + 120
    while time.monotonic() < until:
        got = q.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=600).get("Messages", [])
        again.update(m["Body"] for m in got)
        if len(again) >= len(poison) and not got:
            break
    check("moved back and received again", again == poison, f"{len(again)} of {len(poison)}")
    print(f"sqs workers: {len(lines)} messages sent in {send_s:.1f} s; {len(good)} deleted by {WORKERS} workers in {work_s:.1f} s "
          f"through {killed} SIGKILLs ({len(unanswered - set(deleted_at))} deletes unanswered by a killed server and taken, "
          f"{len(missing)} dead-lettered after receives unanswered); "
          f"{len(poison)} dead-lettered and moved back (task {moved_task[:12]}...)", flush=True)
    server.send_signal(signal.SIGTERM)
    server.wait()
    print(f"sqs: {passed} passed, {failed} failed", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
