//! Hostile input through the real API: names that look like paths, integers that wrap,
//! signatures for another region or service, bodies without credentials, records that nest
//! without end. Each test failed on the code before the fix it guards.

use std::time::{Duration, SystemTime};

use aws_sdk_firehose::primitives::Blob as FhBlob;
use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::primitives::Blob;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::firehose_delivery::{destination, kinesis_source, partition_by, wait_for, Harness};
use crate::s3_server::objects;
use crate::support::{first_shard_iterator, TestServer, ACCESS_KEY, SECRET_KEY};

fn code<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(r: Result<T, E>) -> (String, String) {
    let e = r.expect_err("the call must fail");
    (e.code().unwrap_or_default().to_owned(), e.message().unwrap_or_default().to_owned())
}

/// `.` and `..` are valid stream names (`[a-zA-Z0-9_.-]+`). Creating and deleting them once
/// emptied the whole data directory; now they are streams like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_named_dot_and_dot_dot_are_ordinary_streams() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let k = server.client();
    for name in ["keep", "..", ".", "..."] {
        k.create_stream().stream_name(name).shard_count(1).send().await.unwrap();
        k.put_record().stream_name(name).partition_key("p").data(Blob::new(name.as_bytes())).send().await.unwrap();
    }
    let firehose = server.firehose();
    firehose
        .create_delivery_stream()
        .delivery_stream_name("..")
        .extended_s3_destination_configuration(destination("dots/", "dots-errors/").build().unwrap())
        .send()
        .await
        .unwrap();
    firehose.delete_delivery_stream().delivery_stream_name("..").send().await.unwrap();
    k.delete_stream().stream_name("..").send().await.unwrap();
    k.delete_stream().stream_name(".").send().await.unwrap();
    assert!(dir.path().join("LOCK").exists(), "the data directory's lock file is still there");
    server.stop().await;

    let server = TestServer::start(dir.path()).await;
    let k = server.client();
    let names = k.list_streams().send().await.unwrap().stream_names().to_vec();
    assert_eq!(names, ["...", "keep"]);
    for name in ["keep", "..."] {
        let it = first_shard_iterator(&k, name).await;
        let got = k.get_records().shard_iterator(it).send().await.unwrap();
        assert_eq!(got.records().len(), 1, "{name}");
        assert_eq!(got.records()[0].data().as_ref(), name.as_bytes());
    }
    // ".." can be made again, empty.
    k.create_stream().stream_name("..").shard_count(1).send().await.unwrap();
    server.stop().await;
}

/// A ShardCount past u32 once wrapped in release builds, passed the shard limit and
/// aborted the process allocating ~137 GB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_shard_counts_are_refused_by_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let k = server.client();
    for count in [9_999_999_999_i64, 4_294_967_296, 4_294_967_295, 2_147_483_647, 501] {
        let body = serde_json::json!({"StreamName": "big", "ShardCount": count}).to_string();
        let (status, answer) = signed_request(server.addr, "Kinesis_20131202.CreateStream", body.as_bytes()).await;
        assert_eq!(status, 400, "{count}: {answer}");
        assert_eq!(answer["__type"], "LimitExceededException", "{count}: {answer}");
    }
    assert!(k.list_streams().send().await.unwrap().stream_names().is_empty());
    server.stop().await;
}

