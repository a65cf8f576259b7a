//! The console's static files, embedded in the binary (no Node build to run it).

use bytes::Bytes;
use http::{HeaderValue, Response};
use http_body_util::Full;

/// One embedded file.
pub struct Asset {
    body: &'static str,
    content_type: &'static str,
}

/// The asset served at `path`, if any.
pub fn named(path: &str) -> Option<Asset> {
    let (body, content_type) = match path {
        "/console/" | "/console/index.html" => (include_str!("assets/index.html"), "text/html; charset=utf-8"),
        "/console/app.js" => (include_str!("assets/app.js"), "text/javascript; charset=utf-8"),
        "/console/app.css" => (include_str!("assets/app.css"), "text/css; charset=utf-8"),
        _ => return None,
    };
    Some(Asset { body, content_type })
}

impl Asset {
    /// The file as a response, with headers that keep it from being framed or run inline code.
    pub fn response(&self) -> Response<Full<Bytes>> {
        let mut r = Response::new(Full::new(Bytes::from_static(self.body.as_bytes())));
        let h = r.headers_mut();
        h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        h.insert(
            "content-security-policy",
            HeaderValue::from_static(
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
            ),
        );
        h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
        h.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        r
    }
}
