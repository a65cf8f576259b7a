//! What the HTTP benchmark examples share: a Sluice server in the process and a JSON 1.1
//! client for it. Each example uses part of it.
#![allow(dead_code)]

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sluice::config::Config;
use sluice_engine::SystemClock;

/// An HTTP/1.1 client with pooled connections.
pub type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// Starts a server with `config` on a loopback port; its address and a client.
pub async fn start(config: &Config) -> (String, HttpClient) {
    let state = sluice::open_state(config, Arc::new(SystemClock)).expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(sluice::server::serve(listener, state, std::future::pending()));
    (addr, Client::builder(TokioExecutor::new()).build_http())
}

/// Calls Kinesis `action` with a JSON body; the answer's bytes. Panics unless it succeeded.
pub async fn call_raw(client: &HttpClient, addr: &str, action: &str, body: Bytes) -> Bytes {
    let req = hyper::Request::post(format!("http://{addr}/"))
        .header("x-amz-target", format!("Kinesis_20131202.{action}"))
        .header("content-type", "application/x-amz-json-1.1")
        .body(Full::new(body))
        .expect("request");
    let resp = client.request(req).await.expect("response");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    assert!(status.is_success(), "{action}: {status} {}", String::from_utf8_lossy(&bytes));
    bytes
}

/// As [`call_raw`]; the JSON answer, `Null` for actions that answer an empty body.
pub async fn call_bytes(client: &HttpClient, addr: &str, action: &str, body: Bytes) -> serde_json::Value {
    let answer = call_raw(client, addr, action, body).await;
    if answer.is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_slice(&answer).expect("JSON")
}

/// As [`call_bytes`], with the body as a JSON value.
pub async fn call(client: &HttpClient, addr: &str, action: &str, body: serde_json::Value) -> serde_json::Value {
    call_bytes(client, addr, action, Bytes::from(body.to_string())).await
}
