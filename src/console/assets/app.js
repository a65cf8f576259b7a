// Sluice console: plain JavaScript, no build step. Every change goes through the Kinesis and
// Firehose operations (POST /console/api/call/<service>/<Operation>), the same code the SDKs
// reach; counters, delivery metrics and the lake come from /console/api/*.
"use strict";

const $ = (sel, el = document) => el.querySelector(sel);

/** Builds an element: h("td", {class: "num", "data-testid": "x", onclick: f}, "text", child). */
function h(tag, attrs = {}, ...children) {
  const svg = ["svg", "rect", "line", "polyline", "text", "g", "title"].includes(tag);
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

async function api(path, init = {}) {
  const headers = Object.assign({ "x-sluice-console": "1" }, init.headers || {});
  const r = await fetch("/console/api/" + path, Object.assign({ credentials: "same-origin" }, init, { headers }));
  if (r.status === 401 && path !== "session") { showSignIn(); throw new Error("signed out"); }
  return r;
}

/** Runs an API operation; throws "Type: message" as the API answered it. */
async function call(service, operation, body = {}) {
  const r = await api(`call/${service}/${operation}`, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
  });
  const text = await r.text();
  const value = text ? JSON.parse(text) : {};
  if (!r.ok) {
    const type = String(value.__type || value.code || r.status).split("#").pop();
    throw new Error(`${type}: ${value.message || value.Message || ""}`);
  }
  return value;
}
const kinesis = (op, body) => call("kinesis", op, body);
const firehose = (op, body) => call("firehose", op, body);
const reprocessing = (op, body) => call("reprocessing", op, body);

// ---------- bytes, numbers, time ----------
function b64ToBytes(s) { const bin = atob(s); const out = new Uint8Array(bin.length); for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i); return out; }
function bytesToB64(bytes) { let bin = ""; for (const b of bytes) bin += String.fromCharCode(b); return btoa(bin); }
const textToB64 = (t) => bytesToB64(new TextEncoder().encode(t));
const fmt = (n) => (n === undefined || n === null ? "" : Number(n).toLocaleString("en-US", { maximumFractionDigits: 1 }));
function fmtBytes(n) { const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0; n = Number(n); while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; } return `${n.toFixed(i ? 1 : 0)} ${u[i]}`; }
const fmtTime = (t) => (t ? new Date(typeof t === "number" ? (t < 1e11 ? t * 1000 : t) : t).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "");

/** A record's data as the viewer shows it: JSON pretty-printed, text, or hex and base64. */
function renderData(b64) {
  let bytes;
  try { bytes = b64ToBytes(b64); } catch { return h("div", { class: "record-data", "data-kind": "text" }, h("pre", {}, String(b64))); }
  let text = null;
  try { text = new TextDecoder("utf-8", { fatal: true }).decode(bytes); } catch { text = null; }
  if (text !== null) {
    try { return h("div", { class: "record-data", "data-kind": "json" }, h("pre", {}, JSON.stringify(JSON.parse(text), null, 2))); } catch { /* not JSON */ }
    if (!/[\u0000-\u0008\u000e-\u001f]/.test(text)) return h("div", { class: "record-data", "data-kind": "text" }, h("pre", {}, text));
  }
  const hex = Array.from(bytes.slice(0, 256), (b) => b.toString(16).padStart(2, "0")).join(" ");
  return h("div", { class: "record-data", "data-kind": "binary" },
    h("div", { class: "muted" }, `${bytes.length} bytes, binary`), h("pre", {}, `hex: ${hex}${bytes.length > 256 ? " …" : ""}\nbase64: ${b64}`));
}

