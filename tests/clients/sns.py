"""Amazon SNS through boto3 against a running Sluice (the query protocol, SigV4 for `sns`).

Covers: every operation of the installed botocore's SNS model is served, except the SMS and
mobile-push ones, which answer InvalidAction; topics, their attributes, tags, permissions and
errors; fan-out from one topic to three SQS queues with different filter policies (message
attributes, numeric ranges, the message body) and to an HTTP endpoint this script serves,
which confirms its subscription through the SubscribeURL and checks each message's
SHA256withRSA signature against the certificate at SigningCertURL: each subscriber gets
exactly what its policy selects, raw or wrapped; HTTP retries and the subscription's
dead-letter queue; PublishBatch; FIFO topics into FIFO queues, in order and deduplicated.

With a fourth argument, the folder of the server's `[lake]`, a Firehose delivery stream
subscribed to the topic lands the messages there. With a fifth, a folder holding a
certificate and key (`endpoint.pem`, `endpoint.key`, from make_ca.py) whose authority the
server trusts (its SSL_CERT_FILE), an https endpoint is subscribed too.

Usage: sns.py <endpoint> <key> <secret> [lake folder] [certificate folder].
Prints "sns: N passed, M failed"."""
import base64
import http.server
import json
import sys
import threading
import time
import urllib.error
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

endpoint, key, secret = sys.argv[1:4]
lake = sys.argv[4] if len(sys.argv) > 4 else None
certs = sys.argv[5] if len(sys.argv) > 5 else None
session = boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=secret, region_name="us-east-1")
cfg = Config(retries={"max_attempts": 1}, read_timeout=30)
sns = session.client("sns", endpoint_url=endpoint, config=cfg)
sqs = session.client("sqs", endpoint_url=endpoint, config=cfg)
passed, failed = 0, 0
suffix = str(int(time.time() * 1000))


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"sns {name}: {detail}", flush=True)


def error_of(call, **kwargs):
    try:
        call(**kwargs)
    except ClientError as e:
        return e.response["Error"].get("Code"), e.response["ResponseMetadata"]["HTTPStatusCode"]
    return None, 200


def queue(name, **attributes):
    url = sqs.create_queue(QueueName=name, Attributes={k: str(v) for k, v in attributes.items()})["QueueUrl"]
    return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def drain(url, want=None, seconds=5):
    out, until = [], time.monotonic() + seconds
    while time.monotonic() < until:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                  MessageAttributeNames=["All"]).get("Messages", [])
        for m in got:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        out.extend(got)
        if want is not None and len(out) >= want and not got:
            break
    return out


# --- The HTTP endpoint ----------------------------------------------------------------------
received, fail_next = [], {"n": 0}


