"""Amazon SQS through boto3 against a running Sluice (AWS JSON 1.0, SigV4 for `sqs`).

Covers: every operation of the installed botocore's SQS model is served (an operation AWS
adds makes this fail until Sluice serves it); queues and URLs, attributes and their errors,
sends with message attributes and the MD5s AWS computes (checked against this file's own
implementation of AWS's documented digest), receives, visibility timeouts, deletes, batches
and their per-entry failures, delays, long polling woken by a send, dead-letter queues and
their redrive by StartMessageMoveTask, purges, tags, permissions, FIFO order, one group in
flight at a time and deduplication, and the error codes and exception classes boto3 shows
(from the `x-amzn-query-error` header).

Usage: sqs.py <endpoint> <key> <secret>. Prints "sqs: N passed, M failed"."""
import hashlib
import struct
import sys
import threading
import time
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

endpoint, key, secret = sys.argv[1:4]
session = boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=secret, region_name="us-east-1")
sqs = session.client("sqs", endpoint_url=endpoint, config=Config(retries={"max_attempts": 1}, read_timeout=30))
passed, failed = 0, 0
suffix = str(int(time.time() * 1000))


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"sqs {name}: {detail}", flush=True)


def error_of(call, **kwargs):
    """(code, exception class name, HTTP status, message) of a call that must fail."""
    try:
        call(**kwargs)
    except ClientError as e:
        err = e.response["Error"]
        return err.get("Code"), type(e).__name__, e.response["ResponseMetadata"]["HTTPStatusCode"], err.get("Message")
    return None, None, 200, None


def attributes_md5(attributes):
    """AWS's documented MD5 of message attributes."""
    out = b""
    for name in sorted(attributes):
        v = attributes[name]
        out += struct.pack(">I", len(name.encode())) + name.encode()
        out += struct.pack(">I", len(v["DataType"].encode())) + v["DataType"].encode()
        if "BinaryValue" in v:
            out += b"\x02" + struct.pack(">I", len(v["BinaryValue"])) + v["BinaryValue"]
        else:
            out += b"\x01" + struct.pack(">I", len(v["StringValue"].encode())) + v["StringValue"].encode()
    return hashlib.md5(out).hexdigest()


def url_of(name, **attributes):
    return sqs.create_queue(QueueName=name, Attributes={k: str(v) for k, v in attributes.items()})["QueueUrl"]


def arn_of(url):
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def receive(url, n=10, wait=0, **kw):
    return sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=n, WaitTimeSeconds=wait, **kw).get("Messages", [])


# --- Queues -------------------------------------------------------------------------------
name = f"orders-{suffix}"
url = url_of(name, VisibilityTimeout=2)
check("queue url", url.endswith(f"/000000000000/{name}"), url)
check("get url", sqs.get_queue_url(QueueName=name)["QueueUrl"] == url)
check("create again, same attributes", url_of(name, VisibilityTimeout=2) == url)
code, cls, status, msg = error_of(sqs.create_queue, QueueName=name, Attributes={"VisibilityTimeout": "5"})
check("create again, other attributes", (code, cls) == ("QueueAlreadyExists", "QueueNameExists"), (code, cls, msg))
code, cls, status, _ = error_of(sqs.create_queue, QueueName="bad name!")
check("bad queue name", (code, status) == ("InvalidParameterValue", 400), (code, cls, status))
code, cls, status, msg = error_of(sqs.get_queue_url, QueueName=f"none-{suffix}")
check(
    "missing queue",
    (code, cls, status, msg) == ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", 400, "The specified queue does not exist."),
    (code, cls, status, msg),
)
listed = sqs.list_queues(QueueNamePrefix=f"orders-{suffix}").get("QueueUrls", [])
check("list by prefix", listed == [url], listed)
attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
want = {"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed", "ApproximateNumberOfMessagesNotVisible",
        "CreatedTimestamp", "LastModifiedTimestamp", "DelaySeconds", "MaximumMessageSize", "MessageRetentionPeriod",
        "QueueArn", "ReceiveMessageWaitTimeSeconds", "SqsManagedSseEnabled", "VisibilityTimeout"}
check("attributes of a standard queue", set(attrs) == want and attrs["VisibilityTimeout"] == "2"
      and attrs["MaximumMessageSize"] == "1048576" and attrs["QueueArn"] == f"arn:aws:sqs:us-east-1:000000000000:{name}", attrs)