// ---------- session ----------
function showSignIn() {
  stopTimers();
  $("#nav").hidden = true; $("#view").hidden = true; $("#signin").hidden = false;
}
async function showApp() {
  const r = await api("whoami");
  if (!r.ok) return showSignIn();
  $("#who").textContent = (await r.json()).accessKeyId;
  $("#signin").hidden = true; $("#nav").hidden = false; $("#view").hidden = false;
  route();
}
$("#signin-form")?.addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = new FormData(e.target);
  const r = await api("session", {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ accessKeyId: f.get("accessKeyId"), secretAccessKey: f.get("secretAccessKey") }),
  });
  const err = $("#signin-error");
  if (!r.ok) { err.textContent = `Sign-in refused: ${await r.text()}`; err.hidden = false; return; }
  err.hidden = true;
  if (!location.hash) location.hash = "#/streams";
  showApp();
});
$("#signout")?.addEventListener("click", async () => { await api("signout", { method: "POST" }); showSignIn(); });

// ---------- routing ----------
let timers = [];
function stopTimers() { timers.forEach(clearInterval); timers = []; }
function every(ms, f) { timers.push(setInterval(f, ms)); }
window.addEventListener("hashchange", route);

function route() {
  if ($("#view").hidden) return;
  stopTimers();
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const view = $("#view");
  view.replaceChildren();
  const show = (p) => p.catch((e) => view.append(h("p", { class: "error", "data-testid": "view-error" }, String(e.message || e))));
  if (parts[0] === "delivery" && parts[1]) return show(deliveryStreamPage(view, parts[1]));
  if (parts[0] === "delivery") return show(deliveryStreamsPage(view));
  if (parts[0] === "streams" && parts[1] && parts[2] === "data") return show(dataViewerPage(view, parts[1]));
  if (parts[0] === "streams" && parts[1]) return show(streamPage(view, parts[1]));
  return show(streamsPage(view));
}
const go = (hash) => { location.hash = hash; };

function flash(where, message, ok = false) {
  where.replaceChildren(h("p", { class: ok ? "ok" : "error", "data-testid": ok ? "flash-ok" : "flash-error" }, message));
}
/** A form whose submit runs `action(formData)` and reports its outcome in `out`. */
function actionForm(testid, fields, label, action, out, cls) {
  const form = h("form", { "data-testid": testid }, fields, h("button", { type: "submit", class: cls }, label));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try { const msg = await action(new FormData(form)); flash(out, msg || "Done.", true); } catch (err) { flash(out, String(err.message || err)); }
  });
  return form;
}
const field = (label, name, attrs = {}) => h("label", {}, label, h("input", Object.assign({ name, "data-testid": `input-${name}` }, attrs)));
const choice = (label, name, options, attrs = {}) =>
  h("label", {}, label, h("select", Object.assign({ name, "data-testid": `input-${name}` }, attrs), options.map(([v, t]) => h("option", { value: v }, t ?? v))));

