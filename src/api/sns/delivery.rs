//! Deliveries to HTTP endpoints, and the signature SNS puts on every message.
//!
//! Each HTTP subscription has an outbox (a hidden SQS queue). The server's delivery loop takes
//! what is due ([`due`]), POSTs each message with SNS's headers ([`post`]), and settles it
//! ([`settle`]): a 2xx answer deletes it; a failure leaves it in flight for the delivery
//! policy's `minDelayTarget` (20 s by default), after which it is tried again, up to
//! `numRetries` (3) retries; then it goes to the subscription's dead-letter queue
//! (`RedrivePolicy`), or is dropped, as SNS does. Source: Amazon SNS Developer Guide, "Amazon
//! SNS message delivery retries" and "HTTP/S notification JSON format".
//!
//! Messages are signed as SNS signs them with `SignatureVersion` 2 (SHA256withRSA over the
//! message's canonical string; SNS's default, 1, is SHA1withRSA, which Sluice's crypto
//! library does not sign with: every message says 2, which verifiers honour) with a key kept in `<data_dir>/sns/signing-key.p8`; its
//! self-signed certificate is served at [`CERT_PATH`], which each message's `SigningCertURL`
//! names.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;

/// The client deliveries are POSTed with: http, and https trusting the system's roots (or
/// those of `SSL_CERT_FILE` / `SSL_CERT_DIR`), as SNS trusts public certificates only.
pub type DeliveryClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Makes the delivery client. Without readable system roots it trusts no certificate: https
/// deliveries then fail and are retried as any failure, http ones go on.
pub fn client() -> DeliveryClient {
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = match builder.with_native_roots() {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "no system roots for SNS https deliveries");
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                    rustls::crypto::aws_lc_rs::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .expect("default protocol versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
            )
        }
    };
    Client::builder(hyper_util::rt::TokioExecutor::new()).build(builder.https_or_http().enable_http1().build())
}
use serde_json::Value;

use super::{Sns, Subscription};
use crate::api::sqs::{Outboxed, Sqs};

/// Where the server serves the certificate of the key that signs messages.
pub const CERT_PATH: &str = "/_sluice/sns/SimpleNotificationService.pem";

/// How long an endpoint has to answer a POST: 15 s, SNS's timeout. Source: as above.
pub const POST_TIMEOUT: Duration = Duration::from_secs(15);

/// The key that signs messages and its certificate.
pub struct Signer {
    key: aws_lc_rs::rsa::KeyPair,
    /// The certificate, PEM.
    pub cert_pem: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer")
    }
}

impl Signer {
    /// Reads the signing key of `dir` (`signing-key.p8`), or makes one (RSA, 2048 bits).
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        use aws_lc_rs::encoding::AsDer;
        let path = dir.join("signing-key.p8");
        let key = match std::fs::read(&path) {
            Ok(der) => aws_lc_rs::rsa::KeyPair::from_pkcs8(&der).map_err(|e| std::io::Error::other(e.to_string()))?,
            Err(_) => {
                let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&key)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                sluice_engine::stream::write_atomically(&path, der.as_ref()).map_err(std::io::Error::other)?;
                key
            }
        };
        let der =
            AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&key).map_err(|e| std::io::Error::other(e.to_string()))?;
        let pkcs8 = rustls_pki_types::PrivatePkcs8KeyDer::from(der.as_ref().to_vec());
        let cert_key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let cert = rcgen::CertificateParams::new(vec!["sns.sluice.local".to_owned()])
            .and_then(|p| p.self_signed(&cert_key))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Self { key, cert_pem: cert.pem() })
    }

    /// The base64 SHA256withRSA signature of `doc`'s canonical string (`SignatureVersion` 2).
    pub fn sign(&self, doc: &Value) -> String {
        let text = canonical(doc);
        let mut sig = vec![0; self.key.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        match self.key.sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256, &rng, text.as_bytes(), &mut sig) {
            Ok(()) => base64::engine::general_purpose::STANDARD.encode(sig),
            Err(e) => {
                tracing::error!(error = %e, "cannot sign an SNS message");
                String::new()
            }
        }
    }
}

/// The string SNS signs: each member that the message's type signs, in order, as its name,
/// a newline, its value, a newline. Source: Amazon SNS Developer Guide, "Verifying the
/// signatures of Amazon SNS messages".
pub fn canonical(doc: &Value) -> String {
    let keys: &[&str] = match doc["Type"].as_str() {
        Some("Notification") => &["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"],
        _ => &["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"],
    };
    keys.iter().filter_map(|k| doc.get(*k).and_then(Value::as_str).map(|v| format!("{k}\n{v}\n"))).collect()
}