code, cls, _, msg = error_of(sqs.set_queue_attributes, QueueUrl=url, Attributes={"VisibilityTimeout": "43201"})
check("attribute out of range", (code, msg) == ("InvalidAttributeValue", "Invalid value for the parameter VisibilityTimeout."), (code, msg))
code, cls, _, _ = error_of(sqs.set_queue_attributes, QueueUrl=url, Attributes={"Colour": "red"})
check("unknown attribute", code == "InvalidAttributeName", code)

# --- Send, receive, visibility, delete ------------------------------------------------------
message_attributes = {
    "city": {"DataType": "String", "StringValue": "Beijing"},
    "pm25": {"DataType": "Number", "StringValue": "42.5"},
    "raw": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xff"},
}
sent = sqs.send_message(QueueUrl=url, MessageBody="hello ✓", MessageAttributes=message_attributes)
check("MD5 of body", sent["MD5OfMessageBody"] == hashlib.md5("hello ✓".encode()).hexdigest(), sent)
check("MD5 of attributes", sent.get("MD5OfMessageAttributes") == attributes_md5(message_attributes), sent)
got = receive(url, MessageAttributeNames=["All"], MessageSystemAttributeNames=["All"])
m = got[0] if got else {}
check("received", m.get("Body") == "hello ✓" and m.get("MessageId") == sent["MessageId"], got)
check("received attributes", m.get("MessageAttributes") == message_attributes
      and m.get("MD5OfMessageAttributes") == sent.get("MD5OfMessageAttributes"), m)
system = m.get("Attributes", {})
check("system attributes", system.get("ApproximateReceiveCount") == "1" and system.get("SenderId") == key
      and abs(int(system.get("SentTimestamp", "0")) - time.time() * 1000) < 60_000, system)
only_city = receive(url, MessageAttributeNames=["ci.*", "city"])
check("in flight: not received again", only_city == [], only_city)
time.sleep(2.2)
again = receive(url, MessageAttributeNames=["city"], AttributeNames=["ApproximateReceiveCount"])
a = again[0] if again else {}
check("visible again after the timeout", a.get("Attributes", {}).get("ApproximateReceiveCount") == "2"
      and list(a.get("MessageAttributes", {})) == ["city"]
      and a.get("MD5OfMessageAttributes") == attributes_md5({"city": message_attributes["city"]}), again)
sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=a["ReceiptHandle"], VisibilityTimeout=0)
third = receive(url)
check("visibility changed to 0", len(third) == 1, third)
sqs.delete_message(QueueUrl=url, ReceiptHandle=third[0]["ReceiptHandle"])
sqs.delete_message(QueueUrl=url, ReceiptHandle=a["ReceiptHandle"])  # an earlier handle: no error
code, cls, status, _ = error_of(sqs.delete_message, QueueUrl=url, ReceiptHandle="garbage")
check("garbage receipt handle", (code, cls) == ("ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid"), (code, cls, status))
code, _, _, msg = error_of(sqs.change_message_visibility, QueueUrl=url, ReceiptHandle=third[0]["ReceiptHandle"], VisibilityTimeout=5)
check("visibility of a deleted message", code == "InvalidParameterValue", (code, msg))
time.sleep(2.2)
check("deleted for good", receive(url) == [])

# --- Batches ----------------------------------------------------------------------------------
entries = [{"Id": f"m{i}", "MessageBody": f"body {i}"} for i in range(9)] + [{"Id": "bad", "MessageBody": "a\x01b"}]
out = sqs.send_message_batch(QueueUrl=url, Entries=entries)
check("batch: 9 sent", sorted(e["Id"] for e in out["Successful"]) == sorted(f"m{i}" for i in range(9)), out)
check("batch: bad body fails alone", [(f["Id"], f["Code"], f["SenderFault"]) for f in out.get("Failed", [])]
      == [("bad", "InvalidMessageContents", True)], out.get("Failed"))
code, _, _, _ = error_of(sqs.send_message_batch, QueueUrl=url, Entries=[{"Id": f"x{i}", "MessageBody": "x"} for i in range(11)])
check("batch: 11 entries", code == "AWS.SimpleQueueService.TooManyEntriesInBatchRequest", code)
code, cls, _, _ = error_of(sqs.send_message_batch, QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "x"}] * 2)
check("batch: repeated ids", cls == "BatchEntryIdsNotDistinct", (code, cls))
bodies, handles = set(), []
for _ in range(5):
    for m in receive(url, n=10):
        bodies.add(m["Body"])
        handles.append(m["ReceiptHandle"])