/// A signature for another region or service is refused, as AWS refuses it; so is one
/// that does not sign `host`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_for_another_region_or_service_or_without_host_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let body = br#"{"StreamName":"s","ShardCount":1}"#;
    let target = "Kinesis_20131202.CreateStream";
    let send = |region: &'static str, service: &'static str, sign_host: bool| {
        let addr = server.addr;
        async move { signed_request_as(addr, target, body, region, service, sign_host).await }
    };
    let (status, answer) = send("eu-west-1", "kinesis", true).await;
    assert_eq!((status, answer["__type"].as_str()), (400, Some("InvalidSignatureException")), "{answer}");
    assert_eq!(answer["message"], "Credential should be scoped to a valid region, not 'eu-west-1'. ");
    let (status, answer) = send("us-east-1", "firehose", true).await;
    assert_eq!((status, answer["__type"].as_str()), (400, Some("InvalidSignatureException")), "{answer}");
    assert_eq!(answer["message"], "Credential should be scoped to correct service: 'kinesis'. ");
    let (status, answer) = send("us-east-1", "kinesis", false).await;
    assert_eq!((status, answer["__type"].as_str()), (400, Some("InvalidSignatureException")), "{answer}");
    assert_eq!(answer["message"], "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.");
    // The same request signed properly goes through: the refusals above were about scope.
    let (status, answer) = send("us-east-1", "kinesis", true).await;
    assert_eq!(status, 200, "{answer}");
    server.stop().await;
}

/// A client without credentials gets its answer without sending its body: the server no
/// longer reads (and holds) up to 15 MiB per request before checking the signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_requests_are_answered_before_their_body_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {}\r\nX-Amz-Target: Kinesis_20131202.PutRecords\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\n\r\n",
        server.addr,
        10 << 20
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // No body is sent. Before the fix the server waited for all 10 MiB and this read hung.
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf))
        .await
        .expect("the server answers without the body")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("MissingAuthenticationTokenException"), "{text}");
    server.stop().await;
}

/// A shard iterator names a stream; once that stream is deleted and another is made under
/// the same name, the old iterator reads nothing of the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iterators_do_not_survive_a_delete_and_recreate() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let k = server.client();
    k.create_stream().stream_name("s").shard_count(1).send().await.unwrap();
    let it = first_shard_iterator(&k, "s").await;
    k.delete_stream().stream_name("s").send().await.unwrap();
    k.create_stream().stream_name("s").shard_count(1).send().await.unwrap();
    k.put_record().stream_name("s").partition_key("p").data(Blob::new("secret of the new owner")).send().await.unwrap();
    let (c, _) = code(k.get_records().shard_iterator(it).send().await);
    assert_eq!(c, "ResourceNotFoundException");
    server.stop().await;
}

/// One record of a million `[` with a jq partitioning query once overflowed the parser's
/// stack and aborted the server, and every restart crashed again. Now that record fails
/// alone and the others land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deeply_nested_record_fails_alone_and_the_server_goes_on() {
    let h = Harness::start(Some(1_700_000_000_000), |_| {}).await;
    let s3c = h.s3.client();
    let f = h.server.firehose();
    let dest = partitioned_by("nested", "{k: .k}").buffering_hints(
        aws_sdk_firehose::types::BufferingHints::builder().interval_in_seconds(1).size_in_mbs(5).build(),
    );
    f.create_delivery_stream()
        .delivery_stream_name("nested")
        .extended_s3_destination_configuration(dest.build().unwrap())
        .send()
        .await
        .unwrap();
    let bomb = vec![b'['; 1_000_000];
    let records = [br#"{"k":"a"}"#.to_vec(), bomb, br#"{"k":"b"}"#.to_vec()];
    put_batch(&f, "nested", &records).await;
    h.clock.advance(2_000);
    let landed = wait_for(&h.clock, || objects(&s3c, "nested/"), |o| o.len() >= 2).await;
    assert_eq!(landed.len(), 2, "one object per partition key");
    let errors = wait_for(&h.clock, || objects(&s3c, "nested-errors/processing-failed/"), |o| !o.is_empty()).await;
    let lines = error_lines(&errors);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0]["errorMessage"].as_str().unwrap().contains("levels deep"), "{}", lines[0]);
    // The server still answers.
    f.list_delivery_streams().send().await.unwrap();
    h.server.stop().await;
}

