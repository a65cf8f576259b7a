"""boto3 (PyPI) against a running Sluice: create / put / read back exactly once / split /
delete, typed errors, validation messages, the Firehose client and STS. Usage: boto3_kinesis.py <endpoint> <key> <secret>.
Exits 0 when every check held."""
import sys
import time

import boto3
from botocore.config import Config

endpoint, key, secret = sys.argv[1:4]
session = boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=secret, region_name="us-east-1")
config = Config(retries={"max_attempts": 1})
k = session.client("kinesis", endpoint_url=endpoint, config=config)
stream = f"boto3-{int(time.time() * 1000)}"

k.create_stream(StreamName=stream, ShardCount=2)
k.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
sent = [f"record-{i}".encode() for i in range(20)]
out = k.put_records(StreamName=stream, Records=[{"Data": d, "PartitionKey": f"key-{i}"} for i, d in enumerate(sent)])
assert out["FailedRecordCount"] == 0, out
single = k.put_record(StreamName=stream, Data=b"single", PartitionKey="p")
assert single["SequenceNumber"].isdigit(), single

got = []
shards = k.list_shards(StreamName=stream)["Shards"]
assert len(shards) == 2, shards
for shard in shards:
    it = k.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = k.get_records(ShardIterator=it)["Records"]
    for r in records:
        assert hasattr(r["ApproximateArrivalTimestamp"], "year"), r
        got.append(r["Data"])
assert sorted(got) == sorted(sent + [b"single"]), got

first = shards[0]
mid = (int(first["HashKeyRange"]["StartingHashKey"]) + int(first["HashKeyRange"]["EndingHashKey"])) // 2
k.split_shard(StreamName=stream, ShardToSplit=first["ShardId"], NewStartingHashKey=str(mid))
k.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
assert len(k.list_shards(StreamName=stream)["Shards"]) == 4

try:
    k.describe_stream(StreamName="no-such-stream")
    raise AssertionError("a missing stream must be an error")
except k.exceptions.ResourceNotFoundException:
    pass
k.delete_stream(StreamName=stream)

f = session.client("firehose", endpoint_url=endpoint, config=config)
assert isinstance(f.list_delivery_streams()["DeliveryStreamNames"], list)

# STS on the same port: the identity of the signing key.
identity = session.client("sts", endpoint_url=endpoint, config=config).get_caller_identity()
assert identity["Account"] == "000000000000" and identity["Arn"].endswith(f"user/{key}"), identity

# AWS's validation text (botocore checks lengths and ranges itself, not patterns).
try:
    k.create_stream(StreamName="bad name", ShardCount=1)
    raise AssertionError("an invalid request must be an error")
except k.exceptions.ClientError as e:
    assert e.response["Error"]["Code"] == "ValidationException", e.response
    assert e.response["Error"]["Message"] == (
        "1 validation error detected: Value 'bad name' at 'streamName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
    ), e.response
print("boto3: ok")
