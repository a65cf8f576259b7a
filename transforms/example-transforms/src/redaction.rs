//! PII redaction: anonymous Wikipedia edits carry the editor's IP address as `user`. The
//! address is masked (IPv4: the last two octets; IPv6: all but the first two groups), so the
//! lake keeps the network but not the person.

use std::net::IpAddr;

use crate::{object, Verdict};

/// `user` masked if it is an IP address; `None` if it is a user name.
pub fn mask(user: &str) -> Option<String> {
    match user.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => {
            let o = a.octets();
            Some(format!("{}.{}.x.x", o[0], o[1]))
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            Some(format!("{:x}:{:x}:x:x:x:x:x:x", s[0], s[1]))
        }
    }
}

/// Redacts one edit event.
pub fn transform(data: &[u8]) -> Verdict {
    let mut edit = match object(data) {
        Ok(m) => m,
        Err(v) => return v,
    };
    let masked = edit.get("user").and_then(serde_json::Value::as_str).and_then(mask);
    if let Some(m) = masked {
        edit.insert("user".into(), m.into());
    }
    Verdict::json(&serde_json::Value::Object(edit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_addresses_only() {
        assert_eq!(mask("93.184.216.34").as_deref(), Some("93.184.x.x"));
        assert_eq!(mask("2001:db8::1").as_deref(), Some("2001:db8:x:x:x:x:x:x"));
        assert_eq!(mask("GELongstreet"), None);
        let Verdict::Ok { data, .. } = transform(br#"{"user":"10.1.2.3","page":"P"}"#) else { panic!() };
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&data).unwrap()["user"], "10.1.x.x");
    }
}