check("batch: all received once", bodies == {f"body {i}" for i in range(9)} and len(handles) == 9, (bodies, len(handles)))
vis = sqs.change_message_visibility_batch(QueueUrl=url, Entries=[{"Id": "v0", "ReceiptHandle": handles[0], "VisibilityTimeout": 60},
                                                                  {"Id": "v1", "ReceiptHandle": "garbage", "VisibilityTimeout": 1}])
check("visibility batch", [e["Id"] for e in vis["Successful"]] == ["v0"] and [f["Id"] for f in vis["Failed"]] == ["v1"], vis)
deleted = sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": f"d{i}", "ReceiptHandle": h} for i, h in enumerate(handles)])
check("delete batch", len(deleted["Successful"]) == 9 and not deleted.get("Failed"), deleted)
counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
check("empty after deletes", counts == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}, counts)

# --- Delays and long polling ------------------------------------------------------------------
sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=2)
delayed = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesDelayed"])["Attributes"]
check("delayed counted", delayed.get("ApproximateNumberOfMessagesDelayed") == "1", delayed)
metrics = urllib.request.urlopen(f"{endpoint}/metrics").read().decode()
check("metrics with CloudWatch's names", f'sluice_sqs_approximate_number_of_messages_delayed{{queue="{name}"}} 1' in metrics
      and f'sluice_sqs_approximate_number_of_messages_visible{{queue="{name}"}} 0' in metrics,
      [l for l in metrics.splitlines() if name in l])
check("delayed not received", receive(url) == [])
started = time.monotonic()
late = receive(url, wait=10)
took = time.monotonic() - started
check("delayed received when due", [m["Body"] for m in late] == ["later"] and 0.5 < took < 8, (late, took))
sqs.delete_message(QueueUrl=url, ReceiptHandle=late[0]["ReceiptHandle"])
threading.Timer(1.0, lambda: sqs.send_message(QueueUrl=url, MessageBody="wake")).start()
started = time.monotonic()
woken = receive(url, wait=15)
took = time.monotonic() - started
check("long poll woken by a send", [m["Body"] for m in woken] == ["wake"] and took < 8, (woken, took))
empty_started = time.monotonic()
check("long poll ends empty", receive(url, wait=1) == [] and time.monotonic() - empty_started >= 0.9)

# --- Dead letters and redrive --------------------------------------------------------------------
dlq = url_of(f"orders-dlq-{suffix}")
src = url_of(f"orders-src-{suffix}", VisibilityTimeout=0,
             RedrivePolicy=f'{{"deadLetterTargetArn":"{arn_of(dlq)}","maxReceiveCount":"2"}}')
sqs.send_message(QueueUrl=src, MessageBody="poison")
seen = [len(receive(src)) for _ in range(3)]
check("dead-lettered after maxReceiveCount", seen == [1, 1, 0], seen)
dead = receive(dlq, MessageSystemAttributeNames=["DeadLetterQueueSourceArn"])
check("in the dead-letter queue", [m["Body"] for m in dead] == ["poison"]
      and dead[0]["Attributes"]["DeadLetterQueueSourceArn"] == arn_of(src), dead)
sources = sqs.list_dead_letter_source_queues(QueueUrl=dlq)["queueUrls"]
check("dead-letter sources", sources == [src], sources)
sqs.change_message_visibility(QueueUrl=dlq, ReceiptHandle=dead[0]["ReceiptHandle"], VisibilityTimeout=0)
code, _, _, msg = error_of(sqs.start_message_move_task, SourceArn=arn_of(src))
check("move task needs a dead-letter queue", code == "InvalidParameterValue", (code, msg))
task = sqs.start_message_move_task(SourceArn=arn_of(dlq))["TaskHandle"]
status = None
for _ in range(50):
    tasks = sqs.list_message_move_tasks(SourceArn=arn_of(dlq))["Results"]
    status = tasks[0]["Status"]
    if status != "RUNNING":
        break
    time.sleep(0.2)
check("move task completed", status == "COMPLETED" and tasks[0]["ApproximateNumberOfMessagesMoved"] == 1, tasks)
back = receive(src)
check("moved back to its source", [m["Body"] for m in back] == ["poison"], back)
code, cls, status, _ = error_of(sqs.cancel_message_move_task, TaskHandle=task)
check("cancel a finished task", (cls, status) == ("ResourceNotFoundException", 404), (code, cls, status))

