"""Replay and redrive on a live server (issue 20), driven by boto3 and the `sluice` command line,
with the server SIGKILLed mid-task; what landed is read back with pyarrow.

Replay: boto3 puts the first half of the Beijing readings into a 4-shard stream that a Parquet
delivery stream reads; while the second half goes in, `sluice replay --endpoint` replays the
first half into another prefix (paced, detached). The server is SIGKILLed mid-replay and started
again; the replay resumes by itself and completes. Then, with the server stopped, the offline
`sluice replay` replays the same range into a third prefix: both hold the same objects, byte for
byte, and every reading of the first half once.

Redrive: a DirectPut delivery stream whose schema declares O3 an int sends the readings with a
fractional O3 to format-conversion-failed. The schema is fixed (double) and `sluice redrive`
puts those records back, paced; the server is SIGKILLed mid-redrive and started again. Every
reading is then in the delivery stream's Parquet objects exactly once (pyarrow), a second redrive
takes nothing, the redriven objects are named by the records' original arrival time, and a
redrive into a Kinesis stream puts each failed record there once.

Usage: reprocessing.py <sluice binary> <work folder> <dataset .jsonl.gz> <records or 0 for all>.
Prints "reprocess: N passed, M failed"."""
import collections
import glob
import gzip
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pyarrow.parquet as pq

from sluice_server import KEY, SECRET, Server

binary, work, dataset, limit = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
passed, failed = 0, 0
lake = os.path.join(work, "lake", "lake")
schemas = os.path.join(work, "schemas")
server = Server(binary, work, f'throttle = "off"\nstream_transition_ms = 0\nschema_dir = "{schemas}"\n'
                              f'[lake]\nurl = "file://{work}/lake"\n')
env = dict(os.environ, AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION="us-east-1")


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"reprocess {name}: {detail}", flush=True)


def cli(*args, ok=True):
    out = subprocess.run([binary, *args], capture_output=True, text=True, env=env)
    if ok and out.returncode != 0:
        raise SystemExit(f"sluice {' '.join(args)} failed: {out.stderr}")
    return out


def endpoint():
    return ["--endpoint", server.endpoint]


def schema(table, o3_type):
    os.makedirs(os.path.join(schemas, "db"), exist_ok=True)
    fields = [("No", "int"), ("year", "int"), ("month", "int"), ("day", "int"), ("hour", "int"), ("station", "string"),
              ("PM10", "double"), ("O3", o3_type), ("TEMP", "double"), ("wd", "string")]
    with open(os.path.join(schemas, "db", f"{table}.json"), "w") as out:
        json.dump({"fields": [{"name": n, "type": t} for n, t in fields]}, out)


def conversion(table):
    return {
        "Enabled": True,
        "SchemaConfiguration": {"DatabaseName": "db", "TableName": table, "RoleARN": "arn:aws:iam::000000000000:role/r"},
        "InputFormatConfiguration": {"Deserializer": {"OpenXJsonSerDe": {}}},
        "OutputFormatConfiguration": {"Serializer": {"ParquetSerDe": {}}},
    }


def destination(prefix, table, interval):
    return {
        "RoleARN": "arn:aws:iam::000000000000:role/r",
        "BucketARN": "arn:aws:s3:::lake",
        "Prefix": f"{prefix}/",
        "ErrorOutputPrefix": f"{prefix}-errors/!{{firehose:error-output-type}}/",
        "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": interval},
        "DataFormatConversionConfiguration": conversion(table),
    }


def files(prefix):
    return sorted(p for p in glob.glob(os.path.join(lake, prefix, "**"), recursive=True) if os.path.isfile(p))


def parquet_keys(prefix):
    """(station, year, month, day, hour) of every row of the Parquet objects under prefix."""
    keys = []
    for p in files(prefix):
        if p.endswith(".parquet"):
            t = pq.read_table(p, columns=["station", "year", "month", "day", "hour"]).to_pylist()
            keys.extend((r["station"], r["year"], r["month"], r["day"], r["hour"]) for r in t)
    return keys


