//! Console sessions: random tokens for signed-in key pairs, held in memory (a restart signs
//! everyone out), at most [`SESSIONS_MAX`] at once.

use std::collections::HashMap;
use std::io::Read as _;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a session lasts after sign-in: 12 hours (the AWS console's longest).
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Sessions held at most: 1,024; a sign-in beyond them ends the oldest.
pub const SESSIONS_MAX: usize = 1024;

/// The open sessions: token → (access key id, when it ends).
#[derive(Debug, Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, (String, Instant)>>,
}

impl Sessions {
    /// Opens a session for `access_key_id`; returns its token (64 hex digits from the OS's
    /// random source).
    ///
    /// Errors: `/dev/urandom` cannot be read.
    pub fn open(&self, access_key_id: &str) -> std::io::Result<String> {
        let mut raw = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut raw)?;
        let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.retain(|_, (_, ends)| *ends > now);
        if open.len() >= SESSIONS_MAX {
            if let Some(oldest) = open.iter().min_by_key(|(_, (_, ends))| *ends).map(|(t, _)| t.clone()) {
                open.remove(&oldest);
            }
        }
        open.insert(token.clone(), (access_key_id.to_owned(), now + SESSION_LIFETIME));
        Ok(token)
    }

    /// The access key id of the live session whose token the request's cookie holds.
    pub fn session_of(&self, headers: &http::HeaderMap) -> Option<String> {
        let token = token_of(headers)?;
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(&token).filter(|(_, ends)| *ends > Instant::now()).map(|(key, _)| key.clone())
    }

    /// Ends the request's session.
    pub fn end(&self, headers: &http::HeaderMap) {
        if let Some(token) = token_of(headers) {
            self.open.lock().unwrap_or_else(PoisonError::into_inner).remove(&token);
        }
    }
}

fn token_of(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("sluice_console="))
        .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(c: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::COOKIE, c.parse().unwrap());
        h
    }

    #[test]
    fn a_token_opens_its_session_until_it_ends() {
        let s = Sessions::default();
        let t = s.open("me").unwrap();
        assert_eq!(t.len(), 64);
        assert_ne!(t, s.open("me").unwrap());
        let h = with_cookie(&format!("a=b; sluice_console={t}"));
        assert_eq!(s.session_of(&h).as_deref(), Some("me"));
        assert_eq!(s.session_of(&with_cookie(&format!("sluice_console={}", "0".repeat(64)))), None);
        assert_eq!(s.session_of(&with_cookie("sluice_console=short")), None);
        s.end(&h);
        assert_eq!(s.session_of(&h), None);
    }
}