# --- Purge, tags, permissions ---------------------------------------------------------------------
sqs.send_message(QueueUrl=dlq, MessageBody="purge me")
sqs.purge_queue(QueueUrl=dlq)
check("purged", receive(dlq) == [])
code, cls, status, _ = error_of(sqs.purge_queue, QueueUrl=dlq)
check("purge twice in a minute", (code, status) == ("AWS.SimpleQueueService.PurgeQueueInProgress", 403), (code, cls, status))
sqs.tag_queue(QueueUrl=url, Tags={"team": "data", "env": "test"})
sqs.untag_queue(QueueUrl=url, TagKeys=["env"])
tags = sqs.list_queue_tags(QueueUrl=url).get("Tags")
check("tags", tags == {"team": "data"}, tags)
sqs.add_permission(QueueUrl=url, Label="readers", AWSAccountIds=["111122223333"], Actions=["ReceiveMessage"])
policy = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"].get("Policy", "")
check("permission in the policy", '"Sid":"readers"' in policy and "SQS:ReceiveMessage" in policy, policy)
sqs.remove_permission(QueueUrl=url, Label="readers")
left = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"]).get("Attributes", {})
check("permission removed", "Policy" not in left, left)

# --- FIFO --------------------------------------------------------------------------------------------
fifo = url_of(f"jobs-{suffix}.fifo", FifoQueue="true", ContentBasedDeduplication="true", VisibilityTimeout=30)
code, _, _, _ = error_of(sqs.send_message, QueueUrl=fifo, MessageBody="x")
check("FIFO needs a group", code == "MissingParameter", code)
firsts = [sqs.send_message(QueueUrl=fifo, MessageBody=b, MessageGroupId=g) for g, b in [("A", "a1"), ("A", "a2"), ("B", "b1"), ("A", "a3")]]
dup = sqs.send_message(QueueUrl=fifo, MessageBody="a1", MessageGroupId="A")
check("deduplicated", dup["MessageId"] == firsts[0]["MessageId"] and dup["SequenceNumber"] == firsts[0]["SequenceNumber"], dup)
seqs = [int(s["SequenceNumber"]) for s in firsts]
check("sequence numbers increase", seqs == sorted(seqs) and len(set(seqs)) == 4, seqs)
one = receive(fifo, n=1)
check("FIFO first", [m["Body"] for m in one] == ["a1"], one)
other = receive(fifo, n=10)
check("group A waits while a1 is in flight", [m["Body"] for m in other] == ["b1"], other)
check("nothing else while both groups are busy", receive(fifo, n=10) == [])
sqs.delete_message(QueueUrl=fifo, ReceiptHandle=one[0]["ReceiptHandle"])
rest = receive(fifo, n=10, MessageSystemAttributeNames=["MessageGroupId", "SequenceNumber"])
check("group A in order", [m["Body"] for m in rest] == ["a2", "a3"]
      and all(m["Attributes"]["MessageGroupId"] == "A" for m in rest), rest)
code, _, _, _ = error_of(sqs.send_message, QueueUrl=fifo, MessageBody="x", MessageGroupId="A", DelaySeconds=5)
check("FIFO refuses a message delay", code == "InvalidParameterValue", code)
zero = sqs.send_message(QueueUrl=fifo, MessageBody="no delay", MessageGroupId="Z", DelaySeconds=0)
check("FIFO takes DelaySeconds 0", "MessageId" in zero, zero)
first_try = receive(fifo, n=10, ReceiveRequestAttemptId="try-1")
retried = receive(fifo, n=10, ReceiveRequestAttemptId="try-1")
check("a retried receive gets the same messages", first_try and [m["ReceiptHandle"] for m in retried] == [m["ReceiptHandle"] for m in first_try],
      (first_try, retried))

# --- FIFO under concurrent producers and consumers ---------------------------------------------
# 4 producers, 2 groups each, 100 messages per group in order, each message sent twice (the
# second time by another producer, as a retry would) with the same deduplication id; 3
# consumers receive and delete. Each message must arrive exactly once, each group in order.
cfifo = url_of(f"conc-{suffix}.fifo", FifoQueue="true", VisibilityTimeout=30)
PER_GROUP = 100


def produce(p):
    c = session.client("sqs", endpoint_url=endpoint, config=Config(retries={"max_attempts": 1}))
    for n in range(PER_GROUP):
        for g in (f"g{p}a", f"g{p}b"):
            c.send_message(QueueUrl=cfifo, MessageBody=f"{g}:{n}", MessageGroupId=g, MessageDeduplicationId=f"{g}-{n}")
    # The retries, from another producer's group pair, after the first sends.
    other = (p + 1) % 4
    for n in range(PER_GROUP):
        for g in (f"g{other}a", f"g{other}b"):
            c.send_message(QueueUrl=cfifo, MessageBody=f"{g}:{n}", MessageGroupId=g, MessageDeduplicationId=f"{g}-{n}")