/// A Kinesis source deleted and created again under its name was read from the old
/// stream's positions, silently skipping the new stream's first records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_source_stream_is_read_from_its_start() {
    let h = Harness::start(Some(1_700_000_000_000), |_| {}).await;
    let s3c = h.s3.client();
    let k = h.server.client();
    k.create_stream().stream_name("src").shard_count(1).send().await.unwrap();
    let f = h.server.firehose();
    let dest = destination("re/", "re-errors/").buffering_hints(
        aws_sdk_firehose::types::BufferingHints::builder().interval_in_seconds(1).size_in_mbs(5).build(),
    );
    f.create_delivery_stream()
        .delivery_stream_name("re")
        .delivery_stream_type(aws_sdk_firehose::types::DeliveryStreamType::KinesisStreamAsSource)
        .kinesis_stream_source_configuration(kinesis_source("src"))
        .extended_s3_destination_configuration(dest.build().unwrap())
        .send()
        .await
        .unwrap();
    for i in 0..20 {
        k.put_record()
            .stream_name("src")
            .partition_key("p")
            .data(Blob::new(format!("old-{i}\n")))
            .send()
            .await
            .unwrap();
    }
    h.clock.advance(2_000);
    wait_for(&h.clock, || objects(&s3c, "re/"), |o| lines_of(o).len() >= 20).await;
    k.delete_stream().stream_name("src").send().await.unwrap();
    k.create_stream().stream_name("src").shard_count(1).send().await.unwrap();
    for i in 0..5 {
        k.put_record()
            .stream_name("src")
            .partition_key("p")
            .data(Blob::new(format!("new-{i}\n")))
            .send()
            .await
            .unwrap();
    }
    h.clock.advance(2_000);
    let landed = wait_for(&h.clock, || objects(&s3c, "re/"), |o| lines_of(o).len() >= 25).await;
    let mut lines = lines_of(&landed);
    lines.sort();
    let mut want: Vec<String> = (0..5).map(|i| format!("new-{i}")).chain((0..20).map(|i| format!("old-{i}"))).collect();
    want.sort();
    assert_eq!(lines, want);
    h.server.stop().await;
}

/// A destination under `<name>/<k>/` partitioned by jq `query` (which gives `k`), errors under
/// `<name>-errors/<error output type>/`.
fn partitioned_by(
    name: &str,
    query: &str,
) -> aws_sdk_firehose::types::builders::ExtendedS3DestinationConfigurationBuilder {
    destination(
        &format!("{name}/!{{partitionKeyFromQuery:k}}/"),
        &format!("{name}-errors/!{{firehose:error-output-type}}/"),
    )
    .dynamic_partitioning_configuration(
        aws_sdk_firehose::types::DynamicPartitioningConfiguration::builder().enabled(true).build(),
    )
    .processing_configuration(partition_by(query))
}

/// Puts `records` into delivery stream `name` with one PutRecordBatch; all must be taken.
async fn put_batch(f: &aws_sdk_firehose::Client, name: &str, records: &[impl AsRef<[u8]>]) {
    let batch: Vec<_> = records
        .iter()
        .map(|d| aws_sdk_firehose::types::Record::builder().data(FhBlob::new(d.as_ref())).build().unwrap())
        .collect();
    let out = f.put_record_batch().delivery_stream_name(name).set_records(Some(batch)).send().await.unwrap();
    assert_eq!(out.failed_put_count(), 0);
}

