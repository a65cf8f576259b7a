//! AWS Signature Version 4 verification: the server rebuilds the canonical request from the
//! signed headers (HTTP/2's `:authority` among them, as the JavaScript SDK signs it), the
//! query and the body, derives the signing key from the caller's secret, and compares the
//! signatures in constant time. Source: AWS General Reference, "Create a signed AWS API
//! request" (Signature Version 4). The `aws-sigv4` signer cannot sign pseudo-headers, so it
//! serves as the reference in the tests rather than as the verifier.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::api::{ApiError, ErrorKind};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::config::AccessKey;

/// How far a request's `X-Amz-Date` may be from the server's clock: 15 minutes, as AWS allows.
pub const CLOCK_SKEW_MAX: Duration = Duration::from_secs(15 * 60);

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, PartialEq, Eq)]
struct Authorization {
    access_key_id: String,
    date: String,
    region: String,
    service: String,
    signed_headers: Vec<String>,
    signature: String,
}

/// Why an `Authorization` header is not a SigV4 one, in AWS's words
/// (`IncompleteSignatureException`).
fn incomplete(message: String) -> ApiError {
    ApiError::new(ErrorKind::IncompleteSignature, message)
}

/// Parses an `Authorization` header. Errors as AWS words them: a part without `=`, or the
/// list of missing parameters (and a missing date header) followed by the header itself.
fn parse_authorization(h: &str, has_date: bool) -> Result<Authorization, ApiError> {
    // Without a space there is no parameter list at all (a bare token, say).
    let params = h.split_once(' ').map_or("", |(_, rest)| rest);
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in params.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            return Err(incomplete(format!(
                "'{part}' not a valid key=value pair (missing equal-sign) in Authorization header: '{h}'."
            )));
        };
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let mut missing = String::new();
    for (name, value) in [("Credential", credential), ("Signature", signature), ("SignedHeaders", signed)] {
        if value.is_none() {
            missing.push_str(&format!("Authorization header requires '{name}' parameter. "));
        }
    }
    if !has_date {
        missing.push_str("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ");
    }
    if !missing.is_empty() {
        return Err(incomplete(format!("{missing}Authorization={h}")));
    }
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        unreachable!("each missing parameter was reported above")
    };
    let malformed = || {
        incomplete(format!(
            "Credential '{credential}' is not <access key id>/<date>/<region>/<service>/aws4_request. Authorization={h}"
        ))
    };
    if !h.starts_with("AWS4-HMAC-SHA256 ") {
        return Err(incomplete(format!("Unsupported AWS 'algorithm': '{}'.", h.split(' ').next().unwrap_or(""))));
    }
    parse_scope(credential, signed, signature).ok_or_else(malformed)
}

/// An `Authorization` from a credential `<key>/<date>/<region>/<service>/aws4_request`,
/// signed header names joined by `;`, and a signature; `None` when the credential has
/// another form.
fn parse_scope(credential: &str, signed: &str, signature: &str) -> Option<Authorization> {
    let mut scope = credential.split('/');
    let a = Authorization {
        access_key_id: scope.next()?.to_owned(),
        date: scope.next()?.to_owned(),
        region: scope.next()?.to_owned(),
        service: scope.next()?.to_owned(),
        signed_headers: signed.split(';').map(str::to_owned).collect(),
        signature: signature.to_owned(),
    };
    match scope.next() {
        Some("aws4_request") if scope.next().is_none() => Some(a),
        _ => None,
    }
}

/// The query parameters AWS requires of a presigned (query-string) request, in the order
/// its message lists the missing ones.
const QUERY_AUTH_PARAMS: [&str; 5] =
    ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature", "X-Amz-SignedHeaders", "X-Amz-Date"];

/// Longest validity of a presigned request: 7 days (604,800 s), as SigV4 allows.
const PRESIGNED_EXPIRES_MAX_S: u64 = 604_800;