seen, seen_lock = [], threading.Lock()
done = threading.Event()


def consume():
    c = session.client("sqs", endpoint_url=endpoint, config=Config(retries={"max_attempts": 1}))
    while not done.is_set():
        got = c.receive_message(QueueUrl=cfifo, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        at = time.monotonic()
        with seen_lock:
            seen.extend((at, i, m["Body"]) for i, m in enumerate(got))
        for m in got:
            c.delete_message(QueueUrl=cfifo, ReceiptHandle=m["ReceiptHandle"])


producers = [threading.Thread(target=produce, args=(p,)) for p in range(4)]
consumers = [threading.Thread(target=consume) for _ in range(3)]
for t in producers + consumers:
    t.start()
for t in producers:
    t.join()
wait_until = time.monotonic() + 60
while time.monotonic() < wait_until and len(seen) < 8 * PER_GROUP:
    time.sleep(0.2)
time.sleep(1.5)
done.set()
for t in consumers:
    t.join()
bodies = [b for _, _, b in seen]
check("FIFO: each message once under concurrent producers", sorted(bodies) == sorted(f"g{p}{x}:{n}" for p in range(4) for x in "ab" for n in range(PER_GROUP)),
      f"{len(bodies)} received, {len(set(bodies))} distinct")
in_order = True
for g in {b.split(":")[0] for b in bodies}:
    ns = [int(b.split(":")[1]) for _, _, b in sorted(seen) if b.split(":")[0] == g]
    in_order &= ns == sorted(ns)
check("FIFO: each group in order across consumers", in_order)

# --- An earlier receipt handle still deletes (standard queue), own DLQ refused, bad task handle
old_url = url_of(f"handles-{suffix}", VisibilityTimeout=1)
sqs.send_message(QueueUrl=old_url, MessageBody="twice")
first = receive(old_url)
time.sleep(1.2)
second = receive(old_url)
sqs.delete_message(QueueUrl=old_url, ReceiptHandle=first[0]["ReceiptHandle"])
time.sleep(1.2)
check("an earlier handle deletes", len(second) == 1 and receive(old_url) == [], second)
code, _, _, msg = error_of(sqs.set_queue_attributes, QueueUrl=old_url, Attributes={
    "RedrivePolicy": f'{{"deadLetterTargetArn":"{arn_of(old_url)}","maxReceiveCount":"1"}}'})
check("a queue is not its own dead-letter queue", code == "InvalidParameterValue", (code, msg))
code, _, status, msg = error_of(sqs.cancel_message_move_task, TaskHandle="garbage")
check("undecodable task handle", (code, msg) == ("InvalidParameterValue", "Value for parameter TaskHandle is invalid."), (code, status, msg))

# --- Every operation of botocore's model is served ----------------------------------------------------
model = sqs.meta.service_model
junk = {"string": "x", "integer": 1, "long": 1, "boolean": False, "blob": b"x", "list": [], "map": {}, "structure": {}}
for op_name in model.operation_names:
    op = model.operation_model(op_name)
    params = {}
    for member in op.input_shape.required_members if op.input_shape else []:
        shape = op.input_shape.members[member]
        params[member] = f"{endpoint}/000000000000/none-{suffix}" if member == "QueueUrl" else junk[shape.type_name]
    method = getattr(sqs, sqs.meta.method_to_api_mapping and next(
        m for m, api in sqs.meta.method_to_api_mapping.items() if api == op_name))
    try:
        method(**params)
        code = None
    except ClientError as e:
        code = e.response["Error"]["Code"]
    except Exception as e:  # a parameter botocore refuses before sending: served or not is unknown
        code = f"client-side {type(e).__name__}"
    check(f"{op_name} served", code not in ("InvalidAction", "UnknownOperationException") and not str(code).startswith("client-side"), code)

sqs.delete_queue(QueueUrl=url)
code, _, _, _ = error_of(sqs.get_queue_url, QueueName=name)
check("deleted queue", code == "AWS.SimpleQueueService.NonExistentQueue", code)
code, cls, _, _ = error_of(sqs.create_queue, QueueName=name)
check("not created again within a minute", (code, cls) == ("AWS.SimpleQueueService.QueueDeletedRecently", "QueueDeletedRecently"), (code, cls))

print(f"sqs: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