/// The error records (one JSON object a line) of error objects.
fn error_lines(objects: &[(String, Vec<u8>)]) -> Vec<serde_json::Value> {
    objects
        .iter()
        .flat_map(|(_, b)| {
            b.split(|c| *c == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn lines_of(objects: &[(String, Vec<u8>)]) -> Vec<String> {
    objects
        .iter()
        .flat_map(|(_, b)| String::from_utf8_lossy(b).lines().map(str::to_owned).collect::<Vec<_>>())
        .filter(|l| !l.is_empty())
        .collect()
}

/// A raw HTTP/1.1 request signed with the test key for us-east-1 / kinesis.
async fn signed_request(addr: std::net::SocketAddr, target: &str, body: &[u8]) -> (u16, serde_json::Value) {
    signed_request_as(addr, target, body, "us-east-1", "kinesis", true).await
}

/// A raw HTTP/1.1 request signed (with `aws-sigv4`, as the SDKs sign) for `region` and
/// `service`; `host` is among the signed headers only if `sign_host`.
async fn signed_request_as(
    addr: std::net::SocketAddr,
    target: &str,
    body: &[u8],
    region: &str,
    service: &str,
    sign_host: bool,
) -> (u16, serde_json::Value) {
    let head = signed_head(addr, target, body, region, service, sign_host);
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    parse_response(&response)
}

fn parse_response(response: &[u8]) -> (u16, serde_json::Value) {
    let text = String::from_utf8_lossy(response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}

/// The head (request line and headers, with the blank line) of a signed request for `body`.
fn signed_head(
    addr: std::net::SocketAddr,
    target: &str,
    body: &[u8],
    region: &str,
    service: &str,
    sign_host: bool,
) -> String {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use aws_sigv4::sign::v4::SigningParams;
    let host = addr.to_string();
    let identity = aws_credential_types::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test").into();
    let params = SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let headers = [("content-type", "application/x-amz-json-1.1"), ("x-amz-target", target), ("host", host.as_str())];
    let request = SignableRequest::new("POST", "/", headers.iter().copied(), SignableBody::Bytes(body)).unwrap();
    let (instructions, _) = sign(request, &params).unwrap().into_parts();
    let mut head = format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Target: {target}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in instructions.headers() {
        // Without `host` in SignedHeaders (the signer always signs it, so it is cut out).
        let value = if sign_host { value.to_owned() } else { value.replace("host;", "") };
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// A server whose `[server]` limits are `adjust`ed.
async fn server_with_limits(
    dir: &std::path::Path,
    adjust: impl FnOnce(&mut sluice::config::ServerSettings),
) -> TestServer {
    let now = SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    TestServer::start_with(dir, std::sync::Arc::new(sluice_engine::ManualClock::new(now)), |c| adjust(&mut c.server))
        .await
}

/// Reads until the server closes the connection; `None` if it has not within 20 s.
async fn read_until_closed(stream: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut out)).await.ok()?.ok()?;
    Some(out)
}

/// Connections a client opens and leaves (no byte sent, or half a request) are closed: each
/// held a descriptor and buffers for good before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_limits(dir.path(), |s| {
        s.idle_timeout_ms = 300;
        s.header_read_timeout_ms = 300;
    })
    .await;
    let mut idle = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    assert!(read_until_closed(&mut idle).await.is_some(), "an idle connection must be closed");
    let mut half = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Tar").await.unwrap();
    assert!(read_until_closed(&mut half).await.is_some(), "a request whose headers never end must be closed");
    // A signed request whose body never comes gets an error once the body time is up.
    let server2_dir = tempfile::tempdir().unwrap();
    let server2 = server_with_limits(server2_dir.path(), |s| s.body_read_timeout_ms = 300).await;
    let body = br#"{"StreamName":"s","ShardCount":1}"#;
    let head = signed_head(server2.addr, "Kinesis_20131202.CreateStream", body, "us-east-1", "kinesis", true);
    let mut slow = tokio::net::TcpStream::connect(server2.addr).await.unwrap();
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&body[..5]).await.unwrap();
    let answer = read_until_closed(&mut slow).await.expect("the server answers a body that never completes");
    let (status, answer) = parse_response(&answer);
    assert_eq!((status, answer["__type"].as_str()), (400, Some("SerializationException")), "{answer}");
    assert!(server2.client().list_streams().send().await.unwrap().stream_names().is_empty());
    // A connection that never sends a byte is held no longer than the header time, however
    // long the idle time is.
    let server3_dir = tempfile::tempdir().unwrap();
    let server3 = server_with_limits(server3_dir.path(), |s| {
        s.header_read_timeout_ms = 300;
        s.idle_timeout_ms = 600_000;
    })
    .await;
    let mut silent = tokio::net::TcpStream::connect(server3.addr).await.unwrap();
    assert!(read_until_closed(&mut silent).await.is_some(), "a silent connection must be closed at the header time");
    server.stop().await;
    server2.stop().await;
    server3.stop().await;
}

/// Past `max_connections` the server stops accepting until a connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_wait_until_one_closes() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_limits(dir.path(), |s| s.max_connections = 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tokio::net::TcpStream::connect(server.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = server.client();
    let waiting = tokio::spawn(async move { client.list_streams().send().await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "a fourth connection must not be served while three are open");
    held.pop();
    let answered = tokio::time::timeout(Duration::from_secs(20), waiting).await.expect("served once a slot frees");
    answered.unwrap().unwrap();
    server.stop().await;
}

/// A partition key value longer than a file name made an object key no store could hold;
/// its write was retried without end. Now its record fails at once and the rest land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_value_too_long_for_a_key_fails_its_record_alone() {
    let h = Harness::start(Some(1_700_000_000_000), |_| {}).await;
    let s3c = h.s3.client();
    let f = h.server.firehose();
    let dest = partitioned_by("long", "{k: .k}");
    f.create_delivery_stream()
        .delivery_stream_name("long")
        .extended_s3_destination_configuration(dest.build().unwrap())
        .send()
        .await
        .unwrap();
    let long = "x".repeat(300);
    let records = [r#"{"k":"a"}"#.to_owned(), format!(r#"{{"k":"{long}"}}"#)];
    put_batch(&f, "long", &records).await;
    let errors = wait_for(&h.clock, || objects(&s3c, "long-errors/s3-failed/"), |o| !o.is_empty()).await;
    let line: serde_json::Value = serde_json::from_slice(errors[0].1.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(line["errorCode"], "S3.KeyTooLongError", "{line}");
    let landed = wait_for(&h.clock, || objects(&s3c, "long/"), |o| !o.is_empty()).await;
    assert_eq!(landed.len(), 1);
    assert!(landed[0].0.starts_with("long/a/"), "{}", landed[0].0);
    h.server.stop().await;
}

/// One stream whose metadata is corrupt once kept the whole server from starting. Now
/// that stream is quarantined (its files kept) and every other stream is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_stream_is_quarantined_and_the_server_serves_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let k = server.client();
    for name in ["good", "bad"] {
        k.create_stream().stream_name(name).shard_count(1).send().await.unwrap();
        k.put_record().stream_name(name).partition_key("p").data(Blob::new(name)).send().await.unwrap();
    }
    server.stop().await;
    let mut damaged = 0;
    for e in std::fs::read_dir(dir.path().join("streams")).unwrap() {
        let meta = e.unwrap().path().join("stream.json");
        let text = std::fs::read_to_string(&meta).unwrap();
        if text.contains("\"bad\"") {
            std::fs::write(&meta, &text[..text.len() / 2]).unwrap();
            damaged += 1;
        }
    }
    assert_eq!(damaged, 1);
    let server = TestServer::start(dir.path()).await;
    let k = server.client();
    assert_eq!(k.list_streams().send().await.unwrap().stream_names(), ["good"]);
    k.put_record().stream_name("good").partition_key("p").data(Blob::new("more")).send().await.unwrap();
    server.stop().await;
}

/// A jq query that loops, or builds without end, once hung a blocking thread forever (and
/// then DeleteDeliveryStream and SIGTERM with it) or exhausted memory; one that reads the
/// clock made re-delivered object keys differ. Now the query runs with a budget per record:
/// the records it cannot finish fail alone, the others land, and the delivery stream can
/// be deleted. Builtins that read the clock or the environment are refused at creation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jq_queries_run_on_a_budget_and_cannot_read_the_clock() {
    let h = Harness::start(Some(1_700_000_000_000), |_| {}).await;
    let s3c = h.s3.client();
    let f = h.server.firehose();
    let with_query = |q: &str| partitioned_by("jq", q).build().unwrap();
    for q in ["{k: now | tostring}", "{k: env.HOME}", "{k: (\"x\" | stderr)}"] {
        let refused = f
            .create_delivery_stream()
            .delivery_stream_name("clock")
            .extended_s3_destination_configuration(with_query(q))
            .send()
            .await;
        let (c, m) = code(refused);
        assert_eq!(c, "InvalidArgumentException", "{q}: {m}");
    }
    let q = r#"if .k == "loop" then (def f: f; f) elif .k == "bomb" then {k: ([range(1e10)] | length | tostring)} else {k: .k} end"#;
    f.create_delivery_stream()
        .delivery_stream_name("budget")
        .extended_s3_destination_configuration(with_query(q))
        .send()
        .await
        .unwrap();
    let records = [r#"{"k":"a"}"#, r#"{"k":"loop"}"#, r#"{"k":"bomb"}"#, r#"{"k":"b"}"#];
    put_batch(&f, "budget", &records).await;
    let landed = wait_for(&h.clock, || objects(&s3c, "jq/"), |o| o.len() >= 2).await;
    let mut keys: Vec<&str> = landed.iter().map(|(k, _)| k.split('/').nth(1).unwrap()).collect();
    keys.sort();
    assert_eq!(keys, ["a", "b"]);
    let errors = wait_for(&h.clock, || objects(&s3c, "jq-errors/processing-failed/"), |o| !o.is_empty()).await;
    let lines = error_lines(&errors);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines.iter().all(|l| l["errorMessage"].as_str().unwrap().contains("budget")), "{lines:?}");
    // Nothing is left running: the delivery stream is deleted at once.
    tokio::time::timeout(Duration::from_secs(30), f.delete_delivery_stream().delivery_stream_name("budget").send())
        .await
        .expect("DeleteDeliveryStream does not wait on a query")
        .unwrap();
    h.server.stop().await;
}