class Endpoint(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if fail_next["n"] > 0:
            fail_next["n"] -= 1
            self.send_response(500)
            self.end_headers()
            return
        received.append((dict(self.headers), json.loads(body) if self.headers.get("x-amz-sns-rawdelivery") != "true" else body.decode()))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
threading.Thread(target=server.serve_forever, daemon=True).start()
hook = f"http://127.0.0.1:{server.server_address[1]}/hook"


def verified(doc):
    """Whether doc's Signature verifies against the certificate at its SigningCertURL."""
    keys = (["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"] if doc["Type"] == "Notification"
            else ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"])
    text = "".join(f"{k}\n{doc[k]}\n" for k in keys if k in doc).encode()
    cert = x509.load_pem_x509_certificate(urllib.request.urlopen(doc["SigningCertURL"]).read())
    try:
        digest = hashes.SHA256() if doc["SignatureVersion"] == "2" else hashes.SHA1()
        cert.public_key().verify(base64.b64decode(doc["Signature"]), text, padding.PKCS1v15(), digest)
        return True
    except Exception:
        return False


def wait_for(pred, seconds=10):
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        if pred():
            return True
        time.sleep(0.1)
    return False


# --- Topics ---------------------------------------------------------------------------------
topic = sns.create_topic(Name=f"readings-{suffix}", Attributes={"DisplayName": "readings"},
                         Tags=[{"Key": "team", "Value": "data"}])["TopicArn"]
check("topic arn", topic == f"arn:aws:sns:us-east-1:000000000000:readings-{suffix}", topic)
check("create again", sns.create_topic(Name=f"readings-{suffix}", Attributes={"DisplayName": "readings"})["TopicArn"] == topic)
code, status = error_of(sns.create_topic, Name=f"readings-{suffix}", Attributes={"DisplayName": "other"})
check("create again, other attributes", (code, status) == ("InvalidParameter", 400), (code, status))
code, status = error_of(sns.create_topic, Name="bad name!")
check("bad topic name", code == "InvalidParameter", code)
code, status = error_of(sns.get_topic_attributes, TopicArn=topic + "-none")
check("missing topic", (code, status) == ("NotFound", 404), (code, status))
sns.set_topic_attributes(TopicArn=topic, AttributeName="DisplayName", AttributeValue="Beijing readings")
attrs = sns.get_topic_attributes(TopicArn=topic)["Attributes"]
check("topic attributes", attrs["DisplayName"] == "Beijing readings" and attrs["Owner"] == "000000000000"
      and attrs["TopicArn"] == topic and "Policy" in attrs, attrs)
check("listed", topic in [t["TopicArn"] for t in sns.list_topics()["Topics"]])
sns.tag_resource(ResourceArn=topic, Tags=[{"Key": "env", "Value": "test"}])
sns.untag_resource(ResourceArn=topic, TagKeys=["team"])
tags = sns.list_tags_for_resource(ResourceArn=topic)["Tags"]
check("tags", tags == [{"Key": "env", "Value": "test"}], tags)
sns.add_permission(TopicArn=topic, Label="pub", AWSAccountId=["111122223333"], ActionName=["Publish"])
policy = sns.get_topic_attributes(TopicArn=topic)["Attributes"]["Policy"]
check("permission", '"Sid":"pub"' in policy and "SNS:Publish" in policy, policy)
sns.remove_permission(TopicArn=topic, Label="pub")
check("permission removed", '"Sid":"pub"' not in sns.get_topic_attributes(TopicArn=topic)["Attributes"]["Policy"])
dpp = json.dumps({"Name": "p", "Version": "2021-06-01", "Statement": []})
sns.put_data_protection_policy(ResourceArn=topic, DataProtectionPolicy=dpp)
check("data protection policy", sns.get_data_protection_policy(ResourceArn=topic)["DataProtectionPolicy"] == dpp)

# --- Fan-out with filter policies ---------------------------------------------------------------
city_url, city_arn = queue(f"city-{suffix}")
high_url, high_arn = queue(f"high-{suffix}")
body_url, body_arn = queue(f"body-{suffix}")
s_city = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=city_arn, ReturnSubscriptionArn=True,
                       Attributes={"FilterPolicy": json.dumps({"station": ["Aotizhongxin", {"prefix": "Chang"}]}),
                                   "RawMessageDelivery": "true"})["SubscriptionArn"]
s_high = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=high_arn,
                       Attributes={"FilterPolicy": json.dumps({"pm25": [{"numeric": [">", 100]}], "station": [{"anything-but": "Dongsi"}]})})["SubscriptionArn"]
s_body = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=body_arn,
                       Attributes={"FilterPolicyScope": "MessageBody",
                                   "FilterPolicy": json.dumps({"reading": {"wd": ["NW", "NNW"]}})})["SubscriptionArn"]
code, _ = error_of(sns.subscribe, TopicArn=topic, Protocol="sqs", Endpoint=city_arn,
                   Attributes={"FilterPolicy": json.dumps({"station": "not an array"})})
check("bad filter policy", code == "InvalidParameter", code)
http_arn = sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=hook)["SubscriptionArn"]
check("http subscription pending", http_arn == "pending confirmation", http_arn)
check("confirmation POSTed", wait_for(lambda: any(d.get("Type") == "SubscriptionConfirmation" for _, d in received)), received)
confirmation = next((d for _, d in received if isinstance(d, dict) and d.get("Type") == "SubscriptionConfirmation"), {})
check("confirmation signed", bool(confirmation) and verified(confirmation), confirmation)
urllib.request.urlopen(confirmation["SubscribeURL"]).read()
subs = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
check("four confirmed subscriptions", len(subs) == 4 and all(s["SubscriptionArn"] != "PendingConfirmation" for s in subs), subs)
received.clear()

readings = [
    {"station": "Aotizhongxin", "pm25": 150, "wd": "NW"},
    {"station": "Changping", "pm25": 20, "wd": "E"},
    {"station": "Dongsi", "pm25": 300, "wd": "NNW"},
    {"station": "Guanyuan", "pm25": 101, "wd": "S"},
    {"station": "Wanliu", "pm25": 5, "wd": "NW"},
]
for r in readings:
    sns.publish(TopicArn=topic, Message=json.dumps({"reading": r}), Subject="reading",
                MessageAttributes={"station": {"DataType": "String", "StringValue": r["station"]},
                                   "pm25": {"DataType": "Number", "StringValue": str(r["pm25"])}})
