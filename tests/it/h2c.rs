//! HTTP/2 without TLS (prior knowledge) on the same port as HTTP/1.1.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::support::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_over_h2c_and_http1_on_one_port() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_unsigned(dir.path()).await;
    for h2 in [true, false] {
        let client = Client::builder(TokioExecutor::new()).http2_only(h2).build_http::<Full<Bytes>>();
        let req = hyper::Request::post(format!("http://{}/", server.addr))
            .header("x-amz-target", "Kinesis_20131202.CreateStream")
            .header("content-type", "application/x-amz-json-1.1")
            .body(Full::new(Bytes::from(format!(r#"{{"StreamName":"h2-{h2}","ShardCount":1}}"#))))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        let want = if h2 { http::Version::HTTP_2 } else { http::Version::HTTP_11 };
        assert_eq!(resp.version(), want);
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().contains_key("x-amzn-requestid"));
        // CreateStream has no output shape: AWS answers an empty body.
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "");
    }
    server.stop().await;
}
