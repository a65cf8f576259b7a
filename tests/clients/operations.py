"""Every operation of botocore's Kinesis and Firehose models, called through boto3 against a
running Sluice, and enhanced fan-out read through boto3's event-stream parser.

The operation list comes from the installed botocore, so an operation AWS adds makes this
fail until Sluice serves it. Every operation must answer with a response boto3 parses
against AWS's output shape.

SubscribeToShard: a stream is split and merged while records go in; a consumer reads the
whole lineage through subscriptions that the server ends after their lifetime, resuming
each time AFTER_SEQUENCE_NUMBER its ContinuationSequenceNumber (the server runs with
`subscription_lifetime_ms = 2000`); every record must arrive
exactly once, in order per partition key.

Usage: operations.py <endpoint> <key> <secret>. Prints "operations: N passed, M failed"."""
import sys
import threading
import time

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError

endpoint, key, secret = sys.argv[1:4]
session = boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=secret, region_name="us-east-1")
config = Config(retries={"max_attempts": 1}, read_timeout=30)
k = session.client("kinesis", endpoint_url=endpoint, config=config)
f = session.client("firehose", endpoint_url=endpoint, config=config)
passed, failed = 0, 0

PENDING = set()


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"operations {name}: {detail}")


suffix = str(int(time.time() * 1000))
stream = f"ops-{suffix}"
arn = f"arn:aws:kinesis:us-east-1:000000000000:stream/{stream}"
k.create_stream(StreamName=stream, ShardCount=2)
k.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 1, "MaxAttempts": 30})


def wait_active():
    for _ in range(100):
        if k.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            return
        time.sleep(0.05)


def consumer_arn(name):
    return k.describe_stream_consumer(StreamARN=arn, ConsumerName=name)["ConsumerDescription"]["ConsumerARN"]


def wait_consumer(name):
    for _ in range(100):
        d = k.describe_stream_consumer(StreamARN=arn, ConsumerName=name)["ConsumerDescription"]
        if d["ConsumerStatus"] == "ACTIVE":
            return d["ConsumerARN"]
        time.sleep(0.05)
    raise AssertionError(f"consumer {name} never ACTIVE")


put = k.put_record(StreamName=stream, Data=b"x", PartitionKey="p")
shard = put["ShardId"]
iterator = lambda: k.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
delivery = f"ops-{suffix}"
s3 = {"RoleARN": "arn:aws:iam::000000000000:role/r", "BucketARN": "arn:aws:s3:::lake", "Prefix": "ops/"}

