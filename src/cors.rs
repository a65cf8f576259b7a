//! CORS, so a web page can call Kinesis and Firehose with the browser build of the AWS SDK:
//! preflight (`OPTIONS`) answers and `Access-Control-*` headers for the origins the config
//! allows (`cors_allowed_origins`; default none, so browsers refuse cross-origin calls).
//! Headers as AWS's JSON services send them: the exposed headers are the ones the SDKs read
//! (request id, error type), preflights are cached 2 days (172,800 s).

use http::{HeaderMap, HeaderValue};

/// Response headers browsers may read: the ones the AWS SDKs look at.
pub const EXPOSE_HEADERS: &str =
    "x-amzn-RequestId,x-amzn-ErrorType,x-amz-request-id,x-amz-id-2,x-amzn-ErrorMessage,Date";

/// How long a browser may cache a preflight answer, s: 172,800 (2 days).
pub const PREFLIGHT_MAX_AGE_S: u32 = 172_800;

/// The origins allowed to call the server from a browser.
#[derive(Debug, Clone, Default)]
pub struct Cors {
    origins: Vec<String>,
}

impl Cors {
    /// Allows `origins` (`https://app.example.com`, compared exactly, or `*` for any).
    pub fn new(origins: Vec<String>) -> Self {
        Self { origins }
    }

    /// The `Access-Control-Allow-Origin` value for a request's `Origin`, if allowed: the
    /// origin itself when listed, `*` when only the wildcard admits it (as AWS answers).
    pub fn allow(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        let origin = origin?;
        let text = origin.to_str().ok()?;
        if self.origins.iter().any(|o| o == text) {
            Some(origin.clone())
        } else {
            self.origins.iter().any(|o| o == "*").then(|| HeaderValue::from_static("*"))
        }
    }

    /// Adds the headers of an allowed cross-origin answer.
    pub fn decorate(headers: &mut HeaderMap, allowed: HeaderValue) {
        headers.insert("access-control-allow-origin", allowed);
        headers.insert("access-control-expose-headers", HeaderValue::from_static(EXPOSE_HEADERS));
        headers.append("vary", HeaderValue::from_static("Origin"));
    }

    /// Adds a preflight answer's headers: the method and headers the browser asked for.
    pub fn preflight(request: &HeaderMap, headers: &mut HeaderMap, allowed: HeaderValue) {
        headers.insert("access-control-allow-origin", allowed);
        let method = request.get("access-control-request-method").cloned().unwrap_or(HeaderValue::from_static("POST"));
        headers.insert("access-control-allow-methods", method);
        if let Some(asked) = request.get("access-control-request-headers") {
            headers.insert("access-control-allow-headers", asked.clone());
        }
        headers.insert("access-control-max-age", HeaderValue::from(PREFLIGHT_MAX_AGE_S));
        headers.append("vary", HeaderValue::from_static("Origin"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configured_origins_are_allowed() {
        let cors = Cors::new(vec!["https://app.example.com".into()]);
        let ok = HeaderValue::from_static("https://app.example.com");
        assert_eq!(cors.allow(Some(&ok)), Some(ok));
        assert_eq!(cors.allow(Some(&HeaderValue::from_static("https://evil.example.com"))), None);
        assert_eq!(cors.allow(None), None);
        assert_eq!(Cors::default().allow(Some(&HeaderValue::from_static("http://localhost"))), None);
        let any = Cors::new(vec!["*".into()]);
        assert_eq!(any.allow(Some(&HeaderValue::from_static("http://x"))), Some(HeaderValue::from_static("*")));
    }
}
