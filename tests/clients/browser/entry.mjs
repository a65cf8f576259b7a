// The page's script, bundled for the browser by esbuild (the browser build of
// @aws-sdk/client-kinesis: fetch, not Node's http). Puts the records named in the page's query
// string into a Sluice stream across origins (CORS) and leaves the outcome in
// window.sluiceResult for the test to read.
import { KinesisClient, PutRecordsCommand } from "@aws-sdk/client-kinesis";

const q = new URLSearchParams(location.search);
const client = new KinesisClient({
  endpoint: q.get("endpoint"),
  region: "us-east-1",
  credentials: { accessKeyId: q.get("key"), secretAccessKey: q.get("secret") },
  maxAttempts: 1,
});
const records = q.get("records").split(",");
client
  .send(new PutRecordsCommand({
    StreamName: q.get("stream"),
    Records: records.map((r, i) => ({ Data: new TextEncoder().encode(r), PartitionKey: `click-${i}` })),
  }))
  .then((out) => { window.sluiceResult = { ok: true, failed: out.FailedRecordCount }; })
  .catch((e) => { window.sluiceResult = { ok: false, error: String(e && (e.name || e)) }; });