# Each call in the order it can run; lambdas so that ARNs made by earlier calls are known.
kinesis_calls = [
    ("DescribeLimits", lambda: k.describe_limits()),
    ("DescribeAccountSettings", lambda: k.describe_account_settings()),
    ("UpdateAccountSettings", lambda: k.update_account_settings(MinimumThroughputBillingCommitment={"Status": "ENABLED"})),
    ("ListStreams", lambda: k.list_streams()),
    ("DescribeStream", lambda: k.describe_stream(StreamName=stream)),
    ("DescribeStreamSummary", lambda: k.describe_stream_summary(StreamARN=arn)),
    ("ListShards", lambda: k.list_shards(StreamName=stream)),
    ("PutRecord", lambda: k.put_record(StreamName=stream, Data=b"y", PartitionKey="p")),
    ("PutRecords", lambda: k.put_records(StreamName=stream, Records=[{"Data": b"z", "PartitionKey": "q"}])),
    ("GetShardIterator", lambda: k.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType="LATEST")),
    ("GetRecords", lambda: k.get_records(ShardIterator=iterator())),
    ("AddTagsToStream", lambda: k.add_tags_to_stream(StreamName=stream, Tags={"a": "1"})),
    ("ListTagsForStream", lambda: k.list_tags_for_stream(StreamName=stream)),
    ("RemoveTagsFromStream", lambda: k.remove_tags_from_stream(StreamName=stream, TagKeys=["a"])),
    ("TagResource", lambda: k.tag_resource(ResourceARN=arn, Tags={"b": "2"})),
    ("ListTagsForResource", lambda: k.list_tags_for_resource(ResourceARN=arn)),
    ("UntagResource", lambda: k.untag_resource(ResourceARN=arn, TagKeys=["b"])),
    ("PutResourcePolicy", lambda: k.put_resource_policy(ResourceARN=arn, Policy='{"Version":"2012-10-17","Statement":[]}')),
    ("GetResourcePolicy", lambda: k.get_resource_policy(ResourceARN=arn)),
    ("DeleteResourcePolicy", lambda: k.delete_resource_policy(ResourceARN=arn)),
    ("IncreaseStreamRetentionPeriod", lambda: k.increase_stream_retention_period(StreamName=stream, RetentionPeriodHours=48)),
    ("DecreaseStreamRetentionPeriod", lambda: (wait_active(), k.decrease_stream_retention_period(StreamName=stream, RetentionPeriodHours=24))[1]),
    ("EnableEnhancedMonitoring", lambda: (wait_active(), k.enable_enhanced_monitoring(StreamName=stream, ShardLevelMetrics=["ALL"]))[1]),
    ("DisableEnhancedMonitoring", lambda: (wait_active(), k.disable_enhanced_monitoring(StreamName=stream, ShardLevelMetrics=["IncomingBytes"]))[1]),
    ("StartStreamEncryption", lambda: (wait_active(), k.start_stream_encryption(StreamName=stream, EncryptionType="KMS", KeyId="alias/aws/kinesis"))[1]),
    ("StopStreamEncryption", lambda: (wait_active(), k.stop_stream_encryption(StreamName=stream, EncryptionType="KMS", KeyId="alias/aws/kinesis"))[1]),
    ("UpdateMaxRecordSize", lambda: (wait_active(), k.update_max_record_size(StreamARN=arn, MaxRecordSizeInKiB=2048))[1]),
    ("RegisterStreamConsumer", lambda: k.register_stream_consumer(StreamARN=arn, ConsumerName="ops")),
    ("DescribeStreamConsumer", lambda: k.describe_stream_consumer(StreamARN=arn, ConsumerName="ops")),
    ("ListStreamConsumers", lambda: k.list_stream_consumers(StreamARN=arn)),
    ("SubscribeToShard", lambda: subscribe_once(wait_consumer("ops"))),
    ("DeregisterStreamConsumer", lambda: k.deregister_stream_consumer(StreamARN=arn, ConsumerName="ops")),
    ("SplitShard", lambda: (wait_active(), k.split_shard(StreamName=stream, ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**126)))[1]),
    ("MergeShards", lambda: (wait_active(), k.merge_shards(StreamName=stream, ShardToMerge="shardId-000000000002", AdjacentShardToMerge="shardId-000000000003"))[1]),
    ("UpdateShardCount", lambda: (wait_active(), k.update_shard_count(StreamName=stream, TargetShardCount=2, ScalingType="UNIFORM_SCALING"))[1]),
    ("UpdateStreamMode", lambda: (wait_active(), k.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "ON_DEMAND"}))[1]),
    ("UpdateStreamWarmThroughput", lambda: (wait_active(), k.update_stream_warm_throughput(StreamARN=arn, WarmThroughputMiBps=10))[1]),
    ("UpdateStreamRecordDistributionStrategy", lambda: (wait_active(), k.update_stream_record_distribution_strategy(StreamARN=arn, RecordDistributionStrategy="AUTO"))[1]),
    ("CreateStream", lambda: k.create_stream(StreamName=f"{stream}-2", StreamModeDetails={"StreamMode": "ON_DEMAND"})),
    ("CreateQueue", lambda: (wait_active(), k.create_queue(
        QueueName=queue_name,
        StreamConfigurationList=[{"StreamARN": arn, "StartingPosition": {"Type": "TRIM_HORIZON"}}],
        QueueAttributes={"VisibilityTimeoutSeconds": 1, "DeadLetterConfiguration": {"TargetType": "BUILT_IN", "MaxReceiveCount": 1}}))[1]),
    ("DescribeQueue", lambda: k.describe_queue(QueueARN=queue_arn)),
    ("ListQueues", lambda: k.list_queues()),
    ("UpdateQueue", lambda: k.update_queue(QueueARN=queue_arn, QueueAttributes={"VisibilityTimeoutSeconds": 1})),
    ("ReceiveQueueRecords", lambda: held.update(main=k.receive_queue_records(QueueARN=queue_arn, Limit=2, WaitTimeSeconds=1)["QueueRecords"])),
    ("UpdateQueueRecordsVisibility", lambda: entries_ok(k.update_queue_records_visibility(
        QueueARN=queue_arn, Entries=[{"ReceiptHandle": held["main"][0]["ReceiptHandle"], "VisibilityTimeoutSeconds": 0}]))),
    ("AcknowledgeQueueRecords", lambda: entries_ok(k.acknowledge_queue_records(
        QueueARN=queue_arn, Entries=[{"ReceiptHandle": held["main"][1]["ReceiptHandle"]}]))),
    ("ReceiveDeadLetterQueueRecords", lambda: held.update(dead=dead_letters())),
    ("UpdateDeadLetterQueueRecordsVisibility", lambda: entries_ok(k.update_dead_letter_queue_records_visibility(
        QueueARN=queue_arn, Entries=[{"ReceiptHandle": held["dead"][0]["ReceiptHandle"], "VisibilityTimeoutSeconds": 0}]))),
    ("RestoreDeadLetterQueueRecords", lambda: entries_ok(k.restore_dead_letter_queue_records(
        QueueARN=queue_arn, Entries=[{"ReceiptHandle": dead_letters()[0]["ReceiptHandle"]}]))),
    ("AcknowledgeDeadLetterQueueRecords", lambda: entries_ok(k.acknowledge_dead_letter_queue_records(
        QueueARN=queue_arn, Entries=[{"ReceiptHandle": dead_letters()[0]["ReceiptHandle"]}]))),
    ("DeleteQueue", lambda: k.delete_queue(QueueARN=queue_arn)),
    ("CreateChannel", lambda: held.update(channel=wait_stream_2() and k.create_channel(
        ChannelName=f"ch-{suffix}", ServiceExecutionRoleARN="arn:aws:iam::000000000000:role/channel",
        StreamConfigurationList=[{"StreamARN": f"{arn}-2", "RecordConfiguration": {"RecordFormatType": "JSON"}}],
        S3TablesDestinationConfiguration={
            "DataFreshnessInSeconds": 300,
            "DeadLetterQueueS3Configuration": {"BucketARN": "arn:aws:s3:::lake", "ExpectedBucketOwner": "000000000000"},
            "S3TablesConfigurationList": [{"TableBucketARN": "arn:aws:s3tables:us-east-1:000000000000:bucket/tables",
                                           "Namespace": "ops", "TableName": "events", "CompressionType": "ZSTD"}]})
        ["ChannelDescription"])),
    ("DescribeChannel", lambda: wait_channel()),
    ("ListChannels", lambda: channel_listed(k.list_channels(StreamFilter=[{"StreamARN": f"{arn}-2"}]))),
    ("UpdateChannel", lambda: k.update_channel(ChannelARN=held["channel"]["ChannelARN"],
                                               S3TablesDestinationConfiguration={"DataFreshnessInSeconds": 600})),
    ("DeleteChannel", lambda: (wait_channel(), k.delete_channel(ChannelARN=held["channel"]["ChannelARN"]))[1]),
    ("DeleteStream", lambda: delete_when_channel_gone(f"{stream}-2")),
]
firehose_calls = [
    ("CreateDeliveryStream", lambda: f.create_delivery_stream(DeliveryStreamName=delivery, ExtendedS3DestinationConfiguration=s3)),
    ("DescribeDeliveryStream", lambda: f.describe_delivery_stream(DeliveryStreamName=delivery)),
    ("ListDeliveryStreams", lambda: f.list_delivery_streams()),
    ("PutRecord", lambda: f.put_record(DeliveryStreamName=delivery, Record={"Data": b"a\n"})),
    ("PutRecordBatch", lambda: f.put_record_batch(DeliveryStreamName=delivery, Records=[{"Data": b"b\n"}])),
    ("TagDeliveryStream", lambda: f.tag_delivery_stream(DeliveryStreamName=delivery, Tags=[{"Key": "k", "Value": "v"}])),
    ("ListTagsForDeliveryStream", lambda: f.list_tags_for_delivery_stream(DeliveryStreamName=delivery)),
    ("UntagDeliveryStream", lambda: f.untag_delivery_stream(DeliveryStreamName=delivery, TagKeys=["k"])),
    ("StartDeliveryStreamEncryption", lambda: f.start_delivery_stream_encryption(DeliveryStreamName=delivery, DeliveryStreamEncryptionConfigurationInput={"KeyType": "AWS_OWNED_CMK"})),
    ("StopDeliveryStreamEncryption", lambda: f.stop_delivery_stream_encryption(DeliveryStreamName=delivery)),
    ("UpdateDestination", lambda: f.update_destination(
        DeliveryStreamName=delivery,
        CurrentDeliveryStreamVersionId=f.describe_delivery_stream(DeliveryStreamName=delivery)["DeliveryStreamDescription"]["VersionId"],
        DestinationId="destinationId-000000000001",
        ExtendedS3DestinationUpdate={"Prefix": "ops2/"})),
    ("DeleteDeliveryStream", lambda: f.delete_delivery_stream(DeliveryStreamName=delivery)),
]


