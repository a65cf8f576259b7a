// The AWS SDK for JavaScript v3 against a running Sluice, in its default transport for
// Kinesis (HTTP/2 over h2c on an http:// endpoint) or, with SLUICE_JS_HTTP1=1, over HTTP/1.1.
// create / put / read back exactly once / split / delete, and the Firehose client.
// Usage: node js-kinesis.mjs <endpoint> <access key> <secret>   (exit 0 when every check held)
import { createRequire } from "node:module";
import { strict as assert } from "node:assert";

const require = createRequire(process.env.SLUICE_NODE_MODULES + "/");
const k = require("@aws-sdk/client-kinesis");
const fh = require("@aws-sdk/client-firehose");
const { NodeHttpHandler } = require("@smithy/node-http-handler");

const [endpoint, accessKeyId, secretAccessKey] = process.argv.slice(2);
const http1 = process.env.SLUICE_JS_HTTP1 === "1";
const base = { endpoint, region: "us-east-1", credentials: { accessKeyId, secretAccessKey }, maxAttempts: 1 };
const kinesis = new k.KinesisClient(http1 ? { ...base, requestHandler: new NodeHttpHandler() } : base);
const stream = `js-${http1 ? "h1" : "h2"}-${process.pid}`;

await kinesis.send(new k.CreateStreamCommand({ StreamName: stream, ShardCount: 2 }));
for (let i = 0; i < 50; i++) {
  const s = await kinesis.send(new k.DescribeStreamSummaryCommand({ StreamName: stream }));
  if (s.StreamDescriptionSummary.StreamStatus === "ACTIVE") break;
  await new Promise((r) => setTimeout(r, 100));
}
const sent = Array.from({ length: 20 }, (_, i) => `record-${i}`);
const put = await kinesis.send(new k.PutRecordsCommand({
  StreamName: stream,
  Records: sent.map((d, i) => ({ Data: new TextEncoder().encode(d), PartitionKey: `key-${i}` })),
}));
assert.equal(put.FailedRecordCount, 0);
const one = await kinesis.send(new k.PutRecordCommand({ StreamName: stream, Data: new TextEncoder().encode("single"), PartitionKey: "p" }));
assert.match(one.SequenceNumber, /^\d+$/);

const got = [];
const shards = (await kinesis.send(new k.ListShardsCommand({ StreamName: stream }))).Shards;
assert.equal(shards.length, 2);
for (const shard of shards) {
  const it = await kinesis.send(new k.GetShardIteratorCommand({ StreamName: stream, ShardId: shard.ShardId, ShardIteratorType: "TRIM_HORIZON" }));
  const r = await kinesis.send(new k.GetRecordsCommand({ ShardIterator: it.ShardIterator }));
  for (const rec of r.Records) {
    assert.ok(rec.ApproximateArrivalTimestamp instanceof Date);
    got.push(new TextDecoder().decode(rec.Data));
  }
}
assert.deepEqual([...got].sort(), [...sent, "single"].sort(), "every record exactly once");

const first = shards[0];
const mid = (BigInt(first.HashKeyRange.StartingHashKey) + BigInt(first.HashKeyRange.EndingHashKey)) / 2n;
await kinesis.send(new k.SplitShardCommand({ StreamName: stream, ShardToSplit: first.ShardId, NewStartingHashKey: mid.toString() }));
for (let i = 0; i < 50; i++) {
  const s = await kinesis.send(new k.DescribeStreamSummaryCommand({ StreamName: stream }));
  if (s.StreamDescriptionSummary.StreamStatus === "ACTIVE") break;
  await new Promise((r) => setTimeout(r, 100));
}
const after = (await kinesis.send(new k.ListShardsCommand({ StreamName: stream }))).Shards;
assert.equal(after.length, 4);