/// Large bodies wait for their share of the body budget; a small request never queues
/// behind them (before, one ListStreams waited behind every 10 MiB body in line).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_requests_do_not_queue_behind_large_bodies_waiting_for_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_limits(dir.path(), |s| {
        s.body_bytes_in_flight_mb = 12;
        s.body_read_timeout_ms = 60_000;
    })
    .await;
    let body = vec![b' '; 12 << 20];
    let mut held = Vec::new();
    for _ in 0..3 {
        // Signed headers for a 12 MiB body, then a trickle of it: the first takes the whole
        // budget, the others wait in line.
        let head = signed_head(server.addr, "Kinesis_20131202.PutRecords", &body, "us-east-1", "kinesis", true);
        let mut c = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        c.write_all(head.as_bytes()).await.unwrap();
        c.write_all(&body[..1024]).await.unwrap();
        held.push(c);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let listed = tokio::time::timeout(Duration::from_secs(10), server.client().list_streams().send()).await;
    assert!(listed.expect("ListStreams is answered while large bodies wait").is_ok());
    drop(held);
    server.stop().await;
}

/// A malformed `Authorization` header is `IncompleteSignatureException` naming each missing
/// part, as AWS words it, not a signature mismatch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_authorization_headers_name_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let send = |authorization: &'static str| {
        let addr = server.addr;
        async move {
            let head = format!(
                "POST / HTTP/1.1\r\nHost: {addr}\r\nX-Amz-Target: Kinesis_20131202.ListStreams\r\nContent-Type: application/x-amz-json-1.1\r\nAuthorization: {authorization}\r\nX-Amz-Date: 20261129T000000Z\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
            );
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.write_all(head.as_bytes()).await.unwrap();
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await.unwrap();
            parse_response(&response)
        }
    };
    let (status, answer) =
        send("AWS4-HMAC-SHA256 Credential=AKIDSLUICETEST/20261129/us-east-1/kinesis/aws4_request").await;
    assert_eq!((status, answer["__type"].as_str()), (400, Some("IncompleteSignatureException")), "{answer}");
    assert_eq!(
        answer["message"],
        "Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. Authorization=AWS4-HMAC-SHA256 Credential=AKIDSLUICETEST/20261129/us-east-1/kinesis/aws4_request"
    );
    let (_, answer) = send("AWS4-HMAC-SHA256 Credential=AKIDSLUICETEST/x, SignedHeaders=host, Signature").await;
    assert_eq!(answer["__type"], "IncompleteSignatureException");
    assert_eq!(
        answer["message"],
        "'Signature' not a valid key=value pair (missing equal-sign) in Authorization header: 'AWS4-HMAC-SHA256 Credential=AKIDSLUICETEST/x, SignedHeaders=host, Signature'."
    );
    server.stop().await;
}