queue_name = f"q-{suffix}"
queue_arn = f"arn:aws:kinesis:us-east-1:000000000000:queue/{queue_name}"
held = {}


def wait_stream_2():
    k.get_waiter("stream_exists").wait(StreamName=f"{stream}-2", WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    return True


def wait_channel():
    for _ in range(100):
        d = k.describe_channel(ChannelARN=held["channel"]["ChannelARN"])["ChannelDescription"]
        if d["ChannelStatus"] == "ACTIVE":
            return d
        time.sleep(0.05)
    raise AssertionError("the channel never became ACTIVE")


def channel_listed(out):
    assert [c["ChannelName"] for c in out["ChannelSummaries"]] == [f"ch-{suffix}"], out
    assert out["ChannelSummaries"][0]["ChannelDestinationType"] == "S3_TABLES", out
    return out


def delete_when_channel_gone(name):
    for _ in range(100):
        try:
            return k.delete_stream(StreamName=name)
        except ClientError as e:
            if e.response["Error"]["Code"] != "ResourceInUseException":
                raise
            time.sleep(0.05)
    raise AssertionError("the stream kept its channel")


def entries_ok(out):
    assert len(out["Successful"]) == 1 and not out["Failed"], out
    return out


def dead_letters():
    """The record received once and left unacknowledged goes to the dead-letter area on its
    next receive (MaxReceiveCount 1)."""
    for _ in range(30):
        k.receive_queue_records(QueueARN=queue_arn, Limit=10)
        dead = k.receive_dead_letter_queue_records(QueueARN=queue_arn, Limit=1)["QueueRecords"]
        if dead:
            return dead
        time.sleep(0.2)
    raise AssertionError("no dead letter")


def subscribe_once(consumer):
    """One subscription from TRIM_HORIZON: the records put so far arrive in its first event."""
    out = k.subscribe_to_shard(ConsumerARN=consumer, ShardId=shard, StartingPosition={"Type": "TRIM_HORIZON"})
    for event in out["EventStream"]:
        records = event["SubscribeToShardEvent"]["Records"]
        if records:
            out["EventStream"].close()
            assert records[0]["Data"] == b"x", records[0]
            return out
    raise AssertionError("the subscription ended without records")


def run(service, model_name, calls):
    names = botocore.session.get_session().get_service_model(model_name).operation_names
    known = dict(calls)
    for name in sorted(set(names) - set(known) - PENDING):
        check(f"{service}.{name}", False, "in botocore's model, not called here (not served?)")
    for name, call in calls:
        if name not in names:
            continue
        try:
            call()
            check(f"{service}.{name}", True)
        except (ClientError, AssertionError) as e:
            check(f"{service}.{name}", False, repr(e))


run("kinesis", "kinesis", kinesis_calls)
run("firehose", "firehose", firehose_calls)


def lineage_read():
    """Puts 120 records across a split and a merge; reads them through subscriptions."""
    name = f"fan-{suffix}"
    s_arn = f"arn:aws:kinesis:us-east-1:000000000000:stream/{name}"
    k.create_stream(StreamName=name, ShardCount=1)
    k.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    c = k.register_stream_consumer(StreamARN=s_arn, ConsumerName="reader")["Consumer"]["ConsumerARN"]
    for _ in range(100):
        if k.describe_stream_consumer(ConsumerARN=c)["ConsumerDescription"]["ConsumerStatus"] == "ACTIVE":
            break
        time.sleep(0.05)

    def put(rng):
        for i in rng:
            k.put_record(StreamName=name, Data=f"reading {i}".encode(), PartitionKey=f"device-{i % 7}")

    def settle():
        for _ in range(100):
            if k.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
                return
            time.sleep(0.05)

    put(range(40))
    k.split_shard(StreamName=name, ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**127))
    settle()
    put(range(40, 80))
    k.merge_shards(StreamName=name, ShardToMerge="shardId-000000000001", AdjacentShardToMerge="shardId-000000000002")
    settle()
    # The last 40 records trickle in over about 5 s, so the open shard is read through
    # several subscriptions, each ended by the server after its lifetime.
    def trickle():
        for i in range(80, 120):
            put(range(i, i + 1))
            time.sleep(0.12)

    producer = threading.Thread(target=trickle)
    producer.start()

    got, subscriptions = [], 0
    queue, done = ["shardId-000000000000"], set()
    while queue:
        shard_id = queue.pop(0)
        if shard_id in done:
            continue
        position = {"Type": "TRIM_HORIZON"}
        while True:
            out = k.subscribe_to_shard(ConsumerARN=c, ShardId=shard_id, StartingPosition=position)
            subscriptions += 1
            continuation, children = None, None
            for event in out["EventStream"]:
                e = event["SubscribeToShardEvent"]
                got.extend(r["Data"].decode() for r in e["Records"])
                continuation = e.get("ContinuationSequenceNumber") or continuation
                if e.get("ChildShards"):
                    children = [ch["ShardId"] for ch in e["ChildShards"]]
                if shard_id == "shardId-000000000003" and len(got) >= 120:
                    out["EventStream"].close()
                    break
            if children is not None:
                queue.extend(children)
                break
            if shard_id == "shardId-000000000003" and len(got) >= 120:
                break
            position = {"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": continuation}
            time.sleep(1.0)  # SubscribeToShard: one call per second per consumer and shard
        done.add(shard_id)
    producer.join()
    return got, subscriptions


