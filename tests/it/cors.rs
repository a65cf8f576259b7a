//! CORS: preflights and `Access-Control-*` headers for configured origins only.

use std::sync::Arc;

use crate::support::{head_of, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_origins_get_preflights_and_cors_headers() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(sluice_engine::ManualClock::new(1_700_000_000_000));
    let server = TestServer::start_with(dir.path(), clock, |c| {
        c.auth = sluice::config::Auth::None;
        c.cors_allowed_origins = vec!["https://app.example.com".into()];
    })
    .await;
    let preflight = |origin: &str| {
        format!(
            "OPTIONS / HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization,content-type,x-amz-target\r\nConnection: close\r\n\r\n"
        )
    };
    let (status, head) = head_of(server.addr, preflight("https://app.example.com")).await;
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("access-control-allow-origin: https://app.example.com"), "{head}");
    assert!(head.contains("access-control-allow-headers: authorization,content-type,x-amz-target"), "{head}");
    assert!(head.contains("access-control-allow-methods: post") && head.contains("access-control-max-age: 172800"));

    let (status, head) = head_of(server.addr, preflight("https://evil.example.com")).await;
    assert_eq!(status, 403, "a preflight from another origin is refused: {head}");
    assert!(!head.contains("access-control-allow-origin"), "{head}");

    let post = |origin: &str| {
        let body = "{}";
        format!(
            "POST / HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Target: Kinesis_20131202.ListStreams\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let (status, head) = head_of(server.addr, post("https://app.example.com")).await;
    assert_eq!(status, 200);
    assert!(head.contains("access-control-allow-origin: https://app.example.com"), "{head}");
    assert!(head.contains("access-control-expose-headers: x-amzn-requestid"), "{head}");
    let (status, head) = head_of(server.addr, post("https://evil.example.com")).await;
    assert_eq!(status, 200, "the API answers; the browser withholds it without the header");
    assert!(!head.contains("access-control-"), "{head}");
    server.stop().await;
}