want_city = {"Aotizhongxin", "Changping"}
want_high = {"Aotizhongxin", "Guanyuan"}
want_body = {"Aotizhongxin", "Dongsi", "Wanliu"}
city = drain(city_url, len(want_city))
check("raw delivery: body is the message", {json.loads(m["Body"])["reading"]["station"] for m in city} == want_city
      and len(city) == 2, [m["Body"] for m in city])
check("raw delivery carries message attributes",
      all(m["MessageAttributes"]["station"]["StringValue"] == json.loads(m["Body"])["reading"]["station"] for m in city), city)
high = drain(high_url, len(want_high))
docs = [json.loads(m["Body"]) for m in high]
check("numeric and anything-but", {json.loads(d["Message"])["reading"]["station"] for d in docs} == want_high and len(docs) == 2, docs)
check("notification document", all(d["Type"] == "Notification" and d["TopicArn"] == topic and d["Subject"] == "reading"
                                   and d["MessageAttributes"]["pm25"]["Type"] == "Number" for d in docs), docs)
check("notification signed", all(verified(d) for d in docs))
body = drain(body_url, len(want_body))
check("body policy", {json.loads(json.loads(m["Body"])["Message"])["reading"]["station"] for m in body} == want_body
      and len(body) == 3, [m["Body"] for m in body])
check("http endpoint got every message", wait_for(lambda: len(received) >= len(readings)) and len(received) == len(readings), len(received))
headers = received[0][0] if received else {}
check("http headers", headers.get("x-amz-sns-message-type") == "Notification" and headers.get("x-amz-sns-topic-arn") == topic, headers)
sub_attrs = sns.get_subscription_attributes(SubscriptionArn=s_high)["Attributes"]
check("subscription attributes", sub_attrs["Protocol"] == "sqs" and sub_attrs["Endpoint"] == high_arn
      and sub_attrs["FilterPolicyScope"] == "MessageAttributes" and sub_attrs["PendingConfirmation"] == "false", sub_attrs)

