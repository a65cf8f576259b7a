// The web console in headless Chromium (Debian's, driven by playwright-core) against a running
// `sluice serve` with SigV4 on:
//   1. a wrong secret is refused at sign-in, and no console call answers without a session;
//   2. a stream created in the console takes records from boto3;
//   3. those records appear in the console's data viewer, and a split made in the console shows
//      in the lineage graph;
//   4. a record a delivery stream fails (jq partition key missing) appears with its error on the
//      delivery stream's page, next to the object the other record landed in; a redrive and a
//      replay started there are listed and complete.
// Screenshots of each step go to target/console-screens/.
// Usage: node console.mjs <sluice endpoint> <access key> <secret>; SLUICE_PYTHON names a Python
// with boto3. Exit 0 when every check held.
import { createRequire } from "node:module";
import { strict as assert } from "node:assert";
import { execFileSync } from "node:child_process";
import fs from "node:fs";

const require = createRequire(process.env.SLUICE_NODE_MODULES + "/");
const { chromium } = require("playwright-core");

const [endpoint, key, secret] = process.argv.slice(2);
const python = process.env.SLUICE_PYTHON || "python3";
const screens = "target/console-screens";
fs.mkdirSync(screens, { recursive: true });

/** Runs Python with boto3 (the clients made for `endpoint`); returns its stdout's last line as JSON. */
function boto3(code) {
  const prelude = `
import boto3, json, sys, time
from botocore.config import Config
cfg = dict(endpoint_url=${JSON.stringify(endpoint)}, region_name="us-east-1", aws_access_key_id=${JSON.stringify(key)},
           aws_secret_access_key=${JSON.stringify(secret)}, config=Config(retries={"max_attempts": 2}))
kinesis = boto3.client("kinesis", **cfg)
firehose = boto3.client("firehose", **cfg)
`;
  const out = execFileSync(python, ["-c", prelude + code], { encoding: "utf8" });
  return JSON.parse(out.trim().split("\n").pop());
}

