// Headless Chromium (Debian's, driven by playwright-core) loads a page from a small HTTP server
// started here, on another origin than Sluice's; the page puts records with the browser build
// of the JavaScript SDK v3 (bundled by esbuild) through CORS; the records are read back with
// the Node SDK. The same page loaded from an origin Sluice does not allow must fail.
// Usage: node browser-kinesis.mjs <sluice endpoint> <access key> <secret> <page port>
// (the server must allow http://127.0.0.1:<page port>); exit 0 when every check held.
import { createRequire } from "node:module";
import { strict as assert } from "node:assert";
import http from "node:http";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const modules = process.env.SLUICE_NODE_MODULES;
const require = createRequire(modules + "/");
const esbuild = require("esbuild");
const { chromium } = require("playwright-core");
const k = require("@aws-sdk/client-kinesis");
const { NodeHttpHandler } = require("@smithy/node-http-handler");

const [endpoint, key, secret, pagePort] = process.argv.slice(2);
const here = path.dirname(fileURLToPath(import.meta.url));
const out = fs.mkdtempSync(path.join(os.tmpdir(), "sluice-browser-"));
await esbuild.build({
  entryPoints: [path.join(here, "browser/entry.mjs")],
  bundle: true,
  platform: "browser",
  format: "iife",
  nodePaths: [modules],
  outfile: path.join(out, "bundle.js"),
  logLevel: "error",
});
fs.copyFileSync(path.join(here, "browser/index.html"), path.join(out, "index.html"));
const pages = http.createServer((req, res) => {
  const file = path.join(out, new URL(req.url, "http://x").pathname.replace(/^\/$/, "/index.html"));
  if (!file.startsWith(out) || !fs.existsSync(file)) { res.writeHead(404); return res.end(); }
  res.writeHead(200, { "content-type": file.endsWith(".js") ? "text/javascript" : "text/html" });
  fs.createReadStream(file).pipe(res);
});
await new Promise((r) => pages.listen(Number(pagePort), "127.0.0.1", r));

const kinesis = new k.KinesisClient({
  endpoint, region: "us-east-1", credentials: { accessKeyId: key, secretAccessKey: secret },
  requestHandler: new NodeHttpHandler(), maxAttempts: 1,
});
const stream = `browser-${process.pid}`;
await kinesis.send(new k.CreateStreamCommand({ StreamName: stream, ShardCount: 1 }));
for (let i = 0; i < 50; i++) {
  const s = await kinesis.send(new k.DescribeStreamSummaryCommand({ StreamName: stream }));
  if (s.StreamDescriptionSummary.StreamStatus === "ACTIVE") break;
  await new Promise((r) => setTimeout(r, 100));
}

const browser = await chromium.launch({
  executablePath: process.env.SLUICE_CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const visit = async (origin, records) => {
  const page = await browser.newPage();
  const q = new URLSearchParams({ endpoint, key, secret, stream, records: records.join(",") });
  await page.goto(`${origin}/index.html?${q}`);
  await page.waitForFunction(() => window.sluiceResult !== undefined, null, { timeout: 30000 });
  const result = await page.evaluate(() => window.sluiceResult);
  await page.close();
  return result;
};
try {
  const clicks = ["home", "search", "product-42", "cart", "checkout"];
  const allowed = await visit(`http://127.0.0.1:${pagePort}`, clicks);
  assert.deepEqual(allowed, { ok: true, failed: 0 }, JSON.stringify(allowed));
  // localhost is another origin than 127.0.0.1: not allowed, so the browser blocks the call.
  const refused = await visit(`http://localhost:${pagePort}`, ["blocked"]);
  assert.equal(refused.ok, false, JSON.stringify(refused));

  const shard = (await kinesis.send(new k.ListShardsCommand({ StreamName: stream }))).Shards[0].ShardId;
  const it = await kinesis.send(new k.GetShardIteratorCommand({ StreamName: stream, ShardId: shard, ShardIteratorType: "TRIM_HORIZON" }));
  const got = await kinesis.send(new k.GetRecordsCommand({ ShardIterator: it.ShardIterator }));
  assert.deepEqual(got.Records.map((r) => new TextDecoder().decode(r.Data)), clicks);
  console.log("browser sdk (headless chromium, CORS): ok");
} finally {
  await browser.close();
  pages.close();
  kinesis.destroy();
  fs.rmSync(out, { recursive: true, force: true });
}