def dry_runs():
    """DryRun on the data-plane operations: DryRunOperationException when the call would
    succeed, the call's own error when it would not, and nothing written."""
    name = f"dry-{suffix}"
    k.create_stream(StreamName=name, ShardCount=1)
    k.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    first = "shardId-000000000000"

    def code(call):
        try:
            call()
            return "answered"
        except ClientError as e:
            return e.response["Error"]["Code"]

    it = k.get_shard_iterator(StreamName=name, ShardId=first, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    expected = [
        ("PutRecord", lambda: k.put_record(StreamName=name, Data=b"d", PartitionKey="p", DryRun=True), "DryRunOperationException"),
        ("PutRecords", lambda: k.put_records(StreamName=name, Records=[{"Data": b"d", "PartitionKey": "p"}], DryRun=True), "DryRunOperationException"),
        ("GetShardIterator", lambda: k.get_shard_iterator(StreamName=name, ShardId=first, ShardIteratorType="LATEST", DryRun=True), "DryRunOperationException"),
        ("GetRecords", lambda: k.get_records(ShardIterator=it, DryRun=True), "DryRunOperationException"),
        ("PutRecords, no such stream", lambda: k.put_records(StreamName=f"{name}-none", Records=[{"Data": b"d", "PartitionKey": "p"}], DryRun=True), "ResourceNotFoundException"),
        ("GetShardIterator, no such shard", lambda: k.get_shard_iterator(StreamName=name, ShardId="shardId-000000000009", ShardIteratorType="LATEST", DryRun=True), "ResourceNotFoundException"),
    ]
    for what, call, want in expected:
        got = code(call)
        check(f"DryRun {what}", got == want, f"{got}, expected {want}")
    records = k.get_records(ShardIterator=it)["Records"]
    check("DryRun wrote nothing", records == [], f"{len(records)} records")
    k.delete_stream(StreamName=name)


dry_runs()
got, subscriptions = lineage_read()
check("SubscribeToShard exactly once", sorted(got) == sorted(f"reading {i}" for i in range(120)) and len(got) == 120, f"{len(got)} records")
order_ok = True
for d in range(7):
    seq = [int(x.split()[1]) for x in got if int(x.split()[1]) % 7 == d]
    order_ok &= seq == sorted(seq)
check("SubscribeToShard order per partition key", order_ok, "out of order")
check("SubscribeToShard resubscribed after the lifetime", subscriptions > 4, f"{subscriptions} subscriptions")

print(f"operations: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