# --- HTTP retries and the dead-letter queue --------------------------------------------------------
dlq_url, dlq_arn = queue(f"sns-dlq-{suffix}")
http_sub = next(s["SubscriptionArn"] for s in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"] if s["Protocol"] == "http")
sns.set_subscription_attributes(SubscriptionArn=http_sub, AttributeName="DeliveryPolicy",
                                AttributeValue=json.dumps({"healthyRetryPolicy": {"minDelayTarget": 1, "numRetries": 2}}))
sns.set_subscription_attributes(SubscriptionArn=http_sub, AttributeName="RedrivePolicy",
                                AttributeValue=json.dumps({"deadLetterTargetArn": dlq_arn}))
received.clear()
fail_next["n"] = 2
sns.publish(TopicArn=topic, Message="retried", MessageAttributes={"station": {"DataType": "String", "StringValue": "Dongsi"}})
check("delivered after two failures", wait_for(lambda: any(isinstance(d, dict) and d.get("Message") == "retried" for _, d in received)), received)
fail_next["n"] = 100
sns.publish(TopicArn=topic, Message="never", MessageAttributes={"station": {"DataType": "String", "StringValue": "Dongsi"}})
dead = drain(dlq_url, 1, seconds=15)
check("dead-lettered after its retries", [json.loads(m["Body"])["Message"] for m in dead] == ["never"], [m["Body"] for m in dead])
fail_next["n"] = 0
sns.unsubscribe(SubscriptionArn=http_sub)
received.clear()
sns.publish(TopicArn=topic, Message="after", MessageAttributes={"station": {"DataType": "String", "StringValue": "Dongsi"}})
time.sleep(1.5)
check("unsubscribed endpoint gets nothing", not received, received)
drain(high_url, seconds=1)
drain(body_url, seconds=1)

# --- An https endpoint ------------------------------------------------------------------------------
if certs:
    import os
    import ssl
    tls_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(os.path.join(certs, "endpoint.pem"), os.path.join(certs, "endpoint.key"))
    tls_server.socket = context.wrap_socket(tls_server.socket, server_side=True)
    threading.Thread(target=tls_server.serve_forever, daemon=True).start()
    secure = f"https://localhost:{tls_server.server_address[1]}/secure"
    received.clear()
    https_sub = sns.subscribe(TopicArn=topic, Protocol="https", Endpoint=secure, ReturnSubscriptionArn=True)["SubscriptionArn"]
    check("https confirmation POSTed", wait_for(lambda: any(isinstance(d, dict) and d.get("Type") == "SubscriptionConfirmation" for _, d in received)), received)
    conf = next((d for _, d in received if isinstance(d, dict) and d.get("Type") == "SubscriptionConfirmation"), {})
    if conf:
        urllib.request.urlopen(conf["SubscribeURL"]).read()
    received.clear()
    sns.publish(TopicArn=topic, Message="over tls", MessageAttributes={"station": {"DataType": "String", "StringValue": "Dongsi"}})
    check("https endpoint gets the message", wait_for(lambda: any(isinstance(d, dict) and d.get("Message") == "over tls" for _, d in received)), received)
    sns.unsubscribe(SubscriptionArn=https_sub)
    tls_server.shutdown()
    drain(high_url, seconds=1)
    drain(body_url, seconds=1)
    received.clear()

# --- A Firehose delivery stream subscribed ----------------------------------------------------------
if lake:
    import os
    firehose = session.client("firehose", endpoint_url=endpoint, config=cfg)
    stream = f"sns-{suffix}"
    firehose.create_delivery_stream(DeliveryStreamName=stream, ExtendedS3DestinationConfiguration={
        "RoleARN": "arn:aws:iam::000000000000:role/r", "BucketARN": "arn:aws:s3:::lake", "Prefix": f"{stream}/",
        "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 0},
        "ProcessingConfiguration": {"Enabled": True, "Processors": [{"Type": "AppendDelimiterToRecord"}]}})
    for _ in range(50):
        if firehose.describe_delivery_stream(DeliveryStreamName=stream)["DeliveryStreamDescription"]["DeliveryStreamStatus"] == "ACTIVE":
            break
        time.sleep(0.1)
    fh_arn = firehose.describe_delivery_stream(DeliveryStreamName=stream)["DeliveryStreamDescription"]["DeliveryStreamARN"]
    code, _ = error_of(sns.subscribe, TopicArn=topic, Protocol="firehose", Endpoint=fh_arn)
    check("firehose needs a role", code == "InvalidParameter", code)
    sns.subscribe(TopicArn=topic, Protocol="firehose", Endpoint=fh_arn,
                  Attributes={"SubscriptionRoleArn": "arn:aws:iam::000000000000:role/sns", "RawMessageDelivery": "true",
                              "FilterPolicy": json.dumps({"station": ["Wanliu"]})})
    for station in ["Wanliu", "Dongsi", "Wanliu"]:
        sns.publish(TopicArn=topic, Message=f"to the lake from {station}",
                    MessageAttributes={"station": {"DataType": "String", "StringValue": station}})

    def landed():
        folder = os.path.join(lake, "lake", stream)
        text = ""
        for root, _, files in os.walk(folder):
            for f in files:
                text += open(os.path.join(root, f)).read()
        return text

    check("a delivery stream lands what its policy selects",
          wait_for(lambda: landed().count("to the lake from Wanliu") == 2, 20) and "Dongsi" not in landed(), landed())
    drain(high_url, seconds=1)
    drain(body_url, seconds=1)

# --- PublishBatch -----------------------------------------------------------------------------------
out = sns.publish_batch(TopicArn=topic, PublishBatchRequestEntries=[
    {"Id": "a", "Message": "one", "MessageAttributes": {"station": {"DataType": "String", "StringValue": "Aotizhongxin"}}},
    {"Id": "b", "Message": ""},
])
check("batch", [s["Id"] for s in out["Successful"]] == ["a"] and [f["Id"] for f in out["Failed"]] == ["b"], out)
code, _ = error_of(sns.publish_batch, TopicArn=topic, PublishBatchRequestEntries=[{"Id": "x", "Message": "m"}] * 2)
check("batch with repeated ids", code == "BatchEntryIdsNotDistinct", code)
check("batch delivered", [m["Body"] for m in drain(city_url, 1)] == ["one"])

# --- FIFO ----------------------------------------------------------------------------------------------
ftopic = sns.create_topic(Name=f"jobs-{suffix}.fifo", Attributes={"FifoTopic": "true", "ContentBasedDeduplication": "true"})["TopicArn"]
furl, farn = queue(f"jobs-{suffix}.fifo", FifoQueue="true")
sns.subscribe(TopicArn=ftopic, Protocol="sqs", Endpoint=farn, Attributes={"RawMessageDelivery": "true"})
code, _ = error_of(sns.publish, TopicArn=ftopic, Message="no group")
check("FIFO topic needs a group", code == "InvalidParameter", code)
ids = [sns.publish(TopicArn=ftopic, Message=f"job {i}", MessageGroupId="g") for i in range(5)]
dup = sns.publish(TopicArn=ftopic, Message="job 0", MessageGroupId="g")
check("FIFO dedup", dup["MessageId"] == ids[0]["MessageId"] and dup["SequenceNumber"] == ids[0]["SequenceNumber"], dup)
got = sqs.receive_message(QueueUrl=furl, MaxNumberOfMessages=10).get("Messages", [])
check("FIFO order, once each", [m["Body"] for m in got] == [f"job {i}" for i in range(5)], [m["Body"] for m in got])

# --- What must be refused ------------------------------------------------------------------------
try:
    urllib.request.urlopen(f"{endpoint}/?Action=Unsubscribe&Action=DeleteTopic&TopicArn={topic}")
    link_status = 200
except urllib.error.HTTPError as e:
    link_status = e.code
check("an unsigned link runs only its own action", link_status == 403 and "Attributes" in sns.get_topic_attributes(TopicArn=topic), link_status)
outbox_sub = sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=hook + "/2", ReturnSubscriptionArn=True)["SubscriptionArn"]
outbox_url = f"{endpoint}/000000000000/~sns-{outbox_sub.rsplit(':', 1)[1]}"
try:
    sqs.receive_message(QueueUrl=outbox_url)
    code = None
