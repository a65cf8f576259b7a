//! HTTPS: the AWS SDK for Rust talks to a server with `tls_cert`/`tls_key` made by
//! `sluice::tls::self_signed`, trusting only the generated authority; ALPN picks HTTP/2 when
//! the client offers it; plain HTTP on a TLS port gets no answer.

use std::sync::Arc;

use aws_sdk_kinesis::primitives::Blob;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};

use crate::support::{TestServer, ACCESS_KEY, SECRET_KEY};

fn https_client(addr: std::net::SocketAddr, ca_pem: &[u8]) -> aws_sdk_kinesis::Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(
            TlsContext::builder().with_trust_store(TrustStore::empty().with_pem_certificate(ca_pem)).build().unwrap(),
        )
        .build_https();
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
        .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
        // The certificate names localhost and 127.0.0.1; the SDK checks the name.
        .endpoint_url(format!("https://localhost:{}", addr.port()))
        .credentials_provider(aws_sdk_kinesis::config::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
        .http_client(http)
        .retry_config(aws_sdk_kinesis::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_kinesis::Client::from_conf(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_sdk_talks_https_trusting_the_generated_authority_and_alpn_picks_h2() {
    let dir = tempfile::tempdir().unwrap();
    let files = sluice::tls::self_signed(&dir.path().join("tls"), &[]).unwrap();
    let (cert, key) = (files.cert.clone(), files.key.clone());
    let clock = Arc::new(sluice_engine::ManualClock::new(1_700_000_000_000));
    let server = TestServer::start_with(&dir.path().join("data"), clock, move |c| {
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
    })
    .await;
    let ca = std::fs::read(&files.ca).unwrap();
    let client = https_client(server.addr, &ca);
    client.create_stream().stream_name("tls").shard_count(1).send().await.unwrap();
    let put =
        client.put_record().stream_name("tls").partition_key("k").data(Blob::new("over tls")).send().await.unwrap();
    let iterator = client
        .get_shard_iterator()
        .stream_name("tls")
        .shard_id(put.shard_id())
        .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap();
    let records = client.get_records().shard_iterator(iterator.shard_iterator().unwrap()).send().await.unwrap();
    assert_eq!(records.records().len(), 1);
    assert_eq!(records.records()[0].data().as_ref(), b"over tls");

    // ALPN: a client offering h2 and http/1.1 gets h2; one offering http/1.1 only gets that.
    for (offered, expected) in
        [(vec![b"h2".to_vec(), b"http/1.1".to_vec()], b"h2".as_slice()), (vec![b"http/1.1".to_vec()], b"http/1.1")]
    {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pki_types::pem::PemObject::pem_slice_iter(&ca) {
            roots.add(c.unwrap()).unwrap();
        }
        let mut config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        config.alpn_protocols = offered;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let stream = connector.connect(name, tcp).await.unwrap();
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(expected));
    }

    // A plain-HTTP client gets no HTTP answer from the TLS port.
    let plain = server.client();
    assert!(plain.list_streams().send().await.is_err());
    server.stop().await;
}
