"""Firehose into an Apache Iceberg table, read back by PyIceberg, with the server SIGKILLed.

Starts `sluice serve` itself. PyIceberg (from PyPI) creates the table in its SqlCatalog on
Sluice's own catalog file (`<data dir>/iceberg/catalog.db`): the Beijing readings' columns
plus `ts` (timestamptz), partitioned by day(ts) and bucket(16, station). boto3 creates a
DirectPut Firehose stream with an IcebergDestinationConfiguration (schema evolution on,
1 s buffers) and puts the readings with PutRecordBatch; from half-way on, records carry a
new field `quality`. Between batches the server is SIGKILLed at random moments (commits run
every second, so kills land mid-delivery and mid-commit) and restarted `kills` times.

Checked through PyIceberg alone (its own SQL catalog, its own Parquet reader):
- row count, per-station row counts and per-station sums of `No` equal the input exactly
  (nothing lost, nothing twice) and the table's snapshot summaries cover no source range
  twice;
- `quality` became a nullable column and holds exactly the values sent with it;
- the table's partitions are the (day, bucket) pairs of the input.

Usage: iceberg_tables.py <sluice binary> <work folder> <dataset .jsonl.gz> <records> <kills>.
Prints "iceberg: N passed, M failed"."""
import collections
import datetime
import gzip
import json
import os
import random
import sys
import time

from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import BucketTransform, DayTransform
from pyiceberg.types import DoubleType, LongType, NestedField, StringType, TimestamptzType
from sluice_server import Server

binary, work, dataset, limit, kills = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
ACCOUNT = "000000000000"
passed, failed = 0, 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"iceberg {name}: {detail}", flush=True)


lake = os.path.join(work, "lake")
server_process = Server(binary, work, 'throttle = "off"\nstream_transition_ms = 0\n[lake]\nurl = "file://%s"\n' % lake)
data_dir = server_process.data_dir


def client():
    return server_process.client("firehose", read_timeout=30)


def start():
    return server_process.start()


def catalog():
    return SqlCatalog("sluice", uri=f"sqlite:///{data_dir}/iceberg/catalog.db", warehouse=f"file://{lake}/warehouse")


def timestamp(r):
    return f"{r['year']:04d}-{r['month']:02d}-{r['day']:02d}T{r['hour']:02d}:00:00Z"