const browser = await chromium.launch({
  executablePath: process.env.SLUICE_CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
const errors = [];
page.on("pageerror", (e) => errors.push(String(e)));
page.on("dialog", (d) => d.accept());
const shot = (name) => page.screenshot({ path: `${screens}/${name}.png`, fullPage: true });
const stream = `console-${process.pid}`;
const delivery = `console-feed-${process.pid}`;

try {
  // 1. Sign-in: a wrong secret is refused, and nothing answers without a session.
  await page.goto(`${endpoint}/console/`);
  await page.getByTestId("access-key-id").fill(key);
  await page.getByTestId("secret-access-key").fill(secret + "-wrong");
  await page.getByTestId("signin-submit").click();
  await page.getByTestId("signin-error").waitFor({ state: "visible" });
  assert.match(await page.getByTestId("signin-error").textContent(), /refused/);
  assert.equal(await page.locator("#view").isHidden(), true, "no data view before sign-in");
  const unsigned = await page.evaluate(async () => {
    const r = await fetch("/console/api/call/kinesis/ListStreams", { method: "POST", headers: { "x-sluice-console": "1", "content-type": "application/json" }, body: "{}" });
    return r.status;
  });
  assert.equal(unsigned, 401, "a console call without a session is refused");
  await shot("1-signin-refused");

  await page.getByTestId("secret-access-key").fill(secret);
  await page.getByTestId("signin-submit").click();
  await page.getByTestId("streams-table").waitFor();

  // 2. A stream created in the console takes records from boto3.
  await page.getByTestId("input-StreamName").fill(stream);
  await page.getByTestId("input-ShardCount").fill("2");
  await page.getByTestId("create-stream").getByRole("button").click();
  await page.getByTestId("flash-ok").waitFor();
  await page.getByTestId(`stream-row-${stream}`).waitFor();
  const put = boto3(`
name = ${JSON.stringify(stream)}
kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
records = [{"PartitionKey": "user-%d" % i, "Data": json.dumps({"user": i, "page": "/product/%d" % (i * 7)}).encode()} for i in range(20)]
out = kinesis.put_records(StreamName=name, Records=records)
binary = kinesis.put_record(StreamName=name, PartitionKey="raw", Data=bytes([0, 1, 2, 254, 255]))
print(json.dumps({"failed": out["FailedRecordCount"], "shards": sorted({r["ShardId"] for r in out["Records"]}), "binary_shard": binary["ShardId"]}))
`);
  assert.equal(put.failed, 0, JSON.stringify(put));
  await shot("2-streams");

  // The stream page: hash key ranges, shards with their counters, lineage.
  await page.getByTestId(`stream-row-${stream}`).getByRole("link").click();
  await page.getByTestId("hash-key-bar").waitFor();
  assert.equal(await page.getByTestId("hash-key-bar").locator("rect").count(), 2);
  const counted = async () => {
    let sum = 0;
    for (const s of ["shardId-000000000000", "shardId-000000000001"]) sum += Number((await page.getByTestId(`incoming-records-${s}`).textContent()).replace(/,/g, "") || 0);
    return sum;
  };
  assert.equal(await counted(), 21, "the shard table counts the 21 records boto3 put");
  await page.getByTestId("lineage-graph").waitFor();
  await shot("3-stream");

  // 3. The data viewer shows what boto3 put: JSON pretty-printed, binary as hex and base64.
  await page.getByTestId("open-data-viewer").click();
  const seen = [];
  for (const shard of ["shardId-000000000000", "shardId-000000000001"]) {
    await page.getByTestId("input-ShardId").selectOption(shard);
    await page.getByTestId("input-ShardIteratorType").selectOption("TRIM_HORIZON");
    await page.getByTestId("read-records").getByRole("button").click();
    // The answer names the shard it read (the previous read's message may still be shown).
    await page.getByTestId("flash-ok").filter({ hasText: shard }).waitFor();
    seen.push(...(await page.getByTestId("record-partition-key").allTextContents()));
    if (shard === put.binary_shard) {
      const binary = page.locator('[data-kind="binary"]');
      assert.equal(await binary.count(), 1);
      assert.match(await binary.textContent(), /00 01 02 fe ff/);
    }
  }
  assert.deepEqual(seen.sort(), [...Array.from({ length: 20 }, (_, i) => `user-${i}`), "raw"].sort());
  assert.match(await page.locator('[data-kind="json"]').first().textContent(), /"page": "\/product\/\d+"/);
  await shot("4-data-viewer");

  // Live tail: from LATEST, a record boto3 puts afterwards appears without another click.
  await page.getByTestId("input-ShardId").selectOption(put.binary_shard);
  await page.getByTestId("input-ShardIteratorType").selectOption("LATEST");
  await page.getByTestId("input-tail").check();
  await page.getByTestId("read-records").getByRole("button").click();
  await page.getByTestId("flash-ok").filter({ hasText: "tailing" }).waitFor();
  boto3(`
print(json.dumps(kinesis.put_record(StreamName=${JSON.stringify(stream)}, PartitionKey="raw", Data=b'{"tailed": true}')))
`);
  await page.getByTestId("record-partition-key").filter({ hasText: "raw" }).waitFor({ timeout: 15000 });
  assert.match(await page.getByTestId("records").textContent(), /"tailed": true/);

  // A split from the console: the lineage graph draws the closed parent and its two children.
  await page.goto(`${endpoint}/console/#/streams/${stream}`);
  await page.getByTestId("split-shard").getByRole("button").click();
  await page.getByTestId("flash-ok").waitFor();
  for (let i = 0; i < 50 && (await page.getByTestId("lineage-graph").locator("line").count()) < 2; i++) {
    await page.waitForTimeout(300);
    await page.reload();
    await page.getByTestId("lineage-graph").waitFor();
  }
  assert.equal(await page.getByTestId("lineage-graph").locator("line").count(), 2, "parent → two children");
  assert.match(await page.getByTestId("lineage-graph").textContent(), /shardId-000000000000 \(closed\)/);
  assert.equal(await page.getByTestId("open-shard-count").textContent(), "3");
  await shot("4b-stream-after-split");

  // A test record put from the console is read back by boto3.
  await page.getByTestId("input-PartitionKey").fill("from-console");
  await page.getByTestId("input-Data").fill('{"console": 1}');
  await page.getByTestId("put-record").getByRole("button").click();
  await page.getByTestId("flash-ok").filter({ hasText: "Stored in" }).waitFor();
  const back = boto3(`
name = ${JSON.stringify(stream)}
found = []
for shard in kinesis.list_shards(StreamName=name)["Shards"]:
    it = kinesis.get_shard_iterator(StreamName=name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    while it:
        out = kinesis.get_records(ShardIterator=it)
        found += [r["Data"].decode() for r in out["Records"] if r["PartitionKey"] == "from-console"]
        if not out["Records"]: break
        it = out.get("NextShardIterator")
print(json.dumps(found))
`);
  assert.deepEqual(back, ['{"console": 1}']);

  // Merging the split's children back: four edges in the lineage graph, two open shards.
  await page.getByTestId("input-ShardToMerge").selectOption("shardId-000000000002");
  await page.getByTestId("input-AdjacentShardToMerge").selectOption("shardId-000000000003");
  await page.getByTestId("merge-shards").getByRole("button").click();
  await page.getByTestId("flash-ok").filter({ hasText: "Merging" }).waitFor();
  for (let i = 0; i < 50 && (await page.getByTestId("lineage-graph").locator("line").count()) < 4; i++) {
    await page.waitForTimeout(300);
    await page.reload();
    await page.getByTestId("lineage-graph").waitFor();
  }
  assert.equal(await page.getByTestId("lineage-graph").locator("line").count(), 4, "split then merge");
  assert.equal(await page.getByTestId("open-shard-count").textContent(), "2");

  // UpdateShardCount from the console: 2 → 3 open shards.
  await page.getByTestId("input-TargetShardCount").fill("3");
  await page.getByTestId("update-shard-count").getByRole("button").click();
  await page.getByTestId("flash-ok").filter({ hasText: "Resharding" }).waitFor();
  for (let i = 0; i < 50 && (await page.getByTestId("open-shard-count").textContent()) !== "3"; i++) {
    await page.waitForTimeout(300);
    await page.reload();
    await page.getByTestId("open-shard-count").waitFor();
  }
  assert.equal(await page.getByTestId("open-shard-count").textContent(), "3");
  // A sparkline per shard and counter.
  assert.equal(await page.locator('[data-testid^="spark-in-records-"]').count(), await page.locator('[data-testid^="shard-row-"]').count());

  // 4. A failed Firehose record appears with its error.
  boto3(`
name = ${JSON.stringify(delivery)}
firehose.create_delivery_stream(DeliveryStreamName=name, DeliveryStreamType="DirectPut", ExtendedS3DestinationConfiguration={
    "RoleARN": "arn:aws:iam::000000000000:role/firehose", "BucketARN": "arn:aws:s3:::lake",
    "Prefix": "console/!{partitionKeyFromQuery:kind}/", "ErrorOutputPrefix": "console-errors/!{firehose:error-output-type}/",
    "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 1},
    "DynamicPartitioningConfiguration": {"Enabled": True},
    "ProcessingConfiguration": {"Enabled": True, "Processors": [{"Type": "MetadataExtraction", "Parameters": [
        {"ParameterName": "MetadataExtractionQuery", "ParameterValue": "{kind: .kind}"},
        {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"}]}]}})
for _ in range(50):
    if firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]["DeliveryStreamStatus"] == "ACTIVE": break
    time.sleep(0.2)
firehose.put_record_batch(DeliveryStreamName=name, Records=[{"Data": b'{"kind": "click", "n": 1}'}, {"Data": b"this is not json"}])
print(json.dumps({"ok": True}))
`);
  await page.getByTestId("nav-delivery").click();
  await page.getByTestId(`delivery-row-${delivery}`).getByRole("link").click();
  let message = "";
  for (let i = 0; i < 60 && !message; i++) {
    await page.waitForTimeout(500);
    await page.reload();
    await page.getByTestId("failed-records").waitFor();
    const rows = page.getByTestId("failed-record-message");
    if ((await rows.count()) > 0 && (await page.getByTestId("lake-object-row").count()) > 0) message = await rows.first().textContent();
  }
  assert.ok(message, "the failed record and the landed object appear on the delivery stream's page");
  assert.match(await page.getByTestId("failed-records").textContent(), /this is not json/);
  assert.match(await page.getByTestId("failed-records").textContent(), /processing-failed/);
  assert.match(await page.getByTestId("lake-object-row").first().textContent(), /console\/click\//);
  await shot("5-delivery-stream");

  // A redrive of the failed record and a replay of the delivery stream, started on its page,
  // are listed and end COMPLETED (the failed record fails again: it is still not JSON).
  await page.getByTestId("start-redrive").getByRole("button").click();
  await page.getByTestId("flash-ok").filter({ hasText: "Redrive" }).waitFor();
  await page.getByTestId("start-replay").getByRole("button").click();
  await page.getByTestId("flash-ok").filter({ hasText: "Replay" }).waitFor();
  let statuses = [];
  for (let i = 0; i < 40; i++) {
    statuses = await page.locator('[data-testid^="task-status-"]').allTextContents();
    if (statuses.length === 2 && statuses.every((s) => s.startsWith("COMPLETED"))) break;
    await page.waitForTimeout(500);
  }
  assert.deepEqual(statuses.map((s) => s.split(" ")[0]), ["COMPLETED", "COMPLETED"], "the replay and the redrive complete");
  const redriveRow = await page.locator('[data-testid^="task-row-redrive-"]').textContent();
  assert.match(redriveRow, /1 \/ 1/, "the redrive took the one error object");
  await shot("6-reprocessing");

  // Deleting the stream from the list (the confirmation is accepted): boto3 no longer finds it.
  await page.getByTestId("nav-streams").click();
  await page.getByTestId(`delete-${stream}`).click();
  await page.getByTestId("flash-ok").filter({ hasText: "deleted" }).waitFor();
  const gone = boto3(`
try:
    kinesis.get_waiter("stream_not_exists").wait(StreamName=${JSON.stringify(stream)}, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    print(json.dumps(True))
except Exception as e:
    print(json.dumps(str(e)))
`);
  assert.equal(gone, true);

  assert.deepEqual(errors, [], "no script errors on the pages");
  console.log("console (headless chromium): ok");
} finally {
  await browser.close();
}
