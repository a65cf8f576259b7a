"""Firehose data correctness through boto3 against a running Sluice, read back with an
independent reader (pyarrow for Parquet and ORC; zipfile and cramjam for compressed objects).
One row per case of issue 22's table: values are compared, not just counted.
Usage: firehose_conversion.py <endpoint> <key> <secret> <lake folder> <schema folder>.
Prints "conversion: N passed, M failed"; exits 1 on any failure."""
import base64
import datetime
import glob
import io
import json
import os
import sys
import time
import zipfile

import boto3
import botocore.exceptions
import cramjam
import pyarrow.orc as orc
import pyarrow.parquet as pq
from botocore.config import Config

endpoint, key, secret, lake, schemas = sys.argv[1:6]
session = boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=secret, region_name="us-east-1")
f = session.client("firehose", endpoint_url=endpoint, config=Config(retries={"max_attempts": 1}))
passed, failed = 0, 0


def check(name, got, want):
    global passed, failed
    if got == want:
        passed += 1
    else:
        failed += 1
        print(f"conversion {name}: got {got!r}, want {want!r}")


def schema(table, fields):
    os.makedirs(os.path.join(schemas, "db"), exist_ok=True)
    with open(os.path.join(schemas, "db", f"{table}.json"), "w") as out:
        json.dump({"fields": [{"name": n, "type": t} for n, t in fields]}, out)


def create(name, prefix, conversion=None, **extra):
    dest = {
        "RoleARN": "arn:aws:iam::000000000000:role/r",
        "BucketARN": "arn:aws:s3:::lake",
        "Prefix": f"{prefix}/",
        "ErrorOutputPrefix": f"{prefix}-errors/!{{firehose:error-output-type}}/",
        "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 0},
    }
    if conversion is not None:
        dest["DataFormatConversionConfiguration"] = conversion
    dest.update(extra)
    f.create_delivery_stream(DeliveryStreamName=name, ExtendedS3DestinationConfiguration=dest)


def conversion(table, deserializer=None, serializer=None):
    c = {
        "Enabled": True,
        "SchemaConfiguration": {"DatabaseName": "db", "TableName": table, "RoleARN": "arn:aws:iam::000000000000:role/r"},
        "OutputFormatConfiguration": {"Serializer": serializer or {"ParquetSerDe": {}}},
    }
    c["InputFormatConfiguration"] = {"Deserializer": deserializer or {"OpenXJsonSerDe": {}}}
    return c


def put(name, records):
    for i in range(0, len(records), 500):
        out = f.put_record_batch(DeliveryStreamName=name, Records=[{"Data": r} for r in records[i : i + 500]])
        assert out["FailedPutCount"] == 0, out


def objects(prefix, want=1, timeout=20):
    """Files under the lake's prefix, once at least `want` exist."""
    deadline = time.time() + timeout
    while True:
        files = sorted(p for p in glob.glob(os.path.join(lake, "lake", prefix, "**"), recursive=True) if os.path.isfile(p))
        if len(files) >= want or time.time() > deadline:
            return files
        time.sleep(0.1)


def rows(prefix, want_rows):
    deadline = time.time() + 20
    while True:
        got = []
        for p in objects(prefix, 1, 0.1):
            if p.endswith(".parquet"):
                got.extend(pq.read_table(p).to_pylist())
            elif p.endswith(".orc"):
                got.extend(orc.read_table(p).to_pylist())
        if len(got) >= want_rows or time.time() > deadline:
            return got
        time.sleep(0.1)


def errors(prefix, kind, want):
    deadline = time.time() + 20
    while True:
        lines = []
        for p in objects(f"{prefix}-errors/{kind}", 1, 0.1):
            with open(p) as e:
                lines.extend(json.loads(line) for line in e if line.strip())
        if len(lines) >= want or time.time() > deadline:
            return lines
        time.sleep(0.1)


def utc(*args):
    return datetime.datetime(*args, tzinfo=datetime.timezone.utc)


