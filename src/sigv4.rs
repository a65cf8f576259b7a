//! AWS Signature Version 4 verification: the server recomputes the signature of each
//! request with the `aws-sigv4` crate (the same code the AWS SDK for Rust signs with) from
//! the signed headers, the body and the caller's secret key, and compares.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4::SigningParams;
use sluice_engine::api::{ApiError, ErrorKind};

use crate::config::AccessKey;

/// How far a request's `X-Amz-Date` may be from the server's clock: 15 minutes, as AWS allows.
pub const CLOCK_SKEW_MAX: Duration = Duration::from_secs(15 * 60);

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, PartialEq, Eq)]
struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(h: &str) -> Option<Authorization<'_>> {
    let rest = h.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let mut scope = credential?.split('/');
    let a = Authorization {
        access_key_id: scope.next()?,
        date: scope.next()?,
        region: scope.next()?,
        service: scope.next()?,
        signed_headers: signed?.split(';').collect(),
        signature: signature?,
    };
    (scope.next()? == "aws4_request").then_some(a)
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
    auth: Authorization<'a>,
    time: SystemTime,
    token: Option<String>,
    signed: Vec<(&'a str, &'a str)>,
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
/// `Authorization` header's form, the access key, the date and its skew, the credential
/// scope (region and service) and that `host` is signed. Runs before the body is read, so
/// a client without valid credentials never gets the server to read or hold its body.
/// `headers` are the request's headers (names lower-case; over HTTP/2, `host` is the
/// `:authority`), `now` the server's time.
///
/// Errors: no `Authorization` header → `MissingAuthenticationTokenException`; an unknown
/// access key → `UnrecognizedClientException`; a malformed header, a date more than 15
/// minutes off, another region or service in the scope, or `host` not signed →
/// `InvalidSignatureException`.
pub fn check_headers<'a>(
    keys: &'a [AccessKey],
    headers: &'a [(&'a str, &'a str)],
    scope: Scope<'_>,
    now: SystemTime,
) -> Result<HeadersChecked<'a>, ApiError> {
    let header = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| *v);
    let Some(auth) = header("authorization") else {
        return Err(denied(ErrorKind::MissingAuthenticationToken, "Missing Authentication Token"));
    };
    let auth = parse_authorization(auth).ok_or_else(|| {
        denied(
            ErrorKind::InvalidSignature,
            "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters.",
        )
    })?;
    let key = keys.iter().find(|k| k.access_key_id == auth.access_key_id).ok_or_else(|| {
        denied(ErrorKind::UnrecognizedClient, "The security token included in the request is invalid.")
    })?;
    let amz_date = header("x-amz-date").ok_or_else(|| denied(ErrorKind::InvalidSignature, MISMATCH))?;
    let time = parse_amz_date(amz_date)
        .filter(|_| amz_date.starts_with(auth.date))
        .ok_or_else(|| denied(ErrorKind::InvalidSignature, MISMATCH))?;
    let skew = now.duration_since(time).or_else(|_| time.duration_since(now)).unwrap_or_default();
    if skew > CLOCK_SKEW_MAX {
        return Err(denied(
            ErrorKind::InvalidSignature,
            &format!(
                "Signature expired: {amz_date} is now earlier or later than the server's time by more than 15 min."
            ),
        ));
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
    if !auth.signed_headers.contains(&"host") {
        return Err(denied(
            ErrorKind::InvalidSignature,
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }
    let token = header("x-amz-security-token").map(str::to_owned);
    // The signer adds x-amz-date (from `time`) and the session token itself.
    let signed: Vec<(&str, &str)> = auth
        .signed_headers
        .iter()
        .filter(|h| !matches!(**h, "x-amz-date" | "x-amz-security-token"))
        .map(|h| header(h).map(|v| (*h, v)).ok_or_else(|| denied(ErrorKind::InvalidSignature, MISMATCH)))
        .collect::<Result<_, _>>()?;
    Ok(HeadersChecked { key, auth, time, token, signed })
}

impl HeadersChecked<'_> {
    /// Recomputes the signature over the method, URI (path and query), signed headers and
    /// `body`, and compares it in constant time.
    ///
    /// Errors: `InvalidSignatureException` with AWS's mismatch message.
    pub fn verify_body(self, method: &str, uri: &str, body: &[u8]) -> Result<(), ApiError> {
        let identity =
            Credentials::new(&self.key.access_key_id, &self.key.secret_access_key, self.token, None, "sluice").into();
        let mut settings = SigningSettings::default();
        settings.excluded_headers = None;
        let params: aws_sigv4::http_request::SigningParams = SigningParams::builder()
            .identity(&identity)
            .region(self.auth.region)
            .name(self.auth.service)
            .time(self.time)
            .settings(settings)
            .build()
            .map_err(|_| denied(ErrorKind::InvalidSignature, MISMATCH))?
            .into();
        let request = SignableRequest::new(method, uri, self.signed.into_iter(), SignableBody::Bytes(body))
            .map_err(|_| denied(ErrorKind::InvalidSignature, MISMATCH))?;
        let expected = sign(request, &params).map_err(|_| denied(ErrorKind::InvalidSignature, MISMATCH))?;
        if !constant_time_eq(expected.signature().as_bytes(), self.auth.signature.as_bytes()) {
            return Err(denied(ErrorKind::InvalidSignature, MISMATCH));
        }
        Ok(())
    }
}

/// Whether `a == b`, in time that depends only on the lengths: a signature compared byte
/// by byte with an early exit tells an attacker how many leading bytes were right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
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
    check_headers(keys, headers, scope, now)?.verify_body(method, uri, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_authorization_header() {
        let a = parse_authorization(
            "AWS4-HMAC-SHA256 Credential=AKID/20240102/us-east-1/kinesis/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=abc",
        )
        .unwrap();
        assert_eq!(a.access_key_id, "AKID");
        assert_eq!((a.date, a.region, a.service), ("20240102", "us-east-1", "kinesis"));
        assert_eq!(a.signed_headers, ["content-type", "host", "x-amz-date"]);
        assert_eq!(a.signature, "abc");
        assert!(parse_authorization("Bearer x").is_none());
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
