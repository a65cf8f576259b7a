//! The web console's own API (`/console/api/`), below the pages the browser test drives: no
//! answer without a session or without the console's header, operations answered as the API
//! answers them, and the lake as the console shows it (Parquet row counts from the files'
//! footers, failed records from the error output prefix) against a real S3-compatible server.

use std::net::SocketAddr;

use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types as fh;

use crate::datasets::beijing;
use crate::firehose_delivery::{create_beijing_parquet, wait_for, Harness};
use crate::s3_server::objects;
use crate::support::{ACCESS_KEY, SECRET_KEY};

/// One HTTP/1.1 request: status, head (lower-cased) and body.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    s.write_all(format!("{head}\r\n{body}").as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.split(' ').nth(1).unwrap().parse().unwrap(), head.to_ascii_lowercase(), body.to_owned())
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_api_needs_a_session_answers_as_the_api_and_reads_the_lake() {
    let h = Harness::start(None, |_| {}).await;
    let addr = h.server.addr;

    // The pages are public (they hold no data) and may not be framed or run inline code.
    let (status, head, body) = request(addr, "GET", "/console/", &[], "").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-security-policy: default-src 'self'"), "{head}");
    assert!(body.contains("/console/app.js"));

    // No session: nothing. A wrong secret: no session.
    let list = ("content-type", "application/json");
    let marked = ("x-sluice-console", "1");
    let (status, _, _) = request(addr, "POST", "/console/api/call/kinesis/ListStreams", &[list, marked], "{}").await;
    assert_eq!(status, 401);
    let pair = |secret: &str| serde_json::json!({"accessKeyId": ACCESS_KEY, "secretAccessKey": secret}).to_string();
    let wrong = pair("test-secret-key-not");
    // Without the console's header (what a cross-site form sends), not even a sign-in.
    let (status, _, _) = request(addr, "POST", "/console/api/session", &[list], &pair(SECRET_KEY)).await;
    assert_eq!(status, 403);
    let (status, _, _) = request(addr, "POST", "/console/api/session", &[list, marked], &"x".repeat(5000)).await;
    assert_eq!(status, 413);
    let too_long = serde_json::json!({"accessKeyId": "a".repeat(129), "secretAccessKey": "s"}).to_string();
    let (status, _, _) = request(addr, "POST", "/console/api/session", &[list, marked], &too_long).await;
    assert_eq!(status, 400);
    let (status, head, _) = request(addr, "POST", "/console/api/session", &[list, marked], &wrong).await;
    assert_eq!(status, 401);
    assert!(!head.contains("set-cookie"), "{head}");
    let (status, head, _) = request(addr, "POST", "/console/api/session", &[list, marked], &pair(SECRET_KEY)).await;
    assert_eq!(status, 200);
    let cookie_line = head.lines().find(|l| l.starts_with("set-cookie:")).expect("a session cookie").to_owned();
    assert!(cookie_line.contains("httponly") && cookie_line.contains("samesite=strict"), "{cookie_line}");
    let token = cookie_line.split("sluice_console=").nth(1).unwrap().split(';').next().unwrap().to_owned();
    let cookie = format!("sluice_console={token}");
    let session = ("cookie", cookie.as_str());

    // The session without the console's header (what a cross-site form could send): refused.
    let (status, _, _) = request(addr, "POST", "/console/api/call/kinesis/ListStreams", &[list, session], "{}").await;
    assert_eq!(status, 403);
    // Operations answer as the API does, errors included.
    let call = |op: &'static str, body: &'static str| {
        let cookie = cookie.clone();
        async move {
            let path = format!("/console/api/call/{op}");
            request(addr, "POST", &path, &[list, marked, ("cookie", cookie.as_str())], body).await
        }
    };
    let (status, _, body) = call("kinesis/CreateStream", r#"{"StreamName":"from-console","ShardCount":0}"#).await;
    assert_eq!(status, 400);
    assert_eq!(json(&body)["__type"], "ValidationException", "{body}");
    let (status, _, body) = call("kinesis/CreateStream", r#"{"StreamName":"from-console","ShardCount":2}"#).await;
    assert_eq!(status, 200, "{body}");
    let (_, _, body) = call("kinesis/ListStreams", "{}").await;
    assert_eq!(json(&body)["StreamNames"], serde_json::json!(["from-console"]));
    let (status, _, _) = call("kinesis/NoSuchOperation", "{}").await;
    assert_eq!(status, 400);

    // The shards' recent counters: sampled once the console is in use.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let path = "/console/api/shard-stats?stream=from-console";
        let (status, _, body) = request(addr, "GET", path, &[marked, session], "").await;
        assert_eq!(status, 200, "{body}");
        let stats = json(&body);
        assert_eq!(stats["shards"].as_array().unwrap().len(), 2);
        if let Some(sample) = stats["history"].as_array().unwrap().first() {
            assert!(sample["shards"]["shardId-000000000001"]["incomingBytes"].is_u64(), "{body}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no sample: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // A delivery stream landing Parquet; one record that is not JSON fails conversion.
    let f = h.server.firehose();
    create_beijing_parquet(&f, "readings", "readings/", "readings-errors/!{firehose:error-output-type}/").await;
    let lines = beijing(300);
    for chunk in lines.chunks(100) {
        let records: Vec<fh::Record> =
            chunk.iter().map(|l| fh::Record::builder().data(Blob::new(l.as_bytes())).build().unwrap()).collect();
        f.put_record_batch().delivery_stream_name("readings").set_records(Some(records)).send().await.unwrap();
    }
    f.put_record()
        .delivery_stream_name("readings")
        .record(fh::Record::builder().data(Blob::new("not a reading")).build().unwrap())
        .send()
        .await
        .unwrap();
    let get = |path: String| {
        let cookie = cookie.clone();
        async move { request(addr, "GET", &path, &[marked, ("cookie", cookie.as_str())], "").await }
    };
    // Read from the source and held until the buffering interval passes (the test's clock
    // stands still until wait_for moves it): the buffer fill shows it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, _, body) = get("/console/api/delivery-stats?name=readings".into()).await;
        if json(&body)["bufferedBytes"].as_u64().unwrap() > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "nothing buffered: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let s3 = h.s3.client();
    let landed =
        wait_for(&h.clock, async || objects(&s3, "readings/").await, |o| crate::firehose_delivery::rows(o) == 300)
            .await;
    wait_for(&h.clock, async || objects(&s3, "readings-errors/").await, |o| !o.is_empty()).await;

    let (status, _, body) = get("/console/api/lake?name=readings&what=objects".into()).await;
    assert_eq!(status, 200, "{body}");
    let shown = json(&body);
    let shown_objects = shown["objects"].as_array().unwrap();
    assert_eq!(shown_objects.len(), landed.len(), "{body}");
    let rows: i64 = shown_objects.iter().map(|o| o["rows"].as_i64().expect("a Parquet row count")).sum();
    assert_eq!(rows, 300, "row counts from the footers add up to the readings landed");
    for o in shown_objects {
        let (_, bytes) = landed.iter().find(|(k, _)| *k == o["key"].as_str().unwrap()).expect("a landed object");
        assert_eq!(o["size"].as_u64(), Some(bytes.len() as u64));
    }
    let (_, _, body) = get("/console/api/lake?name=readings&what=errors".into()).await;
    let failed = json(&body)["failedRecords"].as_array().unwrap().clone();
    assert_eq!(failed.len(), 1, "{body}");
    assert_eq!(failed[0]["errorOutputType"], "format-conversion-failed");
    assert_eq!(failed[0]["data"], "not a reading");
    assert!(failed[0]["errorMessage"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    let (_, _, body) = get("/console/api/delivery-stats?name=readings".into()).await;
    let stats = json(&body);
    assert_eq!(stats["incomingRecords"], 301);
    assert_eq!(stats["deliveredRecords"], 300);
    assert_eq!(stats["failedRecords"]["format-conversion-failed"], 1);
    assert_eq!(stats["bufferedBytes"], 0, "everything read was delivered");
    let (status, _, _) = get("/console/api/delivery-stats?name=nope".into()).await;
    assert_eq!(status, 404);

    // Signed out: the token opens nothing any more.
    let (status, _, _) = request(addr, "POST", "/console/api/signout", &[marked, session], "").await;
    assert_eq!(status, 200);
    let (status, _, _) = call("kinesis/ListStreams", "{}").await;
    assert_eq!(status, 401);
}
