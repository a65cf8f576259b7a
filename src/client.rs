//! A small Kinesis client over HTTP/1.1 (hyper), signed with SigV4 like the AWS SDKs: what
//! `sluice demo` replays datasets with and `sluice tail` reads with. It speaks the same wire
//! protocol as any producer, so the demo exercises the real request path.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4::SigningParams;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The request could not be sent or the answer read.
    #[error("HTTP: {0}")]
    Http(String),
    /// The server answered with an error (`__type` and message).
    #[error("{kind}: {message}")]
    Api {
        /// `__type`, e.g. `ResourceNotFoundException`.
        kind: String,
        /// The message.
        message: String,
    },
}

/// A Kinesis (and Firehose) JSON 1.1 client for one endpoint and key pair.
#[derive(Debug, Clone)]
pub struct KinesisClient {
    http: Client<HttpConnector, Full<Bytes>>,
    endpoint: String,
    region: String,
    credentials: Credentials,
}

/// One record for [`KinesisClient::put_records`].
#[derive(Debug, Clone)]
pub struct PutEntry<'a> {
    /// Partition key.
    pub partition_key: &'a str,
    /// Data.
    pub data: &'a [u8],
}

impl KinesisClient {
    /// A client for `endpoint` (`http://host:port`), signing for `region` with the key pair.
    pub fn new(endpoint: &str, region: &str, access_key_id: &str, secret_access_key: &str) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self {
            http: Client::builder(TokioExecutor::new()).build(connector),
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            region: region.to_owned(),
            credentials: Credentials::new(access_key_id, secret_access_key, None, None, "sluice"),
        }
    }

    /// Calls `<service prefix>.<action>` (e.g. `Kinesis_20131202.PutRecords`) with `body`;
    /// `signing_name` is `kinesis` or `firehose`.
    pub async fn call(&self, target: &str, signing_name: &str, body: &Value) -> Result<Value, ClientError> {
        let body = serde_json::to_vec(body).expect("JSON serializes");
        let bytes = self.call_raw(target, signing_name, body).await?;
        Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// As [`KinesisClient::call`], with a body already serialized and the answer's bytes
    /// returned unparsed (load generators avoid building JSON trees).
    pub async fn call_raw(&self, target: &str, signing_name: &str, body: Vec<u8>) -> Result<Bytes, ClientError> {
        let uri = format!("{}/", self.endpoint);
        let host = self.endpoint.split("://").nth(1).unwrap_or(&self.endpoint).to_owned();
        let identity = self.credentials.clone().into();
        let params = SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(signing_name)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| ClientError::Http(e.to_string()))?
            .into();
        let headers =
            [("host", host.as_str()), ("content-type", "application/x-amz-json-1.1"), ("x-amz-target", target)];
        let signable = SignableRequest::new("POST", &uri, headers.into_iter(), SignableBody::Bytes(&body))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let (instructions, _) = sign(signable, &params).map_err(|e| ClientError::Http(e.to_string()))?.into_parts();
        let mut request = http::Request::builder()
            .method("POST")
            .uri(&uri)
            .header("host", &host)
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", target)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        instructions.apply_to_request_http1x(&mut request);
        let response = self.http.request(request).await.map_err(|e| ClientError::Http(e.to_string()))?;
        let status = response.status();
        let bytes = response.into_body().collect().await.map_err(|e| ClientError::Http(e.to_string()))?.to_bytes();
        if status.is_success() {
            return Ok(bytes);
        }
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Err(ClientError::Api {
            kind: value["__type"].as_str().unwrap_or("HTTP error").to_owned(),
            message: value["message"].as_str().map_or_else(|| status.to_string(), str::to_owned),
        })
    }

    /// Calls Kinesis action `action`.
    pub async fn kinesis(&self, action: &str, body: &Value) -> Result<Value, ClientError> {
        self.call(&format!("Kinesis_20131202.{action}"), "kinesis", body).await
    }

    /// Calls Firehose action `action`.
    pub async fn firehose(&self, action: &str, body: &Value) -> Result<Value, ClientError> {
        self.call(&format!("Firehose_20150804.{action}"), "firehose", body).await
    }

    /// `PutRecords`; returns the entries that failed (by index) with their error codes, so a
    /// producer can retry exactly those, as the KPL does.
    pub async fn put_records(
        &self,
        stream: &str,
        records: &[PutEntry<'_>],
    ) -> Result<Vec<(usize, String)>, ClientError> {
        // Written and read without a JSON tree per record: with trees, this client cost
        // the demo and the Firehose benchmark more CPU than the server's PutRecords.
        let data_bytes: usize = records.iter().map(|r| r.data.len().div_ceil(3) * 4 + r.partition_key.len() + 40).sum();
        let mut body = Vec::with_capacity(data_bytes + stream.len() + 32);
        body.extend_from_slice(b"{\"StreamName\":");
        serde_json::to_writer(&mut body, stream).expect("a string serializes");
        body.extend_from_slice(b",\"Records\":[");
        for (i, r) in records.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(b"{\"PartitionKey\":");
            serde_json::to_writer(&mut body, r.partition_key).expect("a string serializes");
            body.extend_from_slice(b",\"Data\":\"");
            base64_simd::STANDARD.encode_append(r.data, &mut body);
            body.extend_from_slice(b"\"}");
        }
        body.extend_from_slice(b"]}");
        let out = self.call_raw("Kinesis_20131202.PutRecords", "kinesis", body).await?;
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Answer<'a> {
            #[serde(borrow)]
            records: Vec<AnswerEntry<'a>>,
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct AnswerEntry<'a> {
            #[serde(borrow)]
            error_code: Option<std::borrow::Cow<'a, str>>,
        }
        let answer: Answer<'_> = serde_json::from_slice(&out).map_err(|e| ClientError::Http(e.to_string()))?;
        Ok(answer
            .records
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| r.error_code.map(|c| (i, c.into_owned())))
            .collect())
    }
}
