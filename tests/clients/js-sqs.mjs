// The AWS SDK for JavaScript v3's SQS client (AWS JSON 1.0) against a running Sluice, over
// HTTP/1.1 (its default) or, with SLUICE_JS_HTTP2=1, HTTP/2. The client checks the MD5 of
// each body on every send, batch and receive (@aws-sdk/middleware-sdk-sqs), so a digest off
// AWS's throws. Queue, send with attributes, batch, receive, long poll, delete, a
// FIFO queue's order, an error's class and code (from the x-amzn-query-error header), and
// every command of the client answered by an operation Sluice serves.
// Usage: node js-sqs.mjs <endpoint> <access key> <secret>   (exit 0 when every check held)
import { createRequire } from "node:module";
import { strict as assert } from "node:assert";

const require = createRequire(process.env.SLUICE_NODE_MODULES + "/");
const q = require("@aws-sdk/client-sqs");
const { NodeHttp2Handler } = require("@smithy/node-http-handler");

const [endpoint, accessKeyId, secretAccessKey] = process.argv.slice(2);
const http2 = process.env.SLUICE_JS_HTTP2 === "1";
const base = { endpoint, region: "us-east-1", credentials: { accessKeyId, secretAccessKey }, maxAttempts: 1 };
const sqs = new q.SQSClient(http2 ? { ...base, requestHandler: new NodeHttp2Handler() } : base);
const name = `js-${http2 ? "h2" : "h1"}-${process.pid}`;

const { QueueUrl } = await sqs.send(new q.CreateQueueCommand({ QueueName: name, Attributes: { VisibilityTimeout: "30" } }));
assert.ok(QueueUrl.endsWith(`/000000000000/${name}`), QueueUrl);
const attrs = {
  city: { DataType: "String", StringValue: "Beijing" },
  pm25: { DataType: "Number", StringValue: "42.5" },
  raw: { DataType: "Binary", BinaryValue: new Uint8Array([0, 1, 255]) },
};
const sent = await sqs.send(new q.SendMessageCommand({ QueueUrl, MessageBody: "hello ✓", MessageAttributes: attrs }));
assert.ok(sent.MessageId && sent.MD5OfMessageAttributes);
const batch = await sqs.send(new q.SendMessageBatchCommand({
  QueueUrl,
  Entries: Array.from({ length: 5 }, (_, i) => ({ Id: `e${i}`, MessageBody: `body ${i}`, MessageAttributes: { n: { DataType: "Number", StringValue: `${i}` } } })),
}));
assert.equal(batch.Successful.length, 5);

const bodies = [];
for (let i = 0; i < 5 && bodies.length < 6; i++) {
  const r = await sqs.send(new q.ReceiveMessageCommand({ QueueUrl, MaxNumberOfMessages: 10, MessageAttributeNames: ["All"], MessageSystemAttributeNames: ["All"] }));
  for (const m of r.Messages ?? []) {
    bodies.push(m.Body);
    if (m.Body === "hello ✓") assert.deepEqual(Object.keys(m.MessageAttributes).sort(), ["city", "pm25", "raw"]);
    assert.equal(m.Attributes.ApproximateReceiveCount, "1");
    await sqs.send(new q.DeleteMessageCommand({ QueueUrl, ReceiptHandle: m.ReceiptHandle }));
  }
}
assert.deepEqual(bodies.sort(), ["body 0", "body 1", "body 2", "body 3", "body 4", "hello ✓"]);

setTimeout(() => sqs.send(new q.SendMessageCommand({ QueueUrl, MessageBody: "wake" })), 500);
const started = Date.now();
const woken = await sqs.send(new q.ReceiveMessageCommand({ QueueUrl, WaitTimeSeconds: 10 }));
assert.deepEqual((woken.Messages ?? []).map((m) => m.Body), ["wake"]);
assert.ok(Date.now() - started < 8000);

const fifo = (await sqs.send(new q.CreateQueueCommand({ QueueName: `${name}.fifo`, Attributes: { FifoQueue: "true", ContentBasedDeduplication: "true" } }))).QueueUrl;
for (const b of ["1", "2", "3"]) await sqs.send(new q.SendMessageCommand({ QueueUrl: fifo, MessageBody: b, MessageGroupId: "g" }));
const inOrder = await sqs.send(new q.ReceiveMessageCommand({ QueueUrl: fifo, MaxNumberOfMessages: 10 }));
assert.deepEqual(inOrder.Messages.map((m) => m.Body), ["1", "2", "3"]);

await assert.rejects(sqs.send(new q.GetQueueUrlCommand({ QueueName: `none-${process.pid}` })), (e) => {
  assert.equal(e.name, "QueueDoesNotExist");
  assert.equal(e.$metadata.httpStatusCode, 400);
  return true;
});
// Every command of the client reaches an operation Sluice serves: with junk input each
// answers an SQS error of its own (a missing queue, a bad value), never an unknown action.
const commands = Object.keys(q).filter((k) => k.endsWith("Command") && k !== "$Command");
assert.equal(commands.length, 23, commands.join(" "));
for (const name of commands) {
  try {
    await sqs.send(new q[name]({ QueueUrl: `${endpoint}/000000000000/none-${process.pid}`, QueueName: `none-${process.pid}`,
      ReceiptHandle: "x", Entries: [{ Id: "a", ReceiptHandle: "x", MessageBody: "x" }], MessageBody: "x", VisibilityTimeout: 1,
      Attributes: {}, Tags: { a: "b" }, TagKeys: ["a"], Label: "l", AWSAccountIds: ["1"], Actions: ["SendMessage"],
      SourceArn: "arn:aws:sqs:us-east-1:000000000000:none", TaskHandle: "x" }));
  } catch (e) {
    assert.ok(!["InvalidAction", "UnknownOperationException"].includes(e.name), `${name}: ${e.name} ${e.message}`);
    assert.ok(e.$metadata.httpStatusCode < 500, `${name}: ${e.$metadata.httpStatusCode} ${e.message}`);
  }
}
await sqs.send(new q.DeleteQueueCommand({ QueueUrl }));
await sqs.send(new q.DeleteQueueCommand({ QueueUrl: fifo }));
console.log(`js sqs (${http2 ? "HTTP/2" : "HTTP/1.1"}): ok`);
