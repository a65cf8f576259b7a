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

// Errors arrive as the SDK's typed exceptions.
await assert.rejects(kinesis.send(new k.DescribeStreamCommand({ StreamName: "no-such-stream" })), (e) => e.name === "ResourceNotFoundException");
await kinesis.send(new k.DeleteStreamCommand({ StreamName: stream }));

const firehose = new fh.FirehoseClient(http1 ? { ...base, requestHandler: new NodeHttpHandler() } : base);
const list = await firehose.send(new fh.ListDeliveryStreamsCommand({}));
assert.ok(Array.isArray(list.DeliveryStreamNames));
console.log(`js sdk (${http1 ? "HTTP/1.1" : "default transport, HTTP/2"} over ${endpoint.split(":")[0]}): ok`);
kinesis.destroy();
firehose.destroy();