def reading_key(line):
    r = json.loads(line)
    return (r["station"], r["year"], r["month"], r["day"], r["hour"])


def task(task_id):
    tasks = json.loads(cli("replay", "list", *endpoint(), "--json").stdout)["Tasks"]
    return next(t for t in tasks if t["TaskId"] == task_id)


def kill_mid_task(task_id, proc):
    """SIGKILLs the server once the task has done part of its work; returns (done, total)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        t = task(task_id)
        done = t["Total"] - t["Remaining"]
        if done > 0 and t["Remaining"] > 0:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return done, t["Total"]
        if t["Status"] != "RUNNING":
            break
        time.sleep(0.05)
    raise SystemExit(f"task {task_id} was not caught mid-way: {task(task_id)}")


def start_kill_resume(kind, proc, *args):
    """Starts a detached task with `sluice <kind> … --detach`, SIGKILLs the server mid-task,
    starts it again and watches the task to its end. Returns (task id, done when killed,
    total, the restarted server)."""
    started = cli(kind, *endpoint(), *args, "--detach")
    task_id = started.stdout.strip()
    check(f"{kind} task id", task_id.startswith(f"{kind}-"), started.stdout + started.stderr)
    done, total = kill_mid_task(task_id, proc)
    proc = server.start()
    watched = cli(kind, "watch", task_id, *endpoint(), ok=False)
    check(f"resumed {kind} completes", watched.returncode == 0 and "COMPLETED" in watched.stdout,
          watched.stdout + watched.stderr)
    return task_id, done, total, proc


def put_all(k, stream, lines, latencies=None):
    """PutRecords in batches of 500, retried (through a server restart) until every record is in."""
    for i in range(0, len(lines), 500):
        entries = [{"Data": line, "PartitionKey": json.loads(line)["station"]} for line in lines[i:i + 500]]
        while entries:
            try:
                started = time.monotonic()
                out = k.put_records(StreamName=stream, Records=entries)
                if latencies is not None:
                    latencies.append(time.monotonic() - started)
                entries = [e for e, r in zip(entries, out["Records"]) if "ErrorCode" in r]
            except Exception:
                time.sleep(0.2)


def rfc3339(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def replay_case(lines):
    proc = server.start()
    k, f = server.client("kinesis"), server.client("firehose")
    k.create_stream(StreamName="air", ShardCount=4)
    k.get_waiter("stream_exists").wait(StreamName="air", WaiterConfig={"Delay": 0.2})
    arn = k.describe_stream_summary(StreamName="air")["StreamDescriptionSummary"]["StreamARN"]
    schema("air", "double")
    f.create_delivery_stream(
        DeliveryStreamName="air-lake", DeliveryStreamType="KinesisStreamAsSource",
        KinesisStreamSourceConfiguration={"KinesisStreamARN": arn, "RoleARN": "arn:aws:iam::000000000000:role/r"},
        ExtendedS3DestinationConfiguration=destination("live", "air", 60))
    half = len(lines) // 2
    put_all(k, "air", lines[:half])
    first_half_end = int(time.time() * 1000) + 1
    time.sleep(0.01)
    # The second half goes in while the replay runs (and through the SIGKILL).
    second = threading.Thread(target=put_all, args=(server.client("kinesis"), "air", lines[half:]))
    second.start()
    task_id, done, total, proc = start_kill_resume(
        "replay", proc, "--delivery-stream", "air-lake", "--from", "1970-01-01T00:00:00Z", "--to",
        rfc3339(first_half_end), "--prefix", "replay-live/", "--max-records-per-second", "40000")
    check("replay range is the first half", total == half, f"{total} records in range, {half} put")
    second.join()
    metrics = urllib.request.urlopen(f"{server.endpoint}/metrics").read().decode()
    replayed = re.search(r'sluice_firehose_replay_records_total\{delivery_stream="air-lake"\} (\d+)', metrics)
    check("replayed records in /metrics", replayed is not None and 0 < int(replayed.group(1)) <= half - done + 1,
          replayed.group(0) if replayed else "no series")
    check("no replay remaining in /metrics",
          'sluice_firehose_replay_remaining_records{delivery_stream="air-lake"} 0' in metrics, "gauge not 0")
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    offline = cli("replay", "--config", server.config_path, "--data-dir", server.data_dir, "--delivery-stream", "air-lake",
                  "--from", "1970-01-01T00:00:00Z", "--to", rfc3339(first_half_end), "--prefix", "replay-offline/",
                  ok=False)
    check("offline replay", offline.returncode == 0, offline.stderr)
    live = {os.path.relpath(p, os.path.join(lake, "replay-live")): open(p, "rb").read() for p in files("replay-live")}
    off = {os.path.relpath(p, os.path.join(lake, "replay-offline")): open(p, "rb").read() for p in files("replay-offline")}
    check("live and offline replays wrote the same object names", sorted(live) == sorted(off) and len(live) > 1,
          f"{len(live)} live, {len(off)} offline, {len(set(live) ^ set(off))} differ")
    same = [name for name in live if off.get(name) == live[name]]
    check("live and offline replays wrote the same bytes", len(same) == len(live), f"{len(live) - len(same)} differ")
    keys = collections.Counter(parquet_keys("replay-live"))
    want = collections.Counter(reading_key(line) for line in lines[:half])
    check("the live replay holds the first half once", keys == want,
          f"{sum(keys.values())} rows, {sum(want.values())} wanted, {len(keys - want)} extra, {len(want - keys)} missing")
    print(f"replay: {half} records of {len(lines)} replayed live into {len(live)} objects, SIGKILLed after {done}; "
          f"offline replay identical", flush=True)


def failed_lines(prefix):
    out = []
    for p in files(f"{prefix}-errors/format-conversion-failed"):
        with open(p) as e:
            out.extend(json.loads(line) for line in e if line.strip())
    return out


def wait_delivered(prefix, total):
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        rows, errors = len(parquet_keys(prefix)), len(failed_lines(prefix))
        if rows + errors >= total:
            return rows, errors
        time.sleep(0.2)
    raise SystemExit(f"{prefix}: {rows} rows and {errors} errors, {total} put")


def redrive_case(lines):
    proc = server.start()
    k, f = server.client("kinesis"), server.client("firehose")
    schema("strict", "int")
    f.create_delivery_stream(DeliveryStreamName="air-strict", ExtendedS3DestinationConfiguration=destination("strict", "strict", 0))
    for i in range(0, len(lines), 500):
        out = f.put_record_batch(DeliveryStreamName="air-strict", Records=[{"Data": line} for line in lines[i:i + 500]])
        assert out["FailedPutCount"] == 0, out
    put_done_ms = int(time.time() * 1000)
    rows, errors = wait_delivered("strict", len(lines))
    fractional = [line for line in lines if isinstance(json.loads(line)["O3"], float) and json.loads(line)["O3"] % 1]
    check("a fractional O3 fails conversion", errors == len(fractional) and errors > 0, f"{errors} failed, {len(fractional)} fractional")
    error_objects = len(files("strict-errors/format-conversion-failed"))

    # The fix: O3 is a double; the delivery stream takes the schema again.
    schema("strict", "double")
    d = f.describe_delivery_stream(DeliveryStreamName="air-strict")["DeliveryStreamDescription"]
    f.update_destination(DeliveryStreamName="air-strict", CurrentDeliveryStreamVersionId=d["VersionId"],
                         DestinationId=d["Destinations"][0]["DestinationId"],
                         ExtendedS3DestinationUpdate={"DataFormatConversionConfiguration": conversion("strict")})
    redrive_started_ms = int(time.time() * 1000)
    task_id, done, total, proc = start_kill_resume(
        "redrive", proc, "--delivery-stream", "air-strict", "--error-output-type", "format-conversion-failed",
        "--max-records-per-second", str(max(200, errors // 4)))
    check("redrive takes every error object", total == error_objects, f"{total} of {error_objects}")
    keys = collections.Counter(parquet_keys("strict"))
    want = collections.Counter(reading_key(line) for line in lines)
    check("every reading landed exactly once", keys == want,
          f"{sum(keys.values())} rows, {sum(want.values())} wanted, {len(keys - want)} extra, {len(want - keys)} missing")
    report = task(task_id)["Redrive"]["Report"]
    check("the redrive's report counts the failed records", report["Records"] == errors and report["Delivered"] == errors,
          str(report))
    # Objects landed by the redrive are named by the records' arrival, before the redrive began.
    stamps = []
    for p in files("strict"):
        if os.path.getmtime(p) * 1000 >= redrive_started_ms and p.endswith(".parquet"):
            m = re.search(r"-(\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d)-[0-9a-f-]{36}\.parquet$", p)
            stamps.append(m.group(1) if m else "")
    put_stamp = time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime(put_done_ms // 1000))
    check("redriven objects keep the original arrival time", stamps and all(s and s <= put_stamp for s in stamps),
          f"{stamps[:3]} vs put by {put_stamp}")
    metrics = urllib.request.urlopen(f"{server.endpoint}/metrics").read().decode()
    check("redriven records in /metrics",
          re.search(r'sluice_firehose_redrive_records_total\{delivery_stream="air-strict"\} [1-9]', metrics) is not None,
          "no series")
    again = cli("redrive", *endpoint(), "--delivery-stream", "air-strict", "--error-output-type",
                "format-conversion-failed", ok=False)
    check("a second redrive takes nothing", again.returncode == 0 and "0 error objects redriven" in again.stdout
          and f"({error_objects} taken before)" in again.stdout, again.stdout + again.stderr)
    check("still exactly once", collections.Counter(parquet_keys("strict")) == want, "rows changed")

    # Into a Kinesis stream instead.
    schema("strict2", "int")
    f.create_delivery_stream(DeliveryStreamName="air-strict2", ExtendedS3DestinationConfiguration=destination("strict2", "strict2", 0))
    few = lines[:5000]
    for i in range(0, len(few), 500):
        f.put_record_batch(DeliveryStreamName="air-strict2", Records=[{"Data": line} for line in few[i:i + 500]])
    _, errors2 = wait_delivered("strict2", len(few))
    k.create_stream(StreamName="redriven", ShardCount=2)
    k.get_waiter("stream_exists").wait(StreamName="redriven", WaiterConfig={"Delay": 0.2})
    into = cli("redrive", *endpoint(), "--delivery-stream", "air-strict2", "--error-output-type",
               "format-conversion-failed", "--into-stream", "redriven", ok=False)
    check("redrive into a stream completes", into.returncode == 0, into.stdout + into.stderr)
    got = []
    for shard in k.list_shards(StreamName="redriven")["Shards"]:
        it = k.get_shard_iterator(StreamName="redriven", ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            out = k.get_records(ShardIterator=it, Limit=10000)
            got.extend(r["Data"].decode() for r in out["Records"])
            it = out.get("NextShardIterator") if out["Records"] else None
    sent = sorted(line for line in few if isinstance(json.loads(line)["O3"], float) and json.loads(line)["O3"] % 1)
    check("the stream holds each failed record once", sorted(got) == sent and len(sent) == errors2,
          f"{len(got)} read, {len(sent)} failed")
    bad = cli("redrive", *endpoint(), "--delivery-stream", "air-strict2", "--error-output-type", "wrong-type", ok=False)
    check("an unknown error output type is refused", bad.returncode != 0 and "InvalidArgumentException" in bad.stderr,
          bad.stderr)
    print(f"redrive: {errors} of {len(lines)} readings failed conversion in {error_objects} error objects; redriven "
          f"through a SIGKILL after {done}; each reading once", flush=True)
    proc.send_signal(signal.SIGTERM)
    proc.wait()


def main():
    with gzip.open(dataset, "rt") as d:
        lines = [line.rstrip("\n") for line in d]
    if limit:
        lines = lines[:limit]
    replay_case(lines)
    redrive_case(lines[:40000])
    print(f"reprocess: {passed} passed, {failed} failed", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
