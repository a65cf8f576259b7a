//! STS `GetCallerIdentity` on the server's port (the AWS query protocol: a form-encoded
//! `Action=GetCallerIdentity&Version=2011-06-15`, an XML answer). Producers such as the KPL
//! call it at start to learn their account; Sluice answers with the identity of the access
//! key that signed the request. Source: AWS STS API reference, GetCallerIdentity.

use crate::api::{ApiError, ErrorKind};

/// The STS API version the query protocol names.
pub const STS_VERSION: &str = "2011-06-15";

const XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// Whether a request without `X-Amz-Target` is an STS query-protocol request: a form body or
/// an `Action=` in the query.
pub fn is_sts(content_type: Option<&str>, query: &str) -> bool {
    let form = content_type
        .is_some_and(|c| c.trim_start().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
    form || query.split('&').any(|p| p.starts_with("Action="))
}

/// Percent- and plus-decoded form parameters.
fn form_params(text: &str) -> Vec<(String, String)> {
    let decode = |s: &str| crate::sigv4::uri_decode(&s.replace('+', " "));
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Escapes text for XML content.
fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Answers an STS request (parameters from `query` and the form `body`) for the caller with
/// `access_key_id` (`None` without authentication) in `account_id`: status and XML body.
pub fn answer(
    query: &str,
    body: &[u8],
    access_key_id: Option<&str>,
    account_id: &str,
    request_id: &str,
) -> (u16, String) {
    let mut params = form_params(query);
    params.extend(form_params(&String::from_utf8_lossy(body)));
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    match (param("Action"), param("Version")) {
        (Some("GetCallerIdentity"), Some(STS_VERSION) | None) => {
            let (user_id, arn) = match access_key_id {
                Some(key) => (key.to_owned(), format!("arn:aws:iam::{account_id}:user/{key}")),
                None => (account_id.to_owned(), format!("arn:aws:iam::{account_id}:root")),
            };
            let xml = format!(
                "<GetCallerIdentityResponse xmlns=\"{XMLNS}\">\n  <GetCallerIdentityResult>\n    <Arn>{}</Arn>\n    <UserId>{}</UserId>\n    <Account>{}</Account>\n  </GetCallerIdentityResult>\n  <ResponseMetadata>\n    <RequestId>{request_id}</RequestId>\n  </ResponseMetadata>\n</GetCallerIdentityResponse>\n",
                xml_escape(&arn),
                xml_escape(&user_id),
                xml_escape(account_id)
            );
            (200, xml)
        }
        (Some(action), _) => error(
            400,
            "InvalidAction",
            &format!("Could not find operation {action} for version {}", param("Version").unwrap_or(STS_VERSION)),
            request_id,
        ),
        (None, _) => error(400, "MissingAction", "Missing Action", request_id),
    }
}

/// An STS error document: `<ErrorResponse><Error><Type>Sender</Type><Code>..`.
fn error(status: u16, code: &str, message: &str, request_id: &str) -> (u16, String) {
    let xml = format!(
        "<ErrorResponse xmlns=\"{XMLNS}\">\n  <Error>\n    <Type>Sender</Type>\n    <Code>{code}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{request_id}</RequestId>\n</ErrorResponse>\n",
        xml_escape(message)
    );
    (status, xml)
}

/// A signature failure as STS answers it: status 403 and STS's code for it.
pub fn auth_error(e: &ApiError, request_id: &str) -> (u16, String) {
    let code = match e.kind {
        ErrorKind::MissingAuthenticationToken => "MissingAuthenticationToken",
        ErrorKind::UnrecognizedClient => "InvalidClientTokenId",
        ErrorKind::IncompleteSignature => "IncompleteSignature",
        ErrorKind::InvalidSignature => "SignatureDoesNotMatch",
        _ => return error(e.kind.status(), "InternalFailure", &e.message, request_id),
    };
    error(403, code, &e.message, request_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_get_caller_identity_and_refuses_other_actions() {
        let (status, xml) =
            answer("", b"Action=GetCallerIdentity&Version=2011-06-15", Some("AKID"), "123456789012", "r1");
        assert_eq!(status, 200);
        assert!(xml.contains("<Arn>arn:aws:iam::123456789012:user/AKID</Arn>"), "{xml}");
        assert!(xml.contains("<Account>123456789012</Account>") && xml.contains("<RequestId>r1</RequestId>"));
        let (status, xml) = answer("", b"Action=AssumeRole&Version=2011-06-15", Some("AKID"), "1", "r");
        assert_eq!(status, 400);
        assert!(xml.contains("<Code>InvalidAction</Code>") && xml.contains("Could not find operation AssumeRole"));
        assert!(is_sts(Some("application/x-www-form-urlencoded; charset=utf-8"), ""));
        assert!(is_sts(None, "Action=GetCallerIdentity&Version=2011-06-15"));
        assert!(!is_sts(Some("application/x-amz-json-1.1"), ""));
    }
}