/// A message due for delivery to an HTTP endpoint.
#[derive(Debug, Clone)]
pub struct Due {
    outbox: String,
    endpoint: String,
    topic_arn: String,
    item: Outboxed,
    retries: u32,
    dead_letter: Option<String>,
}

/// (`minDelayTarget` s, `numRetries`) of a subscription's delivery policy.
fn retry_policy(sub: &Subscription) -> (u32, u32) {
    let policy: Option<Value> = sub.attributes.get("DeliveryPolicy").and_then(|p| serde_json::from_str(p).ok());
    let healthy = policy.as_ref().map(|p| &p["healthyRetryPolicy"]);
    let delay = healthy.and_then(|h| h["minDelayTarget"].as_u64()).unwrap_or(20).clamp(1, 3_600) as u32;
    let retries = healthy.and_then(|h| h["numRetries"].as_u64()).unwrap_or(3).min(100) as u32;
    (delay, retries)
}

/// The messages of every HTTP subscription's outbox that are due now (each then in flight
/// for its retry delay).
pub fn due(sns: &Sns, sqs: &Sqs) -> Vec<Due> {
    let mut out = Vec::new();
    for sub in sns.subscriptions() {
        let Some(outbox) = &sub.outbox else { continue };
        let (delay, retries) = retry_policy(&sub);
        let dead_letter = sub
            .attributes
            .get("RedrivePolicy")
            .and_then(|p| serde_json::from_str::<Value>(p).ok())
            .and_then(|p| p["deadLetterTargetArn"].as_str().map(str::to_owned));
        match sqs.receive_outbox(outbox, delay) {
            Ok(items) => out.extend(items.into_iter().map(|item| Due {
                outbox: outbox.clone(),
                endpoint: sub.endpoint.clone(),
                topic_arn: sub.topic_arn.clone(),
                item,
                retries,
                dead_letter: dead_letter.clone(),
            })),
            Err(e) => {
                tracing::warn!(subscription = %sub.arn, error = %e.message, "cannot read a subscription's outbox")
            }
        }
    }
    out
}

/// POSTs one message; whether the endpoint took it (a 2xx answer within [`POST_TIMEOUT`]).
pub async fn post(client: &DeliveryClient, d: &Due) -> bool {
    let m = &d.item.message;
    let request = http::Request::post(&d.endpoint)
        .header("content-type", "text/plain; charset=UTF-8")
        .header("x-amz-sns-message-type", m.kind)
        .header("x-amz-sns-message-id", &m.message_id)
        .header("x-amz-sns-topic-arn", &d.topic_arn)
        .header("user-agent", "Amazon Simple Notification Service Agent");
    // A confirmation names no subscription yet, as SNS sends it.
    let request = if m.kind == "Notification" {
        request.header("x-amz-sns-subscription-arn", &m.subscription_arn)
    } else {
        request
    };
    let request = if m.raw { request.header("x-amz-sns-rawdelivery", "true") } else { request };
    let Ok(request) = request.body(Full::new(Bytes::from(m.body.clone()))) else { return false };
    match tokio::time::timeout(POST_TIMEOUT, client.request(request)).await {
        Ok(Ok(answer)) => answer.status().is_success(),
        _ => false,
    }
}

/// Settles one delivery: delivered, it leaves the outbox; failed past its retries, it goes to
/// the dead-letter queue (or is dropped without one); otherwise it waits for its retry.
pub fn settle(sqs: &Sqs, d: &Due, delivered: bool) {
    let gone = delivered || d.item.attempts > d.retries;
    if !gone {
        return;
    }
    if !delivered {
        match &d.dead_letter {
            Some(arn) => {
                if let Err(e) = sqs.send_internal(arn, d.item.message.body.clone(), Default::default(), None, None) {
                    // Kept for another try rather than lost.
                    tracing::warn!(dead_letter = %arn, error = %e.message, "cannot dead-letter an SNS delivery; it is tried again");
                    return;
                }
            }
            None => tracing::warn!(endpoint = %d.endpoint, "an SNS delivery failed past its retries and is dropped"),
        }
    }
    if let Err(e) = sqs.delete_outbox(&d.outbox, &d.item.receipt_handle) {
        tracing::warn!(error = %e.message, "cannot remove a settled SNS delivery");
    }
}