def main():
    with gzip.open(dataset, "rt") as f:
        rows = [json.loads(l) for _, l in zip(range(limit), f)]
    half = len(rows) // 2
    lines = []
    for i, r in enumerate(rows):
        r["ts"] = timestamp(r)
        if i >= half:
            r["quality"] = "checked" if i % 3 else "estimated"
        lines.append(json.dumps(r).encode())

    server = start()
    os.makedirs(os.path.join(lake, "warehouse"), exist_ok=True)
    os.makedirs(os.path.join(lake, "errors"), exist_ok=True)
    # Sluice's catalog file exists once its catalog is opened; PyIceberg creates the same
    # tables if it comes first.
    cat = catalog()
    cat.create_namespace("telemetry")
    columns = [("No", LongType()), ("year", LongType()), ("month", LongType()), ("day", LongType()), ("hour", LongType()),
               ("PM2.5", DoubleType()), ("PM10", DoubleType()), ("SO2", DoubleType()), ("NO2", DoubleType()),
               ("CO", DoubleType()), ("O3", DoubleType()), ("TEMP", DoubleType()), ("PRES", DoubleType()),
               ("DEWP", DoubleType()), ("RAIN", DoubleType()), ("wd", StringType()), ("WSPM", DoubleType()),
               ("station", StringType()), ("ts", TimestamptzType())]
    schema = Schema(*[NestedField(i + 1, n, t, required=False) for i, (n, t) in enumerate(columns)])
    ts_id = len(columns)
    station_id = len(columns) - 1
    spec = PartitionSpec(PartitionField(source_id=ts_id, field_id=1000, transform=DayTransform(), name="ts_day"),
                         PartitionField(source_id=station_id, field_id=1001, transform=BucketTransform(16), name="station_bucket"))
    cat.create_table("telemetry.readings", schema=schema, partition_spec=spec, location=f"file://{lake}/warehouse/telemetry.db/readings")

    fh = client()
    fh.create_delivery_stream(
        DeliveryStreamName="readings",
        DeliveryStreamType="DirectPut",
        IcebergDestinationConfiguration={
            "RoleARN": f"arn:aws:iam::{ACCOUNT}:role/firehose",
            "CatalogConfiguration": {"CatalogARN": f"arn:aws:glue:us-east-1:{ACCOUNT}:catalog",
                                     "WarehouseLocation": "s3://warehouse"},
            "S3Configuration": {"RoleARN": f"arn:aws:iam::{ACCOUNT}:role/firehose", "BucketARN": "arn:aws:s3:::errors",
                                "ErrorOutputPrefix": "failed/!{firehose:error-output-type}/"},
            "DestinationTableConfigurationList": [{"DestinationDatabaseName": "telemetry", "DestinationTableName": "readings"}],
            "SchemaEvolutionConfiguration": {"Enabled": True},
            "BufferingHints": {"IntervalInSeconds": 1, "SizeInMBs": 1},
        })
    d = fh.describe_delivery_stream(DeliveryStreamName="readings")["DeliveryStreamDescription"]
    dest = d["Destinations"][0].get("IcebergDestinationDescription", {})
    check("describe", dest.get("DestinationTableConfigurationList", [{}])[0].get("DestinationTableName") == "readings"
          and dest.get("S3DestinationDescription", {}).get("BucketARN") == "arn:aws:s3:::errors", json.dumps(dest, default=str))

    rounds = kills + 1
    per_round = (len(lines) + rounds - 1) // rounds
    for k in range(rounds):
        part = lines[k * per_round:(k + 1) * per_round]
        for i in range(0, len(part), 500):
            entries = [{"Data": l} for l in part[i:i + 500]]
            while entries:
                out = fh.put_record_batch(DeliveryStreamName="readings", Records=entries)
                entries = [e for e, r in zip(entries, out["RequestResponses"]) if "ErrorCode" in r]
        if k < kills:
            # No put is in flight: a record is either acknowledged (durable) or not sent yet.
            time.sleep(random.uniform(0.3, 1.8))
            server.kill()
            server.wait()
            server = start()
            fh = client()

    table = None
    deadline = time.monotonic() + 180
    count = -1
    while time.monotonic() < deadline:
        table = catalog().load_table("telemetry.readings")
        count = table.scan(selected_fields=("No",)).to_arrow().num_rows if table.current_snapshot() else 0
        if count >= len(lines):
            break
        time.sleep(1)
    time.sleep(2.5)  # anything that would land twice has had its chance
    table = catalog().load_table("telemetry.readings")
    got = table.scan().to_arrow().to_pylist()
    check("rows", len(got) == len(lines), f"{len(got)} rows, {len(lines)} sent")

    want_count, want_sum = collections.Counter(), collections.Counter()
    for r in rows:
        want_count[r["station"]] += 1
        want_sum[r["station"]] += r["No"]
    got_count, got_sum = collections.Counter(), collections.Counter()
    for r in got:
        got_count[r["station"]] += 1
        got_sum[r["station"]] += r["No"]
    check("per-station counts", got_count == want_count, f"{dict(got_count)} != {dict(want_count)}")
    check("per-station sums", got_sum == want_sum, f"{dict(got_sum)} != {dict(want_sum)}")
    check("timestamps", all(r["ts"] == datetime.datetime.fromisoformat(timestamp(r).replace("Z", "+00:00")) for r in got),
          "a ts differs from its reading's year/month/day/hour")

    field = table.schema().find_field("quality") if "quality" in [f.name for f in table.schema().fields] else None
    check("schema evolution", field is not None and not field.required, str(table.schema()))
    want_q = collections.Counter(r.get("quality") for r in rows)
    got_q = collections.Counter(r.get("quality") for r in got)
    check("new column values", got_q == want_q, f"{dict(got_q)} != {dict(want_q)}")

    ranges = collections.defaultdict(list)
    snapshots = table.snapshots()
    for s in snapshots:
        p = s.summary.additional_properties if s.summary else {}
        if "sluice.shard" in p:
            ranges[(p["sluice.source"], p["sluice.shard"])].append(
                (int(p["sluice.first-sequence-number"]), int(p["sluice.last-sequence-number"])))
    overlaps = 0
    for rs in ranges.values():
        rs.sort()
        overlaps += sum(1 for a, b in zip(rs, rs[1:]) if b[0] <= a[1])
    check("snapshot ranges", ranges and overlaps == 0, f"{overlaps} overlapping ranges in {len(snapshots)} snapshots")

    bucket = BucketTransform(16).transform(StringType())
    epoch = datetime.date(1970, 1, 1)
    want_parts = {((datetime.date(r["year"], r["month"], r["day"]) - epoch).days, bucket(r["station"])) for r in rows}
    got_parts = set()
    for p in table.inspect.partitions().to_pylist():
        day = p["partition"]["ts_day"]
        day = (day - epoch).days if isinstance(day, datetime.date) else day
        got_parts.add((day, p["partition"]["station_bucket"]))
    check("partitions", got_parts == want_parts, f"{len(got_parts)} partitions, {len(want_parts)} expected")
    files = len(table.inspect.files())
    print(f"iceberg table: {len(lines)} records, {len(snapshots)} snapshots, {files} data files, {len(got_parts)} partitions, {kills} kills",
          flush=True)

    server.terminate()
    server.wait()


try:
    main()
except Exception as e:  # a failure to run is a failed check, with its reason
    check("run", False, repr(e))
print(f"iceberg: {passed} passed, {failed} failed", flush=True)
sys.exit(1 if failed else 0)