/// The signature of a presigned request, from its query parameters (decoded). Errors as
/// AWS words them: the missing parameters, then `Re-examine the query-string parameters.`
fn parse_query_auth(params: &[(String, String)]) -> Result<(Authorization, String, Option<u64>), ApiError> {
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let mut missing = String::new();
    for name in QUERY_AUTH_PARAMS {
        if param(name).is_none_or(str::is_empty) {
            missing.push_str(&format!("AWS query-string parameters must include '{name}'. "));
        }
    }
    if !missing.is_empty() {
        return Err(incomplete(format!("{missing}Re-examine the query-string parameters.")));
    }
    let algorithm = param("X-Amz-Algorithm").unwrap_or_default();
    if algorithm != "AWS4-HMAC-SHA256" {
        return Err(incomplete(format!("Unsupported AWS 'algorithm': '{algorithm}'.")));
    }
    let credential = param("X-Amz-Credential").unwrap_or_default();
    let auth = parse_scope(
        credential,
        param("X-Amz-SignedHeaders").unwrap_or_default(),
        param("X-Amz-Signature").unwrap_or_default(),
    )
    .ok_or_else(|| {
        incomplete(format!(
            "Credential '{credential}' is not <access key id>/<date>/<region>/<service>/aws4_request. Re-examine the query-string parameters."
        ))
    })?;
    let expires = match param("X-Amz-Expires") {
        None => None,
        Some(e) => Some(e.parse::<u64>().ok().filter(|&e| e <= PRESIGNED_EXPIRES_MAX_S).ok_or_else(|| {
            incomplete(format!(
                "X-Amz-Expires must be a number of seconds from 0 to {PRESIGNED_EXPIRES_MAX_S}, not '{e}'. Re-examine the query-string parameters."
            ))
        })?),
    };
    Ok((auth, param("X-Amz-Date").unwrap_or_default().to_owned(), expires))
}

/// A query string's parameters, percent-decoded, in order.
fn query_params(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (uri_decode(k), uri_decode(v))
        })
        .collect()
}

/// Parses `YYYYMMDDTHHMMSSZ`.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

fn denied(kind: ErrorKind, message: &str) -> ApiError {
    ApiError::new(kind, message)
}

const MISMATCH: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

/// A request whose signature headers passed [`check_headers`]: what is left to check is
/// the signature itself, which covers the body.
#[derive(Debug)]
pub struct HeadersChecked<'a> {
    key: &'a AccessKey,
    auth: Authorization,
    amz_date: String,
    canonical_headers: String,
    /// Presigned: the signature travels in the query, which it does not cover.
    query_auth: bool,
}

/// The signing scope a request must carry: the server's region and the API's service name
/// (`kinesis`, `firehose`). Source: AWS General Reference, "Signature Version 4".
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The server's region (config `region`).
    pub region: &'a str,
    /// The signing name of the API the request is for.
    pub service: &'a str,
}