// ---------- streams ----------
async function streamsPage(view) {
  const out = h("div", { class: "flash" });
  view.append(h("h1", {}, "Streams"), out,
    h("div", { class: "actions card" }, actionForm("create-stream", [
      field("Stream name", "StreamName", { required: true, pattern: "[a-zA-Z0-9_.\\-]{1,128}" }),
      choice("Capacity mode", "mode", [["PROVISIONED", "Provisioned"], ["ON_DEMAND", "On-demand"]]),
      field("Shards", "ShardCount", { type: "number", min: 1, value: 1 }),
    ], "Create stream", async (f) => {
      const name = f.get("StreamName");
      const body = { StreamName: name, StreamModeDetails: { StreamMode: f.get("mode") } };
      if (f.get("mode") === "PROVISIONED") body.ShardCount = Number(f.get("ShardCount"));
      await kinesis("CreateStream", body);
      setTimeout(route, 300);
      return `Stream ${name} created.`;
    }, out)));
  const list = await kinesis("ListStreams", { Limit: 1000 });
  const rows = (list.StreamSummaries || []).map((s) => h("tr", { "data-testid": `stream-row-${s.StreamName}` },
    h("td", {}, h("a", { class: "row", href: `#/streams/${encodeURIComponent(s.StreamName)}` }, s.StreamName)),
    h("td", {}, h("span", { class: `status ${s.StreamStatus}` }, s.StreamStatus)),
    h("td", {}, s.StreamModeDetails?.StreamMode || ""),
    h("td", {}, fmtTime(s.StreamCreationTimestamp)),
    h("td", {}, h("button", { class: "danger", "data-testid": `delete-${s.StreamName}`, onclick: async () => {
      if (!confirm(`Delete stream ${s.StreamName} and every record in it?`)) return;
      try { await kinesis("DeleteStream", { StreamName: s.StreamName, EnforceConsumerDeletion: true }); flash(out, `Stream ${s.StreamName} deleted.`, true); setTimeout(route, 300); } catch (e) { flash(out, e.message); }
    } }, "Delete"))));
  view.append(h("table", { "data-testid": "streams-table" },
    h("tr", {}, ["Name", "Status", "Mode", "Created", ""].map((t) => h("th", {}, t))),
    rows.length ? rows : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No streams yet."))));
}

const HASH_MAX = (1n << 128n) - 1n;

/** The open shards' hash key ranges as one bar, each shard's width its share of the space. */
function rangeBar(shards) {
  const width = 1000, height = 34;
  const svg = h("svg", { viewBox: `0 0 ${width} ${height + 16}`, width: "100%", "data-testid": "hash-key-bar" });
  const colors = ["#1f6feb", "#2da44e", "#bf8700", "#8250df", "#cf222e", "#1b7c83", "#9a6700", "#6e7781"];
  shards.forEach((s, i) => {
    const lo = BigInt(s.HashKeyRange.StartingHashKey), hi = BigInt(s.HashKeyRange.EndingHashKey);
    const x = Number((lo * 100000n) / HASH_MAX) / 100000 * width;
    const w = Math.max(1, Number(((hi - lo) * 100000n) / HASH_MAX) / 100000 * width);
    const share = (Number(((hi - lo + 1n) * 10000n) / (HASH_MAX + 1n)) / 100).toFixed(2);
    svg.append(h("g", {}, h("rect", { x, y: 0, width: w, height, fill: colors[i % colors.length], stroke: "#fff" },
      h("title", {}, `${s.ShardId}: ${s.HashKeyRange.StartingHashKey} – ${s.HashKeyRange.EndingHashKey} (${share} %)`)),
      w > 70 ? h("text", { x: x + 4, y: height + 13 }, s.ShardId.replace("shardId-", "")) : null));
  });
  return svg;
}

/** Splits and merges as a graph: parents on the left, children to their right. */
function lineageGraph(shards) {
  const byId = new Map(shards.map((s) => [s.ShardId, s]));
  const depth = new Map();
  const depthOf = (s) => {
    if (depth.has(s.ShardId)) return depth.get(s.ShardId);
    const parents = [s.ParentShardId, s.AdjacentParentShardId].filter((p) => p && byId.has(p));
    const d = parents.length ? 1 + Math.max(...parents.map((p) => depthOf(byId.get(p)))) : 0;
    depth.set(s.ShardId, d);
    return d;
  };
  shards.forEach(depthOf);
  const columns = [];
  for (const s of shards) (columns[depth.get(s.ShardId)] ||= []).push(s);
  const W = 190, H = 34, gapX = 60, gapY = 12;
  const pos = new Map();
  columns.forEach((col, c) => col.forEach((s, r) => pos.set(s.ShardId, { x: 10 + c * (W + gapX), y: 10 + r * (H + gapY) })));
  const rows = Math.max(...columns.map((c) => c.length));
  const svg = h("svg", { width: 20 + columns.length * (W + gapX), height: 20 + rows * (H + gapY), "data-testid": "lineage-graph" });
  for (const s of shards) for (const p of [s.ParentShardId, s.AdjacentParentShardId]) {
    if (!p || !pos.has(p)) continue;
    const a = pos.get(p), b = pos.get(s.ShardId);
    svg.append(h("line", { x1: a.x + W, y1: a.y + H / 2, x2: b.x, y2: b.y + H / 2, stroke: "#98a2b3", "stroke-width": 1.5 }));
  }
  for (const s of shards) {
    const { x, y } = pos.get(s.ShardId);
    const closed = Boolean(s.SequenceNumberRange?.EndingSequenceNumber);
    svg.append(h("g", {}, h("rect", { x, y, width: W, height: H, rx: 6, fill: closed ? "#f2f4f7" : "#e8f1ff", stroke: closed ? "#98a2b3" : "#1f6feb" }),
      h("text", { x: x + 8, y: y + 21 }, `${s.ShardId}${closed ? " (closed)" : ""}`)));
  }
  return svg;
}

/** A sparkline of the last samples' rates. */
function sparkline(values, testid) {
  const w = 90, hgt = 24, max = Math.max(1, ...values);
  const pts = values.map((v, i) => `${(i / Math.max(1, values.length - 1)) * w},${hgt - (v / max) * (hgt - 2) - 1}`).join(" ");
  return h("svg", { width: w, height: hgt, "data-testid": testid }, h("polyline", { points: pts || `0,${hgt - 1} ${w},${hgt - 1}`, fill: "none", stroke: "#1f6feb", "stroke-width": 1.5 }));
}

/** Rates per second of one counter of one shard between the server's samples (every 10 s,
 * the last 5 minutes, kept while the console is in use) and the counters just read. */
function rates(stats, shardId, key) {
  const points = [...(stats?.history || []), { atMs: stats?.atMs, shards: Object.fromEntries((stats?.shards || []).map((s) => [s.shardId, s])) }];
  const out = [];
  for (let i = 1; i < points.length; i++) {
    const a = points[i - 1].shards[shardId], b = points[i].shards[shardId];
    const secs = (points[i].atMs - points[i - 1].atMs) / 1000;
    if (!a || !b || secs <= 0) continue;
    out.push(Math.max(0, (b[key] - a[key]) / secs));
  }
  return out;
}

async function shardStats(stream) {
  const r = await api(`shard-stats?stream=${encodeURIComponent(stream)}`);
  return r.ok ? r.json() : null;
}

async function streamPage(view, name) {
  const out = h("div", { class: "flash" });
  const [summary, shardList] = await Promise.all([
    kinesis("DescribeStreamSummary", { StreamName: name }),
    kinesis("ListShards", { StreamName: name, MaxResults: 1000 }),
  ]);
  const d = summary.StreamDescriptionSummary;
  const shards = shardList.Shards || [];
  const open = shards.filter((s) => !s.SequenceNumberRange?.EndingSequenceNumber);
  view.append(
    h("h1", {}, name, " ", h("span", { class: `status ${d.StreamStatus}`, "data-testid": "stream-status" }, d.StreamStatus)),
    h("p", {}, h("a", { class: "row", href: `#/streams/${encodeURIComponent(name)}/data`, "data-testid": "open-data-viewer" }, "Data viewer →")),
    h("div", { class: "cards" },
      h("div", { class: "card stat" }, "Mode", h("b", {}, d.StreamModeDetails?.StreamMode)),
      h("div", { class: "card stat" }, "Open shards", h("b", { "data-testid": "open-shard-count" }, d.OpenShardCount)),
      h("div", { class: "card stat" }, "Retention", h("b", {}, `${d.RetentionPeriodHours} h`)),
      h("div", { class: "card stat" }, "Consumers", h("b", {}, d.ConsumerCount ?? 0))),
    h("h2", {}, "Hash key ranges of the open shards"), h("div", { class: "card" }, rangeBar(open)),
    out);
  const shardOptions = open.map((s) => [s.ShardId]);
  view.append(h("div", { class: "actions card" },
    actionForm("put-record", [field("Partition key", "PartitionKey", { required: true, value: "console" }),
      field("Data", "Data", { required: true, value: '{"hello":"from the console"}', size: 36 })], "Put test record", async (f) => {
      const r = await kinesis("PutRecord", { StreamName: name, PartitionKey: f.get("PartitionKey"), Data: textToB64(f.get("Data")) });
      return `Stored in ${r.ShardId} at ${r.SequenceNumber}.`;
    }, out),
    actionForm("split-shard", [choice("Shard", "ShardToSplit", shardOptions)], "Split at midpoint", async (f) => {
      const s = open.find((x) => x.ShardId === f.get("ShardToSplit"));
      const lo = BigInt(s.HashKeyRange.StartingHashKey), hi = BigInt(s.HashKeyRange.EndingHashKey);
      await kinesis("SplitShard", { StreamName: name, ShardToSplit: s.ShardId, NewStartingHashKey: ((lo + hi + 1n) / 2n).toString() });
      setTimeout(route, 500);
      return `Splitting ${s.ShardId}.`;
    }, out, "secondary"),
    actionForm("merge-shards", [choice("Shard", "ShardToMerge", shardOptions), choice("Adjacent shard", "AdjacentShardToMerge", shardOptions)], "Merge", async (f) => {
      await kinesis("MergeShards", { StreamName: name, ShardToMerge: f.get("ShardToMerge"), AdjacentShardToMerge: f.get("AdjacentShardToMerge") });
      setTimeout(route, 500);
      return "Merging.";
    }, out, "secondary"),
    actionForm("update-shard-count", [field("Target shard count", "TargetShardCount", { type: "number", min: 1, value: open.length })], "Update shard count", async (f) => {
      await kinesis("UpdateShardCount", { StreamName: name, TargetShardCount: Number(f.get("TargetShardCount")), ScalingType: "UNIFORM_SCALING" });
      setTimeout(route, 500);
      return "Resharding.";
    }, out, "secondary")));

  const table = h("table", { "data-testid": "shards-table" });
  view.append(h("h2", {}, "Shards"), table, h("h2", {}, "Lineage"), h("div", { class: "card" }, lineageGraph(shards)));
  const draw = (stats) => {
    const byId = Object.fromEntries((stats?.shards || []).map((s) => [s.shardId, s]));
    table.replaceChildren(h("tr", {}, ["Shard", "Starting hash key", "In (records)", "In records/s", "In B/s", "Out records/s", "Out B/s", "Throttled (w/r)", "Iterator age"].map((t) => h("th", {}, t))),
      ...shards.map((s) => {
        const st = byId[s.ShardId] || {};
        const closed = Boolean(s.SequenceNumberRange?.EndingSequenceNumber);
        return h("tr", { "data-testid": `shard-row-${s.ShardId}` },
          h("td", {}, s.ShardId, closed ? h("span", { class: "muted" }, " closed") : null),
          h("td", { class: "muted" }, s.HashKeyRange.StartingHashKey.length > 14 ? s.HashKeyRange.StartingHashKey.slice(0, 12) + "…" : s.HashKeyRange.StartingHashKey),
          h("td", { class: "num", "data-testid": `incoming-records-${s.ShardId}` }, fmt(st.incomingRecords)),
          h("td", {}, sparkline(rates(stats, s.ShardId, "incomingRecords"), `spark-in-records-${s.ShardId}`)),
          h("td", {}, sparkline(rates(stats, s.ShardId, "incomingBytes"), `spark-in-${s.ShardId}`)),
          h("td", {}, sparkline(rates(stats, s.ShardId, "outgoingRecords"), `spark-out-records-${s.ShardId}`)),
          h("td", {}, sparkline(rates(stats, s.ShardId, "outgoingBytes"), `spark-out-${s.ShardId}`)),
          h("td", { class: "num" }, `${fmt(st.writeProvisionedThroughputExceeded)} / ${fmt(st.readProvisionedThroughputExceeded)}`),
          h("td", { class: "num" }, st.iteratorAgeMilliseconds ? `${fmt(st.iteratorAgeMilliseconds)} ms` : ""));
      }));
  };
  draw(await shardStats(name));
  every(5000, async () => draw(await shardStats(name)));
}

// ---------- data viewer ----------
async function dataViewerPage(view, name) {
  const shards = (await kinesis("ListShards", { StreamName: name, MaxResults: 1000 })).Shards || [];
  const out = h("div", { class: "flash" });
  const records = h("tbody", { "data-testid": "records" });
  let tail = null;
  const stopTail = () => { if (tail) { clearInterval(tail); timers = timers.filter((t) => t !== tail); tail = null; } };
  const show = (list) => {
    for (const r of list) records.append(h("tr", { "data-testid": "record-row" },
      h("td", { class: "muted" }, r.SequenceNumber),
      h("td", {}, fmtTime(r.ApproximateArrivalTimestamp)),
      h("td", { "data-testid": "record-partition-key" }, r.PartitionKey),
      h("td", {}, renderData(r.Data))));
  };
  const form = actionForm("read-records", [
    choice("Shard", "ShardId", shards.map((s) => [s.ShardId])),
    choice("Start", "ShardIteratorType", [["TRIM_HORIZON", "Oldest (TRIM_HORIZON)"], ["LATEST", "Newest (LATEST)"], ["AT_SEQUENCE_NUMBER", "At sequence number"], ["AFTER_SEQUENCE_NUMBER", "After sequence number"], ["AT_TIMESTAMP", "At time"]]),
    field("Sequence number or time (ISO 8601)", "position", { size: 34 }),
    h("label", {}, "Live tail", h("input", { type: "checkbox", name: "tail", "data-testid": "input-tail" })),
  ], "Read", async (f) => {
    stopTail();
    records.replaceChildren();
    const type = f.get("ShardIteratorType");
    const body = { StreamName: name, ShardId: f.get("ShardId"), ShardIteratorType: type };
    if (type.endsWith("SEQUENCE_NUMBER")) body.StartingSequenceNumber = f.get("position");
    if (type === "AT_TIMESTAMP") body.Timestamp = Date.parse(f.get("position")) / 1000;
    let iterator = (await kinesis("GetShardIterator", body)).ShardIterator;
    let read = 0;
    for (let i = 0; i < 5 && iterator; i++) {
      const r = await kinesis("GetRecords", { ShardIterator: iterator, Limit: 100 });
      show(r.Records); read += r.Records.length; iterator = r.NextShardIterator;
      if (!r.Records.length || read >= 100) break;
    }
    if (f.get("tail") && iterator) {
      let busy = false; // one read at a time: a slow answer must not be read twice
      tail = setInterval(async () => {
        if (busy) return;
        busy = true;
        try { const r = await kinesis("GetRecords", { ShardIterator: iterator, Limit: 100 }); show(r.Records); iterator = r.NextShardIterator; if (!iterator) stopTail(); } catch (e) { flash(out, e.message); stopTail(); } finally { busy = false; }
      }, 1000);
      timers.push(tail);
    }
    return `${read} record(s) from ${f.get("ShardId")}${tail ? "; tailing" : ""}.`;
  }, out);
  view.append(h("h1", {}, h("a", { class: "row", href: `#/streams/${encodeURIComponent(name)}` }, name), " · data viewer"),
    h("div", { class: "actions card" }, form), out,
    h("table", {}, h("thead", {}, h("tr", {}, ["Sequence number", "Arrival", "Partition key", "Data"].map((t) => h("th", {}, t)))), records));
}

// ---------- delivery streams ----------
async function deliveryStreamsPage(view) {
  const list = await firehose("ListDeliveryStreams", { Limit: 10000 });
  const rows = [];
  for (const name of list.DeliveryStreamNames || []) {
    const stats = await (await api(`delivery-stats?name=${encodeURIComponent(name)}`)).json().catch(() => ({}));
    rows.push(h("tr", { "data-testid": `delivery-row-${name}` },
      h("td", {}, h("a", { class: "row", href: `#/delivery/${encodeURIComponent(name)}` }, name)),
      h("td", { class: "num" }, fmt(stats.incomingRecords)), h("td", { class: "num" }, fmt(stats.deliveredRecords)),
      h("td", { class: "num" }, fmt(Object.values(stats.failedRecords || {}).reduce((a, b) => a + b, 0))),
      h("td", { class: "num" }, stats.dataFreshnessMilliseconds ? `${fmt(stats.dataFreshnessMilliseconds / 1000)} s` : "")));
  }
  view.append(h("h1", {}, "Delivery streams"), h("table", { "data-testid": "delivery-table" },
    h("tr", {}, ["Name", "Incoming records", "Delivered records", "Failed records", "Data freshness"].map((t) => h("th", {}, t))),
    rows.length ? rows : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No delivery streams yet."))));
}

/** Buffered bytes against the size hint of the first destination (SizeInMBs, 5 MiB by default). */
function bufferFill(bytes, d) {
  const dest = (d.Destinations || [])[0] || {};
  const hints = Object.values(dest).find((v) => v && v.BufferingHints)?.BufferingHints || {};
  const size = (hints.SizeInMBs || 5) * 1024 * 1024;
  return `${fmtBytes(bytes || 0)} of ${fmtBytes(size)} (${((100 * (bytes || 0)) / size).toFixed(1)} %)`;
}

async function deliveryStreamPage(view, name) {
  const d = (await firehose("DescribeDeliveryStream", { DeliveryStreamName: name })).DeliveryStreamDescription;
  const stats = await (await api(`delivery-stats?name=${encodeURIComponent(name)}`)).json();
  const card = (label, value, testid) => h("div", { class: "card stat" }, label, h("b", { "data-testid": testid }, value));
  view.append(
    h("h1", {}, name, " ", h("span", { class: `status ${d.DeliveryStreamStatus}` }, d.DeliveryStreamStatus)),
    h("div", { class: "cards" },
      card("Incoming records", fmt(stats.incomingRecords), "stat-incoming"),
      card("Delivered records", fmt(stats.deliveredRecords), "stat-delivered"),
      card("Objects written", fmt(stats.objectsWritten), "stat-objects"),
      card("Data freshness", `${fmt(stats.dataFreshnessMilliseconds / 1000)} s`, "stat-freshness"),
      card("Buffer fill", bufferFill(stats.bufferedBytes, d), "stat-buffer"),
      ...Object.entries(stats.failedRecords).map(([t, n]) => card(t, fmt(n), `stat-failed-${t}`))));
  const failed = h("table", { "data-testid": "failed-records" });
  const objects = h("table", { "data-testid": "lake-objects" });
  view.append(...reprocessingSection(name, stats));
  view.append(h("h2", {}, "Last failed records"), failed, h("h2", {}, "Objects in the lake"), objects,
    h("h2", {}, "Configuration"), h("pre", { "data-testid": "delivery-config" }, JSON.stringify(d, null, 2)));
  const [errs, objs] = await Promise.all([
    api(`lake?name=${encodeURIComponent(name)}&what=errors`).then((r) => r.json()),
    api(`lake?name=${encodeURIComponent(name)}&what=objects`).then((r) => r.json()),
  ]);
  failed.append(h("tr", {}, ["Error output type", "Code", "Message", "Record"].map((t) => h("th", {}, t))),
    ...(errs.failedRecords || []).map((f) => h("tr", { "data-testid": "failed-record-row" },
      h("td", {}, f.errorOutputType || ""), h("td", {}, f.errorCode || ""), h("td", { "data-testid": "failed-record-message" }, f.errorMessage || ""),
      h("td", {}, f.data !== null && f.data !== undefined ? h("pre", {}, f.data) : renderData(f.rawData)))));
  if (!(errs.failedRecords || []).length) failed.append(h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No failed records.")));
  objects.append(h("tr", {}, ["Key", "Size", "Rows", "Written"].map((t) => h("th", {}, t))),
    ...(objs.objects || []).map((o) => h("tr", { "data-testid": "lake-object-row" },
      h("td", {}, o.key), h("td", { class: "num" }, fmtBytes(o.size)), h("td", { class: "num" }, o.rows ?? ""), h("td", {}, fmtTime(o.lastModified)))));
  if (!(objs.objects || []).length) objects.append(h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No objects yet.")));
}

/** Replays and redrives of a delivery stream: start one, follow them, cancel. */
function reprocessingSection(name, stats) {
  const out = h("div", {});
  const table = h("table", { "data-testid": "tasks-table" });
  const ms = (t) => (t ? Date.parse(t) : undefined);
  const failedTypes = Object.entries(stats.failedRecords || {}).filter(([, n]) => n > 0).map(([t]) => [t]);
  const forms = h("div", { class: "actions card" },
    actionForm("start-replay", [
      field("From (RFC 3339)", "From", { value: "1970-01-01T00:00:00Z" }),
      field("To (optional)", "To", {}),
      field("Prefix (optional)", "Prefix", {}),
      field("Records/s (optional)", "Rate", { type: "number", min: 1 }),
    ], "Replay", async (f) => {
      const body = { DeliveryStreamName: name, FromTimestampMs: ms(f.get("From")) };
      if (f.get("To")) body.ToTimestampMs = ms(f.get("To"));
      if (f.get("Prefix")) body.Prefix = f.get("Prefix");
      if (f.get("Rate")) body.MaxRecordsPerSecond = Number(f.get("Rate"));
      const t = (await reprocessing("StartReplay", body)).Task;
      draw();
      return `Replay ${t.TaskId} started: ${fmt(t.Total)} records.`;
    }, out, "secondary"),
    failedTypes.length ? actionForm("start-redrive", [choice("Error output type", "ErrorOutputType", failedTypes)], "Redrive", async (f) => {
      const t = (await reprocessing("StartRedrive", { DeliveryStreamName: name, ErrorOutputType: f.get("ErrorOutputType") })).Task;
      draw();
      return `Redrive ${t.TaskId} started: ${fmt(t.Total)} error objects.`;
    }, out, "secondary") : null);
  const draw = async () => {
    const tasks = (await reprocessing("ListTasks", { DeliveryStreamName: name })).Tasks || [];
    table.replaceChildren(h("tr", {}, ["Task", "Status", "Done", "Records", "Started", ""].map((t) => h("th", {}, t))),
      ...tasks.map((t) => {
        const report = (t.Replay || t.Redrive || {}).Report || {};
        const cancel = t.Status === "RUNNING" ? h("button", { class: "secondary", "data-testid": `cancel-${t.TaskId}`, onclick: async () => {
          try { await reprocessing("CancelTask", { TaskId: t.TaskId }); flash(out, `Cancelling ${t.TaskId}.`, true); } catch (err) { flash(out, String(err.message || err)); }
          draw();
        } }, "Cancel") : null;
        return h("tr", { "data-testid": `task-row-${t.TaskId}` },
          h("td", {}, t.TaskId), h("td", { "data-testid": `task-status-${t.TaskId}` }, t.Status, t.Failure ? h("span", { class: "muted" }, ` ${t.Failure}`) : null),
          h("td", { class: "num" }, `${fmt(t.Total - t.Remaining)} / ${fmt(t.Total)}`), h("td", { class: "num" }, fmt(report.Records)),
          h("td", {}, fmtTime(t.CreatedMs)), h("td", {}, cancel));
      }));
    if (!tasks.length) table.append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No replays or redrives.")));
  };
  draw().catch((e) => flash(out, String(e.message || e)));
  every(2000, () => draw().catch(() => {}));
  return [h("h2", {}, "Replays and redrives"), forms, out, table];
}

// ---------- start ----------
showApp().catch(showSignIn);