# OpenX: keys match columns without case; epoch seconds, floating seconds and millis read as
# such; two JSON documents in a record are two rows; 11.7 into an int fails alone.
schema("openx", [("id", "int"), ("name", "string"), ("t", "timestamp")])
create("conv-openx", "openx", conversion("openx"))
put("conv-openx", [
    b'{"ID":3,"Name":"x","T":1704164645}',
    b'{"id":4,"name":"y","t":1704164645.123}{"id":5,"t":1704164645123}',
    b'{"id":11.7,"name":"bad"}',
])
got = sorted(rows("openx", 3), key=lambda r: r["id"])
check("case-insensitive keys", [(r["id"], r["name"]) for r in got], [(3, "x"), (4, "y"), (5, None)])
check("epoch seconds, fractions, millis", [r["t"] for r in got],
      [utc(2024, 1, 2, 3, 4, 5), utc(2024, 1, 2, 3, 4, 5, 123000), utc(2024, 1, 2, 3, 4, 5, 123000)])
bad = errors("openx", "format-conversion-failed", 1)
check("11.7 into int fails alone", [(e["lastErrorCode"], base64.b64decode(e["rawData"])) for e in bad],
      [("DataFormatConversion.MalformedData", b'{"id":11.7,"name":"bad"}')])

# Dots to underscores and column-to-key mappings.
schema("dots", [("a_b", "bigint"), ("ts", "string")])
create("conv-dots", "dots", conversion("dots", {"OpenXJsonSerDe": {
    "ConvertDotsInJsonKeysToUnderscores": True, "ColumnToJsonKeyMappings": {"ts": "timestamp"}}}))
put("conv-dots", [b'{"a.b":7,"timestamp":"now"}'])
check("dots and mappings", rows("dots", 1), [{"a_b": 7, "ts": "now"}])

# Glue's nested types and decimal.
schema("nested", [("price", "decimal(8,2)"), ("geo", "struct<lat:double,lon:double>"), ("tags", "array<string>"),
                  ("attrs", "map<string,int>"), ("day", "date")])
create("conv-nested", "nested", conversion("nested"))
put("conv-nested", [b'{"price":"19.999","geo":{"Lat":52.5,"lon":13.4},"tags":["a","b"],"attrs":{"clicks":3},"day":"2024-01-02"}'])
got = rows("nested", 1)
check("nested and decimal", [(str(r["price"]), r["geo"], r["tags"], dict(r["attrs"]), r["day"].isoformat()) for r in got],
      [("20.00", {"lat": 52.5, "lon": 13.4}, ["a", "b"], {"clicks": 3}, "2024-01-02")])

# Hive SerDe with TimestampFormats.
schema("hive", [("t", "timestamp")])
create("conv-hive", "hive", conversion("hive", {"HiveJsonSerDe": {"TimestampFormats": ["dd/MM/yyyy HH:mm:ss", "millis"]}}))
put("conv-hive", [b'{"t":"07/02/2017 15:13:01"}', b'{"t":1486480381500}'])
check("hive timestamp formats", sorted(r["t"] for r in rows("hive", 2)),
      [utc(2017, 2, 7, 15, 13, 1), utc(2017, 2, 7, 15, 13, 1, 500000)])

# ORC output: every scalar column type, nulls, OpenX rules, a bad record failing alone; read back
# by pyarrow's ORC reader (the Apache ORC C++ library). Settings and columns the writer cannot
# honour are refused at creation.
schema("orc", [("id", "bigint"), ("n", "int"), ("s", "smallint"), ("t", "tinyint"), ("v", "double"),
               ("f", "float"), ("ok", "boolean"), ("name", "varchar(8)")])
create("conv-orc", "orc", conversion("orc", serializer={"OrcSerDe": {"StripeSizeBytes": 8 << 20, "Compression": "NONE"}}))
put("conv-orc", [
    b'{"ID":1,"n":-7,"s":300,"t":-5,"v":2.5,"f":0.5,"ok":true,"Name":"a"}',
    b'{"id":2,"name":null}{"id":3,"v":1e300,"ok":false}',
    b'{"id":4,"t":300}',
])
got = sorted(rows("orc", 3), key=lambda r: r["id"])
check("orc values", [tuple(r.values()) for r in got], [
    (1, -7, 300, -5, 2.5, 0.5, True, "a"),
    (2, None, None, None, None, None, None, None),
    (3, None, None, None, 1e300, None, False, None),
])
check("orc extension", sorted({os.path.splitext(p)[1] for p in objects("orc/")}), [".orc"])
bad = errors("orc", "format-conversion-failed", 1)
check("orc: 300 into tinyint fails alone", [base64.b64decode(e["rawData"]) for e in bad], [b'{"id":4,"t":300}'])
shown = f.describe_delivery_stream(DeliveryStreamName="conv-orc")["DeliveryStreamDescription"]["Destinations"][0]
check("orc settings shown back", shown["ExtendedS3DestinationDescription"]["DataFormatConversionConfiguration"]
      ["OutputFormatConfiguration"]["Serializer"], {"OrcSerDe": {"StripeSizeBytes": 8 << 20, "Compression": "NONE"}})
