//! A client of etcd's v3 API through its JSON gateway (`POST /v3/kv/range` and the like,
//! served by every etcd since 3.3 on the client port): what cluster coordination needs of
//! etcd, over the HTTP client the server already has.
//!
//! Why the gateway and not gRPC: the gRPC client crates compile etcd's protobuf files at build
//! time (protoc on every machine that builds Sluice, and tonic's build cost); the gateway is
//! the same API, transactions and leases included, as JSON. Keys and values travel base64, and
//! 64-bit integers as strings (protobuf's JSON mapping).

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::{json, Value};

/// How long one call to one endpoint may take before the next endpoint is tried.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Why an etcd call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdError {
    /// No endpoint answered (each one's failure, last first).
    #[error("no etcd endpoint answered: {0}")]
    Unreachable(String),
    /// etcd answered with an error (e.g. a lease that expired: `requested lease not found`).
    #[error("etcd: {0}")]
    Refused(String),
    /// A compare-and-swap of the key kept losing to other writers.
    #[error("etcd: {0} kept changing under a transaction")]
    Contended(String),
}

/// A lease: keys attached to it go when it expires or is revoked.
pub type LeaseId = i64;

/// One key of a range read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value's bytes.
    pub value: Vec<u8>,
    /// The lease it is attached to (0: none).
    pub lease: LeaseId,
    /// The revision of its last change.
    pub mod_revision: i64,
}

/// An etcd cluster, by its client URLs (`http://host:2379`); calls go to the first that
/// answers.
#[derive(Debug, Clone)]
pub struct Etcd {
    http: Client<HttpConnector, Full<Bytes>>,
    endpoints: Vec<String>,
}

fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

/// The first key after every key that starts with `prefix` (etcd's `range_end` of a prefix).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // every key
}