/// Checks everything about a request's signature that does not need the body: the
/// `Authorization` header's form (or, for a presigned request, the `X-Amz-*` query
/// parameters'), the access key, the date and its skew (or the presigned request's expiry),
/// the credential scope (region and service) and that `host` is signed. Runs before the body
/// is read, so a client without valid credentials never gets the server to read or hold its
/// body. `headers` are the request's headers (names lower-case; over HTTP/2, `host` is the
/// `:authority`), `query` the raw query string, `now` the server's time.
///
/// Errors: no signature at all → `MissingAuthenticationTokenException`; both an
/// `Authorization` header and `X-Amz-Algorithm` in the query, a date more than 15 minutes
/// off, an expired presigned request, another region or service in the scope, or `host` not
/// signed → `InvalidSignatureException`; a malformed header or missing query parameters →
/// `IncompleteSignatureException`; an unknown access key → `UnrecognizedClientException`.
pub fn check_headers<'a>(
    keys: &'a [AccessKey],
    headers: &[(&str, &str)],
    query: &str,
    scope: Scope<'_>,
    now: SystemTime,
) -> Result<HeadersChecked<'a>, ApiError> {
    let header = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| *v);
    let params = query_params(query);
    let query_auth = params.iter().any(|(k, _)| k == "X-Amz-Algorithm");
    let (auth, amz_date, expires) = match (header("authorization"), query_auth) {
        (Some(_), true) => {
            return Err(denied(
                ErrorKind::InvalidSignature,
                "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header.",
            ))
        }
        (None, false) => return Err(denied(ErrorKind::MissingAuthenticationToken, "Missing Authentication Token")),
        (Some(h), false) => {
            let has_date = header("x-amz-date").is_some() || header("date").is_some();
            let auth = parse_authorization(h, has_date)?;
            let amz_date = header("x-amz-date").ok_or_else(|| denied(ErrorKind::InvalidSignature, MISMATCH))?;
            (auth, amz_date.to_owned(), None)
        }
        (None, true) => parse_query_auth(&params)?,
    };
    let key = keys.iter().find(|k| k.access_key_id == auth.access_key_id).ok_or_else(|| {
        denied(ErrorKind::UnrecognizedClient, "The security token included in the request is invalid.")
    })?;
    let time = parse_amz_date(&amz_date)
        .filter(|_| amz_date.starts_with(&auth.date))
        .ok_or_else(|| denied(ErrorKind::InvalidSignature, MISMATCH))?;
    match expires {
        // A presigned request is valid from its date for X-Amz-Expires seconds.
        Some(expires) => {
            let until = time + Duration::from_secs(expires);
            if now > until || time > now + CLOCK_SKEW_MAX {
                return Err(denied(
                    ErrorKind::InvalidSignature,
                    &format!("Signature expired: {amz_date} is now earlier or later than the server's time, or past its X-Amz-Expires of {expires} s."),
                ));
            }
        }
        None => {
            let skew = now.duration_since(time).or_else(|_| time.duration_since(now)).unwrap_or_default();
            if skew > CLOCK_SKEW_MAX {
                return Err(denied(
                    ErrorKind::InvalidSignature,
                    &format!(
                        "Signature expired: {amz_date} is now earlier or later than the server's time by more than 15 min."
                    ),
                ));
            }
        }
    }
    if auth.region != scope.region {
        return Err(denied(
            ErrorKind::InvalidSignature,
            &format!("Credential should be scoped to a valid region, not '{}'. ", auth.region),
        ));
    }
    if auth.service != scope.service {
        return Err(denied(
            ErrorKind::InvalidSignature,
            &format!("Credential should be scoped to correct service: '{}'. ", scope.service),
        ));
    }
    if !auth.signed_headers.iter().any(|h| h == "host" || h == ":authority") {
        return Err(denied(
            ErrorKind::InvalidSignature,
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }
    let mut canonical_headers = String::new();
    for name in &auth.signed_headers {
        // Every value of a header, in order, joined by commas; spaces trimmed and collapsed.
        let values: Vec<String> = headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        if values.is_empty() {
            return Err(denied(ErrorKind::InvalidSignature, MISMATCH));
        }
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    Ok(HeadersChecked { key, auth, amz_date, canonical_headers, query_auth })
}

impl HeadersChecked<'_> {
    /// The access key id that signed the request.
    pub fn access_key_id(&self) -> &str {
        &self.key.access_key_id
    }

    /// Recomputes the signature over the method, URI (path and query, without a presigned
    /// request's `X-Amz-Signature`), signed headers and `body`, and compares it in constant
    /// time.
    ///
    /// Errors: `InvalidSignatureException` with AWS's mismatch message.
    pub fn verify_body(self, method: &str, uri: &str, body: &[u8]) -> Result<(), ApiError> {
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        let query = if self.query_auth {
            query
                .split('&')
                .filter(|p| uri_decode(p.split('=').next().unwrap_or("")) != "X-Amz-Signature")
                .collect::<Vec<_>>()
                .join("&")
        } else {
            query.to_owned()
        };
        let canonical_request = format!(
            "{method}\n{}\n{}\n{}\n{}\n{}",
            canonical_path(path),
            canonical_query(&query),
            self.canonical_headers,
            self.auth.signed_headers.join(";"),
            hex(&Sha256::digest(body)),
        );
        let scope = format!("{}/{}/{}/aws4_request", self.auth.date, self.auth.region, self.auth.service);
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
            self.amz_date,
            hex(&Sha256::digest(canonical_request.as_bytes()))
        );
        let mut key = hmac(format!("AWS4{}", self.key.secret_access_key).as_bytes(), self.auth.date.as_bytes());
        for part in [&self.auth.region, &self.auth.service, "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let expected = hex(&hmac(&key, string_to_sign.as_bytes()));
        if !constant_time_eq(expected.as_bytes(), self.auth.signature.as_bytes()) {
            return Err(denied(ErrorKind::InvalidSignature, MISMATCH));
        }
        Ok(())
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any size");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 3986 percent-encoding of everything but the unreserved characters, as SigV4 wants.
fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-decodes `s` (`+` stays `+`); invalid escapes are kept as they are.
pub(crate) fn uri_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex_at = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
        match (b[i], hex_at(i + 1), hex_at(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The canonical URI: each path segment as received, decoded and encoded again (AWS
/// services other than S3 sign the path encoded twice; the signer encodes once more).
fn canonical_path(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    path.split('/').map(|seg| uri_encode(&uri_encode(&uri_decode(seg)))).collect::<Vec<_>>().join("/")
}

/// The canonical query string: parameters sorted by name then value, each encoded.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (uri_encode(&uri_decode(k)), uri_encode(&uri_decode(v)))
        })
        .collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// Whether `a == b`, in time that depends only on the lengths: a signature compared byte
/// by byte with an early exit tells an attacker how many leading bytes were right.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks a whole request's signature: [`check_headers`], then [`HeadersChecked::verify_body`].
pub fn verify(
    keys: &[AccessKey],
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    scope: Scope<'_>,
    now: SystemTime,
) -> Result<(), ApiError> {
    let query = uri.split_once('?').map_or("", |(_, q)| q);
    check_headers(keys, headers, query, scope, now)?.verify_body(method, uri, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_authorization_header() {
        let a = parse_authorization(
            "AWS4-HMAC-SHA256 Credential=AKID/20240102/us-east-1/kinesis/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=abc",
            true,
        )
        .unwrap();
        assert_eq!(a.access_key_id, "AKID");
        assert_eq!((a.date.as_str(), a.region.as_str(), a.service.as_str()), ("20240102", "us-east-1", "kinesis"));
        assert_eq!(a.signed_headers, ["content-type", "host", "x-amz-date"]);
        assert_eq!(a.signature, "abc");
        let e = parse_authorization("Bearer x", true).unwrap_err();
        assert_eq!(
            (e.kind, e.message.as_str()),
            (
                ErrorKind::IncompleteSignature,
                "'x' not a valid key=value pair (missing equal-sign) in Authorization header: 'Bearer x'."
            )
        );
        let e = parse_authorization("token", false).unwrap_err();
        assert_eq!(
            e.message,
            "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization=token"
        );
        let e = parse_authorization("AWS4-HMAC-SHA256 Credential=AKID/20240102/us-east-1/kinesis/aws4_request", true)
            .unwrap_err();
        assert!(e.message.starts_with("Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. Authorization=AWS4"), "{}", e.message);
    }

    /// The AWS SDK for Rust's signer is the reference: what it signs verifies, with a session
    /// token and a query string too, and a changed body, header or secret does not.
    #[test]
    fn verifies_what_the_aws_sdk_signer_signs() {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
        use aws_sigv4::sign::v4::SigningParams;
        let keys = [AccessKey { access_key_id: "AKID".into(), secret_access_key: "secret/with+chars".into() }];
        let now = UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        let body = br#"{"StreamName":"s","ShardCount":1}"#;
        for (uri, token) in [("/", None), ("/?b=2&a=1&sp=a%20b", Some("session-token"))] {
            let identity = aws_credential_types::Credentials::new(
                "AKID",
                "secret/with+chars",
                token.map(str::to_owned),
                None,
                "t",
            )
            .into();
            let params = SigningParams::builder()
                .identity(&identity)
                .region("us-east-1")
                .name("kinesis")
                .time(now)
                .settings(SigningSettings::default())
                .build()
                .unwrap()
                .into();
            let base = [
                ("host", "127.0.0.1:4567"),
                ("content-type", "application/x-amz-json-1.1"),
                ("x-amz-target", "Kinesis_20131202.CreateStream"),
            ];
            let full_uri = format!("http://127.0.0.1:4567{uri}");
            let request =
                SignableRequest::new("POST", &full_uri, base.iter().copied(), SignableBody::Bytes(body)).unwrap();
            let (instructions, _) = sign(request, &params).unwrap().into_parts();
            let mut headers: Vec<(String, String)> =
                base.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
            headers.extend(instructions.headers().map(|(k, v)| (k.to_owned(), v.to_owned())));
            let as_refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let scope = Scope { region: "us-east-1", service: "kinesis" };
            verify(&keys, "POST", uri, &as_refs, body, scope, now).unwrap();
            let e = verify(&keys, "POST", uri, &as_refs, b"{}", scope, now).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidSignature);
            let mut changed = as_refs.clone();
            changed[2].1 = "Kinesis_20131202.DeleteStream";
            assert!(verify(&keys, "POST", uri, &changed, body, scope, now).is_err());
            let other = [AccessKey { access_key_id: "AKID".into(), secret_access_key: "other".into() }];
            assert!(verify(&other, "POST", uri, &as_refs, body, scope, now).is_err());
        }
    }

    /// A presigned request (signature in the query, as `aws-sigv4` writes it with
    /// `SignatureLocation::QueryParams`) verifies; AWS's errors for mixed and partial ones.
    #[test]
    fn verifies_presigned_requests_and_words_their_errors_as_aws() {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings};
        use aws_sigv4::sign::v4::SigningParams;
        let keys = [AccessKey { access_key_id: "AKID".into(), secret_access_key: "secret".into() }];
        let now = UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        let body = br#"{"StreamName":"s"}"#;
        let identity = aws_credential_types::Credentials::new("AKID", "secret", None, None, "t").into();
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(Duration::from_secs(300));
        let params = SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("kinesis")
            .time(now)
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let base = [("host", "127.0.0.1:4567"), ("x-amz-target", "Kinesis_20131202.DescribeStream")];
        let request =
            SignableRequest::new("POST", "http://127.0.0.1:4567/", base.iter().copied(), SignableBody::Bytes(body))
                .unwrap();
        let (instructions, _) = sign(request, &params).unwrap().into_parts();
        let query: Vec<String> = instructions.params().iter().map(|(k, v)| format!("{k}={}", uri_encode(v))).collect();
        let uri = format!("/?{}", query.join("&"));
        let scope = Scope { region: "us-east-1", service: "kinesis" };
        verify(&keys, "POST", &uri, &base, body, scope, now).unwrap();
        let later = now + Duration::from_secs(301);
        let e = verify(&keys, "POST", &uri, &base, body, scope, later).unwrap_err();
        assert!(e.message.starts_with("Signature expired"), "{}", e.message);
        assert_eq!(verify(&keys, "POST", &uri, &base, b"{}", scope, now).unwrap_err().message, MISMATCH);

        let both = [base[0], base[1], ("authorization", "AWS4-HMAC-SHA256 Credential=x")];
        let e = verify(&keys, "POST", &uri, &both, body, scope, now).unwrap_err();
        assert_eq!(
            (e.kind, e.message.as_str()),
            (
                ErrorKind::InvalidSignature,
                "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header."
            )
        );
        let e = verify(
            &keys,
            "POST",
            "/?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20251124T000000Z",
            &base,
            body,
            scope,
            now,
        )
        .unwrap_err();
        assert_eq!(
            (e.kind, e.message.as_str()),
            (
                ErrorKind::IncompleteSignature,
                "AWS query-string parameters must include 'X-Amz-Credential'. AWS query-string parameters must include 'X-Amz-Signature'. AWS query-string parameters must include 'X-Amz-SignedHeaders'. Re-examine the query-string parameters."
            )
        );
        let e = verify(&keys, "POST", "/", &base, body, scope, now).unwrap_err();
        assert_eq!(
            (e.kind, e.message.as_str()),
            (ErrorKind::MissingAuthenticationToken, "Missing Authentication Token")
        );
    }

    #[test]
    fn compares_in_constant_time_and_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn parses_amz_dates() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(UNIX_EPOCH));
        assert_eq!(parse_amz_date("20240229T120000Z"), Some(UNIX_EPOCH + Duration::from_secs(1_709_208_000)));
        assert_eq!(parse_amz_date("20241301T000000Z"), None);
        assert_eq!(parse_amz_date("2024-01-01"), None);
    }
}