/// `ProcessingConfiguration.Enabled: false` turns every processor off: the delimiter
/// processor once still appended `\n` to every record of a disabled configuration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_processing_configuration_appends_no_delimiter() {
    let h = Harness::start(Some(1_700_000_000_000), |_| {}).await;
    let s3c = h.s3.client();
    let f = h.server.firehose();
    for (name, enabled, want) in [("delim-off", false, "onetwo"), ("delim-on", true, "one\ntwo\n")] {
        let processing = aws_sdk_firehose::types::ProcessingConfiguration::builder()
            .enabled(enabled)
            .processors(
                aws_sdk_firehose::types::Processor::builder()
                    .r#type(aws_sdk_firehose::types::ProcessorType::AppendDelimiterToRecord)
                    .build()
                    .unwrap(),
            )
            .build();
        f.create_delivery_stream()
            .delivery_stream_name(name)
            .extended_s3_destination_configuration(
                destination(&format!("{name}/"), &format!("{name}-errors/"))
                    .processing_configuration(processing)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        put_batch(&f, name, &["one", "two"]).await;
        let prefix = format!("{name}/");
        let landed = wait_for(&h.clock, || objects(&s3c, &prefix), |o| !o.is_empty()).await;
        assert_eq!(landed.len(), 1, "{name}");
        assert_eq!(String::from_utf8_lossy(&landed[0].1), want, "{name}");
    }
    h.server.stop().await;
}

