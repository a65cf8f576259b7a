//! Protocol-level answers as AWS gives them: content types it does not serve, the member a
//! SerializationException's text travels in, STS GetCallerIdentity by the query protocol.

use crate::support::{head_of, TestServer};

fn post(content_type: Option<&str>, target: &str, body: &str) -> String {
    let content_type = content_type.map(|c| format!("Content-Type: {c}\r\n")).unwrap_or_default();
    format!(
        "POST / HTTP/1.1\r\nHost: x\r\n{content_type}X-Amz-Target: {target}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_types_serialization_members_and_sts_answer_as_on_aws() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_unsigned(dir.path()).await;
    let list = "Kinesis_20131202.ListStreams";

    // Another content type: XML, 404 UnknownOperationException for a real operation,
    // 403 AccessDeniedException without one.
    let (status, text) = head_of(server.addr, post(Some("application/x-amz-json-1.0"), list, "{}")).await;
    assert_eq!(status, 404, "{text}");
    assert!(text.ends_with("\r\n\r\n<unknownoperationexception/>\n"), "{text}");
    let (status, text) = head_of(server.addr, post(Some("text/plain"), "Whatever.Whatever", "{}")).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("<accessdeniedexception>"), "{text}");
    // JSON 1.1, plain JSON and no content type at all are served.
    for content_type in [Some("application/x-amz-json-1.1; charset=utf-8"), Some("application/json"), None] {
        let (status, text) = head_of(server.addr, post(content_type, list, "{}")).await;
        assert_eq!(status, 200, "{content_type:?}: {text}");
    }

    // A SerializationException carries its text as `Message` (case kept here: the helper
    // lower-cases, so the raw bytes are checked through a JSON request of our own).
    let (status, answer) = crate::support::raw_request(server.addr, list, br#"{"Limit":"5"}"#).await;
    assert_eq!(status, 400);
    assert_eq!(
        answer,
        serde_json::json!({"__type": "SerializationException", "Message": "class java.lang.String can not be converted to an Integer"})
    );

    // STS GetCallerIdentity (form body, no X-Amz-Target), and an action STS does not have.
    let form = |body: &str| {
        format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let (status, text) = head_of(server.addr, form("Action=GetCallerIdentity&Version=2011-06-15")).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("<account>000000000000</account>") && text.contains("<arn>arn:aws:iam::000000000000:root</arn>"),
        "{text}"
    );
    let (status, text) = head_of(server.addr, form("Action=AssumeRole&Version=2011-06-15")).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("<code>invalidaction</code>"), "{text}");
    server.stop().await;
}