impl Etcd {
    /// A client of the etcd cluster at `endpoints` (at least one).
    pub fn new(endpoints: &[String]) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CALL_TIMEOUT));
        Self {
            http: Client::builder(TokioExecutor::new()).build(connector),
            endpoints: endpoints.iter().map(|e| e.trim_end_matches('/').to_owned()).collect(),
        }
    }

    async fn call(&self, path: &str, body: Value) -> Result<Value, EtcdError> {
        let body = Bytes::from(serde_json::to_vec(&body).expect("JSON serializes"));
        let mut failures = Vec::new();
        for endpoint in &self.endpoints {
            let request = hyper::Request::post(format!("{endpoint}{path}"))
                .header("content-type", "application/json")
                .body(Full::new(body.clone()))
                .map_err(|e| EtcdError::Unreachable(e.to_string()))?;
            let answer = tokio::time::timeout(CALL_TIMEOUT, async {
                let response = self.http.request(request).await.map_err(|e| e.to_string())?;
                let status = response.status();
                let bytes = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
                Ok::<_, String>((status, bytes))
            })
            .await;
            match answer {
                Ok(Ok((status, bytes))) => {
                    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    // The gateway answers gRPC errors as {"error": ..., "code": n} (with HTTP
                    // status 4xx/5xx), and errors inside a stream as {"error": {...}}.
                    let error = v.get("error").map(|e| e.get("message").unwrap_or(e).clone());
                    if let Some(e) = error.filter(|e| !e.is_null()) {
                        return Err(EtcdError::Refused(e.as_str().map_or_else(|| e.to_string(), str::to_owned)));
                    }
                    if !status.is_success() {
                        return Err(EtcdError::Refused(format!("HTTP {status}")));
                    }
                    return Ok(v);
                }
                Ok(Err(e)) => failures.push(format!("{endpoint}: {e}")),
                Err(_) => failures.push(format!("{endpoint}: no answer within {CALL_TIMEOUT:?}")),
            }
        }
        failures.reverse();
        Err(EtcdError::Unreachable(failures.join("; ")))
    }

    /// Grants a lease of `ttl_s` seconds.
    pub async fn grant(&self, ttl_s: u64) -> Result<LeaseId, EtcdError> {
        let v = self.call("/v3/lease/grant", json!({ "TTL": ttl_s })).await?;
        match int(&v["ID"]) {
            0 => Err(EtcdError::Refused(format!("lease grant answered no ID: {v}"))),
            id => Ok(id),
        }
    }

    /// Renews a lease; `Ok(false)` when it has expired (its keys are gone).
    pub async fn keep_alive(&self, lease: LeaseId) -> Result<bool, EtcdError> {
        let v = self.call("/v3/lease/keepalive", json!({ "ID": lease.to_string() })).await?;
        Ok(int(&v["result"]["TTL"]) > 0)
    }

    /// Revokes a lease: its keys go at once.
    pub async fn revoke(&self, lease: LeaseId) -> Result<(), EtcdError> {
        self.call("/v3/lease/revoke", json!({ "ID": lease.to_string() })).await.map(|_| ())
    }

    /// Creates `key` with `value` attached to `lease` unless the key exists: `Ok(None)` when
    /// created, else the existing key (a transaction: two creators never both win).
    pub async fn create(&self, key: &str, value: &[u8], lease: LeaseId) -> Result<Option<KeyValue>, EtcdError> {
        let k = B64.encode(key);
        let v = self
            .call(
                "/v3/kv/txn",
                json!({
                    "compare": [{ "key": k, "target": "CREATE", "result": "EQUAL", "create_revision": "0" }],
                    "success": [{ "request_put": { "key": k, "value": B64.encode(value), "lease": lease.to_string() } }],
                    "failure": [{ "request_range": { "key": k } }],
                }),
            )
            .await?;
        if v["succeeded"].as_bool() == Some(true) {
            return Ok(None);
        }
        let existing = v["responses"][0]["response_range"]["kvs"].as_array().and_then(|kvs| kvs.first()).map(parse_kv);
        // Deleted between the compare and the read: as good as created by someone else.
        Ok(Some(existing.transpose()?.unwrap_or(KeyValue {
            key: key.to_owned(),
            value: Vec::new(),
            lease: 0,
            mod_revision: 0,
        })))
    }

    /// Runs `operation` (one etcd request op, e.g. `{"request_put": ...}`) if `guard` is at
    /// `guard_revision`, its last change's revision (0: `guard` does not exist): the
    /// transaction's revision when it ran, `Ok(None)` when the guard was elsewhere.
    async fn run_guarded(&self, guard: &str, guard_revision: i64, operation: Value) -> Result<Option<i64>, EtcdError> {
        let v = self
            .call(
                "/v3/kv/txn",
                json!({
                    "compare": [{ "key": B64.encode(guard), "target": "MOD", "result": "EQUAL", "mod_revision": guard_revision.to_string() }],
                    "success": [operation],
                }),
            )
            .await?;
        Ok((v["succeeded"].as_bool() == Some(true)).then(|| int(&v["header"]["revision"])))
    }

    /// Puts `key` = `value` attached to `lease` if the key is still at `mod_revision`
    /// (unchanged since read); `Ok(false)` when it changed.
    pub async fn replace(&self, key: &str, value: &[u8], lease: LeaseId, mod_revision: i64) -> Result<bool, EtcdError> {
        let put = json!({ "request_put": { "key": B64.encode(key), "value": B64.encode(value), "lease": lease.to_string() } });
        Ok(self.run_guarded(key, mod_revision, put).await?.is_some())
    }

    /// Puts `key` = `value` (no lease) if `guard` is at `guard_revision`, its last change's
    /// revision (0: `guard` does not exist), in one transaction: the revision of the put, or
    /// `Ok(None)` when the guard was elsewhere (nothing written). `guard` may be `key`.
    pub async fn put_guarded(
        &self,
        guard: &str,
        guard_revision: i64,
        key: &str,
        value: &[u8],
    ) -> Result<Option<i64>, EtcdError> {
        let put = json!({ "request_put": { "key": B64.encode(key), "value": B64.encode(value) } });
        self.run_guarded(guard, guard_revision, put).await
    }

    /// Deletes `key` if it is still at `mod_revision` (unchanged since read); `Ok(false)`
    /// when it changed or is gone.
    pub async fn delete_guarded(&self, key: &str, mod_revision: i64) -> Result<bool, EtcdError> {
        let delete = json!({ "request_delete_range": { "key": B64.encode(key) } });
        Ok(self.run_guarded(key, mod_revision, delete).await?.is_some())
    }

    /// Deletes `key`; `Ok(false)` when there was none.
    pub async fn delete(&self, key: &str) -> Result<bool, EtcdError> {
        let v = self.call("/v3/kv/deleterange", json!({ "key": B64.encode(key) })).await?;
        Ok(int(&v["deleted"]) > 0)
    }

    /// Deletes every key that starts with `prefix`; returns how many.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<i64, EtcdError> {
        let v = self
            .call(
                "/v3/kv/deleterange",
                json!({ "key": B64.encode(prefix), "range_end": B64.encode(prefix_end(prefix.as_bytes())) }),
            )
            .await?;
        Ok(int(&v["deleted"]))
    }

    /// Every key that starts with `prefix`, in key order.
    pub async fn range_prefix(&self, prefix: &str) -> Result<Vec<KeyValue>, EtcdError> {
        let v = self
            .call(
                "/v3/kv/range",
                json!({ "key": B64.encode(prefix), "range_end": B64.encode(prefix_end(prefix.as_bytes())) }),
            )
            .await?;
        v["kvs"].as_array().map_or(Ok(Vec::new()), |kvs| kvs.iter().map(parse_kv).collect())
    }
}

#[derive(Deserialize)]
struct RawKv {
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    lease: Value,
    #[serde(default)]
    mod_revision: Value,
}

fn parse_kv(v: &Value) -> Result<KeyValue, EtcdError> {
    let raw: RawKv = serde_json::from_value(v.clone()).map_err(|e| EtcdError::Refused(format!("a key-value: {e}")))?;
    let bad = |e: base64::DecodeError| EtcdError::Refused(format!("a key-value's base64: {e}"));
    Ok(KeyValue {
        key: String::from_utf8_lossy(&B64.decode(raw.key).map_err(bad)?).into_owned(),
        value: B64.decode(raw.value).map_err(bad)?,
        lease: int(&raw.lease),
        mod_revision: int(&raw.mod_revision),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_at_the_next_key_after_it() {
        assert_eq!(prefix_end(b"/sluice/nodes/"), b"/sluice/nodes0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }
}