/// Unsent GetRecords answers share a budget of record bytes: with 1 MiB of it, an answer
/// that could hold 3 MB carries about 1 MiB; the next calls carry the rest, and nothing is
/// lost or repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_records_answers_are_sized_to_the_answer_budget() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let server = TestServer::start_with(dir.path(), std::sync::Arc::new(sluice_engine::ManualClock::new(now)), |c| {
        c.server.get_records_bytes_in_flight_mb = 1;
        c.throttle = sluice::config::Throttle::Off;
    })
    .await;
    let k = server.client();
    k.create_stream().stream_name("s").shard_count(1).send().await.unwrap();
    let record = |i: usize| format!("{i:08}").repeat(1_250).into_bytes(); // 10,000 bytes
    for chunk in 0..6 {
        let entries = (chunk * 50..chunk * 50 + 50).map(|i| {
            aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                .partition_key("p")
                .data(Blob::new(record(i)))
                .build()
                .unwrap()
        });
        let out = k.put_records().stream_name("s").set_records(Some(entries.collect())).send().await.unwrap();
        assert_eq!(out.failed_record_count(), Some(0));
    }
    let mut it = first_shard_iterator(&k, "s").await;
    let mut pages = Vec::new();
    let mut read = Vec::new();
    loop {
        let page = k.get_records().shard_iterator(&it).limit(10_000).send().await.unwrap();
        pages.push(page.records().len());
        read.extend(page.records().iter().map(|r| r.data().as_ref().to_vec()));
        it = page.next_shard_iterator().unwrap().to_owned();
        if page.records().is_empty() {
            break;
        }
    }
    // 1 MiB of 10,000-byte records (+ 1-byte keys): 104 fit, and one more may pass the grant.
    assert!((100..=105).contains(&pages[0]), "the first answer held {} records", pages[0]);
    assert_eq!(read, (0..300).map(record).collect::<Vec<_>>(), "every record once, in order");
    assert!(pages.len() >= 4, "300 records of 10 KB in answers of about 1 MiB: {pages:?}");
    server.stop().await;
}