schema("orc-ts", [("t", "timestamp")])
for name, serializer, table in [("snappy", {"OrcSerDe": {"Compression": "SNAPPY"}}, "orc"),
                                ("bloom", {"OrcSerDe": {"BloomFilterColumns": ["id"]}}, "orc"),
                                ("timestamp", {"OrcSerDe": {}}, "orc-ts")]:
    try:
        create(f"conv-orc-{name}", f"orc-{name}", conversion(table, serializer=serializer))
        refused = None
    except botocore.exceptions.ClientError as e:
        refused = e.response["Error"]["Code"]
    check(f"orc {name} refused", refused, "InvalidArgumentException")

# Raw objects: ZIP, Snappy (framed), HADOOP_SNAPPY, each with AWS's extension.
for fmt, ext in [("ZIP", ".zip"), ("Snappy", ".snappy"), ("HADOOP_SNAPPY", ".hsnappy")]:
    name = f"conv-{fmt.lower().replace('_', '-')}"
    create(name, name, CompressionFormat=fmt)
    put(name, [b"one\n", b"two\n"])
    found = objects(name)
    data = open(found[0], "rb").read() if found else b""
    if fmt == "ZIP":
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            text = z.read(z.namelist()[0])
    elif fmt == "Snappy":
        text = bytes(cramjam.snappy.decompress(data))
    else:
        text, at = b"", 0
        while at < len(data):
            n, c = int.from_bytes(data[at:at + 4], "big"), int.from_bytes(data[at + 4:at + 8], "big")
            text += bytes(cramjam.snappy.decompress_raw(data[at + 8:at + 8 + c]))
            at += 8 + c
    check(f"{fmt} object", (os.path.splitext(found[0])[1] if found else None, text), (ext, b"one\ntwo\n"))

# AppendDelimiterToRecord's Delimiter (base64) and RecordDeAggregation (JSON).
processing = {"Enabled": True, "Processors": [
    {"Type": "RecordDeAggregation", "Parameters": [{"ParameterName": "SubRecordType", "ParameterValue": "JSON"}]},
    {"Type": "AppendDelimiterToRecord", "Parameters": [{"ParameterName": "Delimiter", "ParameterValue": base64.b64encode(b";").decode()}]},
]}
create("conv-deagg", "deagg", ProcessingConfiguration=processing)
put("conv-deagg", [b'{"a":1}{"a":2}', b'{"a":3}'])
found = objects("deagg")
check("deaggregation and delimiter", open(found[0], "rb").read() if found else None, b'{"a":1};{"a":2};{"a":3};')

# 600 partitions in one buffer: 500 objects, the other 100 records in the error prefix.
create("conv-parts", "parts", Prefix="parts/!{partitionKeyFromQuery:k}/",
       DynamicPartitioningConfiguration={"Enabled": True},
       BufferingHints={"SizeInMBs": 64, "IntervalInSeconds": 0},
       ProcessingConfiguration={"Enabled": True, "Processors": [{"Type": "MetadataExtraction", "Parameters": [
           {"ParameterName": "MetadataExtractionQuery", "ParameterValue": "{k: .k}"},
           {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"}]}]})
put("conv-parts", [json.dumps({"k": f"p{i}"}).encode() for i in range(600)])
limit = errors("parts", "processing-failed", 100)
check("500 active partitions", (len(objects("parts/", 500)), {e["errorCode"] for e in limit}, len(limit)),
      (500, {"DynamicPartitioning.ActivePartitionsLimitExceeded"}, 100))

print(f"conversion: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
