"""SQS's older wire protocol (the AWS query protocol: forms and XML) through boto3 1.34.22,
the last boto3 before SQS moved to JSON, against a running Sluice.

Every operation of that boto3's SQS model is served; queues and attributes, sends with
message attributes (the MD5 boto3 checks), batches with a failing entry, receives with
attributes, visibility, deletes, dead letters and a move task, tags, permissions, FIFO, and
an error's code and class. Also a form posted to the queue's own URL without QueueUrl, as
the Java SDK v1 sends it.

Usage: sqs_query.py <endpoint> <key> <secret>. Prints "sqs-query: N passed, M failed"."""
import sys
import time

import boto3
import botocore
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

endpoint, key, secret = sys.argv[1:4]
session = boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=secret, region_name="us-east-1")
sqs = session.client("sqs", endpoint_url=endpoint, config=Config(retries={"max_attempts": 1}))
passed, failed = 0, 0
suffix = str(int(time.time() * 1000))


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"sqs-query {name}: {detail}", flush=True)


check("boto3 speaks the query protocol", sqs.meta.service_model.protocol == "query", sqs.meta.service_model.protocol)
url = sqs.create_queue(QueueName=f"old-{suffix}", Attributes={"VisibilityTimeout": "1"}, tags={"team": "data"})["QueueUrl"]
check("queue url", url.endswith(f"/000000000000/old-{suffix}"), url)
attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
check("attributes", attrs.get("VisibilityTimeout") == "1" and attrs.get("QueueArn", "").endswith(f":old-{suffix}"), attrs)
sent = sqs.send_message(QueueUrl=url, MessageBody="héllo <&>", MessageAttributes={
    "city": {"DataType": "String", "StringValue": "Beijing"}, "raw": {"DataType": "Binary", "BinaryValue": b"\x00\xff"}})
check("send (boto3 checks the MD5s)", "MessageId" in sent, sent)
got = sqs.receive_message(QueueUrl=url, AttributeNames=["All"], MessageAttributeNames=["All"], MaxNumberOfMessages=10).get("Messages", [])
m = got[0] if got else {}
check("receive", m.get("Body") == "héllo <&>" and m.get("MessageAttributes", {}).get("raw", {}).get("BinaryValue") == b"\x00\xff"
      and m.get("Attributes", {}).get("ApproximateReceiveCount") == "1", got)
sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
again = sqs.receive_message(QueueUrl=url).get("Messages", [])
sqs.delete_message(QueueUrl=url, ReceiptHandle=again[0]["ReceiptHandle"])
time.sleep(1.1)
check("visibility and delete", len(again) == 1 and not sqs.receive_message(QueueUrl=url).get("Messages"), again)
batch = sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "one"}, {"Id": "b", "MessageBody": "x\x01"}])
check("batch", [e["Id"] for e in batch.get("Successful", [])] == ["a"]
      and [(f["Id"], f["Code"]) for f in batch.get("Failed", [])] == [("b", "InvalidMessageContents")], batch)
got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
out = sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": "d", "ReceiptHandle": got[0]["ReceiptHandle"]}])
check("delete batch", [e["Id"] for e in out.get("Successful", [])] == ["d"], out)
check("tags", sqs.list_queue_tags(QueueUrl=url).get("Tags") == {"team": "data"})
check("list queues", url in sqs.list_queues(QueueNamePrefix=f"old-{suffix}").get("QueueUrls", []))
try:
    sqs.get_queue_url(QueueName=f"none-{suffix}")
    code, cls = None, None
except ClientError as e:
    code, cls = e.response["Error"]["Code"], type(e).__name__
check("error code and class", (code, cls) == ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"), (code, cls))

dlq = sqs.create_queue(QueueName=f"old-dlq-{suffix}")["QueueUrl"]
dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
src = sqs.create_queue(QueueName=f"old-src-{suffix}", Attributes={
    "VisibilityTimeout": "0", "RedrivePolicy": f'{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"1"}}'})["QueueUrl"]
sqs.send_message(QueueUrl=src, MessageBody="poison")
seen = [len(sqs.receive_message(QueueUrl=src).get("Messages", [])) for _ in range(2)]
dead = sqs.receive_message(QueueUrl=dlq, VisibilityTimeout=0).get("Messages", [])
check("dead-lettered", seen == [1, 0] and [d["Body"] for d in dead] == ["poison"], (seen, dead))
check("dead-letter sources", sqs.list_dead_letter_source_queues(QueueUrl=dlq).get("queueUrls") == [src])
sqs.start_message_move_task(SourceArn=dlq_arn)
status = "RUNNING"
for _ in range(50):
    status = sqs.list_message_move_tasks(SourceArn=dlq_arn)["Results"][0]["Status"]
    if status != "RUNNING":
        break
    time.sleep(0.2)
check("move task", status == "COMPLETED" and [m["Body"] for m in sqs.receive_message(QueueUrl=src).get("Messages", [])] == ["poison"], status)

fifo = sqs.create_queue(QueueName=f"old-{suffix}.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
first = [sqs.send_message(QueueUrl=fifo, MessageBody=b, MessageGroupId="g") for b in ["1", "2", "1"]]
check("FIFO dedup and sequence numbers", first[0]["MessageId"] == first[2]["MessageId"] and first[0]["SequenceNumber"] < first[1]["SequenceNumber"], first)
check("FIFO order", [m["Body"] for m in sqs.receive_message(QueueUrl=fifo, MaxNumberOfMessages=10).get("Messages", [])] == ["1", "2"])

# The Java SDK v1's form: posted to the queue's URL, no QueueUrl member.
request = AWSRequest(method="POST", url=url, data="Action=SendMessage&MessageBody=from+java&Version=2012-11-05",
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
SigV4Auth(Credentials(key, secret), "sqs", "us-east-1").add_auth(request)
import urllib.request
answer = urllib.request.urlopen(urllib.request.Request(url, data=request.body.encode() if isinstance(request.body, str) else request.body,
                                                       headers=dict(request.headers), method="POST")).read().decode()
check("a form posted to the queue's URL", "<SendMessageResponse" in answer and "<MessageId>" in answer, answer)
check("received from it", [m["Body"] for m in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])] == ["from java"])

# Every operation of this boto3's model reaches a served operation.
model = sqs.meta.service_model
junk = {"string": "x", "integer": 1, "long": 1, "boolean": False, "blob": b"x", "list": [], "map": {}, "structure": {}}
methods = {api: m for m, api in sqs.meta.method_to_api_mapping.items()}
for op_name in model.operation_names:
    op = model.operation_model(op_name)
    params = {}
    for member in (op.input_shape.required_members if op.input_shape else []):
        shape = op.input_shape.members[member]
        params[member] = f"{endpoint}/000000000000/none-{suffix}" if member == "QueueUrl" else junk[shape.type_name]
    try:
        getattr(sqs, methods[op_name])(**params)
        code = None
    except ClientError as e:
        code = e.response["Error"]["Code"]
    except botocore.exceptions.ParamValidationError as e:
        code = f"client-side {e}"
    check(f"{op_name} served", code not in ("InvalidAction", "AccessDeniedException") and not str(code).startswith("client-side"), code)
for u in (url, dlq, src, fifo):
    sqs.delete_queue(QueueUrl=u)
print(f"sqs-query: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