except ClientError as e:
    code = e.response["Error"]["Code"]
check("an SNS outbox is no client's queue", code == "AWS.SimpleQueueService.NonExistentQueue", code)
sns.unsubscribe(SubscriptionArn=outbox_sub)
sns.unsubscribe(SubscriptionArn=outbox_sub)  # not subscribed any more: no error, as on SNS
code, _ = error_of(sns.subscribe, TopicArn=topic, Protocol="sqs", Endpoint=city_arn,
                   Attributes={"FilterPolicy": json.dumps({"a": {"b": ["c"]}})})
check("nested policy needs the MessageBody scope", code == "InvalidParameter", code)
std_url, std_arn = queue(f"std-{suffix}")
check("a FIFO topic fans out to a standard queue", "SubscriptionArn" in sns.subscribe(TopicArn=ftopic, Protocol="sqs", Endpoint=std_arn))

# --- Every operation of botocore's model ----------------------------------------------------------------
OUT_OF_SCOPE = {"CheckIfPhoneNumberIsOptedOut", "CreatePlatformApplication", "CreatePlatformEndpoint",
                "CreateSMSSandboxPhoneNumber", "DeleteEndpoint", "DeletePlatformApplication", "DeleteSMSSandboxPhoneNumber",
                "GetEndpointAttributes", "GetPlatformApplicationAttributes", "GetSMSAttributes", "GetSMSSandboxAccountStatus",
                "ListEndpointsByPlatformApplication", "ListOriginationNumbers", "ListPhoneNumbersOptedOut",
                "ListPlatformApplications", "ListSMSSandboxPhoneNumbers", "OptInPhoneNumber", "SetEndpointAttributes",
                "SetPlatformApplicationAttributes", "SetSMSAttributes", "VerifySMSSandboxPhoneNumber"}
model = sns.meta.service_model
junk = {"string": "x", "integer": 1, "long": 1, "boolean": False, "blob": b"x", "list": [], "map": {}, "structure": {}}
methods = {api: m for m, api in sns.meta.method_to_api_mapping.items()}
for op_name in model.operation_names:
    op = model.operation_model(op_name)
    # Junk of each required member's type, as long as the model's minimum length asks.
    params = {}
    for m in (op.input_shape.required_members if op.input_shape else []):
        shape = op.input_shape.members[m]
        params[m] = "x" * max(1, shape.metadata.get("min", 1)) if shape.type_name == "string" else junk[shape.type_name]
    try:
        getattr(sns, methods[op_name])(**params)
        code = None
    except ClientError as e:
        code = e.response["Error"]["Code"]
    except Exception as e:
        code = f"client-side {type(e).__name__}"
    if op_name in OUT_OF_SCOPE:
        check(f"{op_name} answers a clear error", code == "InvalidAction", code)
    else:
        check(f"{op_name} served", code not in ("InvalidAction", "MissingAction") and not str(code).startswith("client-side"), code)

sns.delete_topic(TopicArn=topic)
code, _ = error_of(sns.get_topic_attributes, TopicArn=topic)
check("topic deleted", code == "NotFound", code)
sns.delete_topic(TopicArn=topic)  # deleting a topic that does not exist is no error
server.shutdown()
print(f"sns: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