// Enhanced fan-out: a consumer reads a split and merged stream through SubscribeToShard
// event streams (HTTP/2 in the default transport), every record once, in order per key, then
// resubscribes after the server ended its subscription (the server runs with
// subscription_lifetime_ms = 2000).
const fan = `${stream}-fan`;
const fanArn = `arn:aws:kinesis:us-east-1:000000000000:stream/${fan}`;
await kinesis.send(new k.CreateStreamCommand({ StreamName: fan, ShardCount: 1 }));
const putRange = async (from, to) => {
  for (let i = from; i < to; i++) {
    await kinesis.send(new k.PutRecordCommand({ StreamName: fan, Data: new TextEncoder().encode(`reading ${i}`), PartitionKey: `device-${i % 7}` }));
  }
};
const settle = async () => {
  for (let i = 0; i < 50; i++) {
    const s = await kinesis.send(new k.DescribeStreamSummaryCommand({ StreamName: fan }));
    if (s.StreamDescriptionSummary.StreamStatus === "ACTIVE") return;
    await new Promise((r) => setTimeout(r, 100));
  }
};
await settle();
const consumer = (await kinesis.send(new k.RegisterStreamConsumerCommand({ StreamARN: fanArn, ConsumerName: "js" }))).Consumer.ConsumerARN;
await putRange(0, 30);
await kinesis.send(new k.SplitShardCommand({ StreamName: fan, ShardToSplit: "shardId-000000000000", NewStartingHashKey: (2n ** 127n).toString() }));
await settle();
await putRange(30, 60);
await kinesis.send(new k.MergeShardsCommand({ StreamName: fan, ShardToMerge: "shardId-000000000001", AdjacentShardToMerge: "shardId-000000000002" }));
await settle();
await putRange(60, 90);
// One subscription: its records, last continuation and child shards.
const subscribe = async (shardId, position, want) => {
  const out = await kinesis.send(new k.SubscribeToShardCommand({ ConsumerARN: consumer, ShardId: shardId, StartingPosition: position }));
  const records = [];
  let continuation, children;
  for await (const event of out.EventStream) {
    const e = event.SubscribeToShardEvent;
    if (!e) throw new Error(`unexpected event ${JSON.stringify(event)}`);
    records.push(...e.Records.map((r) => new TextDecoder().decode(r.Data)));
    if (e.ContinuationSequenceNumber) continuation = e.ContinuationSequenceNumber;
    if (e.ChildShards && e.ChildShards.length) children = e.ChildShards.map((c) => c.ShardId);
    if (want && records.length >= want) break;
  }
  return { records, continuation, children };
};
const fanned = [];
for (const shardId of ["shardId-000000000000", "shardId-000000000001", "shardId-000000000002"]) {
  const d = await subscribe(shardId, { Type: "TRIM_HORIZON" });
  assert.ok(d.children, `${shardId} read to its end`);
  fanned.push(...d.records);
}
const open = await subscribe("shardId-000000000003", { Type: "TRIM_HORIZON" }, 30);
fanned.push(...open.records);
assert.deepEqual([...fanned].sort(), Array.from({ length: 90 }, (_, i) => `reading ${i}`).sort(), "every fanned-out record once");
for (let d = 0; d < 7; d++) {
  const seq = fanned.map((x) => Number(x.split(" ")[1])).filter((n) => n % 7 === d);
  assert.deepEqual(seq, [...seq].sort((a, b) => a - b), `order of device-${d}`);
}
// A subscription with nothing new ends after its lifetime; the next one resumes after it.
await new Promise((r) => setTimeout(r, 2100));
const idle = await subscribe("shardId-000000000003", { Type: "AFTER_SEQUENCE_NUMBER", SequenceNumber: open.continuation });
assert.equal(idle.records.length, 0);
await putRange(90, 95);
await new Promise((r) => setTimeout(r, 2100));
const resumed = await subscribe("shardId-000000000003", { Type: "AFTER_SEQUENCE_NUMBER", SequenceNumber: idle.continuation }, 5);
assert.deepEqual(resumed.records, Array.from({ length: 5 }, (_, i) => `reading ${90 + i}`));
// A stream with a registered consumer is kept unless the consumers are to go with it.
await assert.rejects(kinesis.send(new k.DeleteStreamCommand({ StreamName: fan })), (e) => e.name === "ResourceInUseException");
await kinesis.send(new k.DeleteStreamCommand({ StreamName: fan, EnforceConsumerDeletion: true }));

// Errors arrive as the SDK's typed exceptions.
await assert.rejects(kinesis.send(new k.DescribeStreamCommand({ StreamName: "no-such-stream" })), (e) => e.name === "ResourceNotFoundException");
await kinesis.send(new k.DeleteStreamCommand({ StreamName: stream }));

const firehose = new fh.FirehoseClient(http1 ? { ...base, requestHandler: new NodeHttpHandler() } : base);
const list = await firehose.send(new fh.ListDeliveryStreamsCommand({}));
assert.ok(Array.isArray(list.DeliveryStreamNames));
console.log(`js sdk (${http1 ? "HTTP/1.1" : "default transport, HTTP/2"} over ${endpoint.split(":")[0]}): ok`);
kinesis.destroy();
firehose.destroy();
