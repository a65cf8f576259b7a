//! How deeply a JSON text nests, found without parsing it: one pass over the bytes with a
//! counter, so a record of a million `[` costs a scan, not a parser's stack.
//!
//! Recursive-descent parsers (jq's among them) use a stack frame per level; a producer who
//! puts one deeply nested record must not be able to exhaust it. Records nesting deeper
//! than [`JSON_DEPTH_MAX`] fail alone, before any parser sees them.

/// Deepest nesting of arrays and objects a record may have to be parsed: 128 levels, as
/// serde_json's own recursion limit (far beyond clickstream or telemetry documents).
pub const JSON_DEPTH_MAX: usize = 128;

/// Whether the JSON text `bytes` opens more than `max` arrays or objects inside each other.
/// Brackets inside strings (escapes included) do not count; the text need not be valid.
pub fn nests_deeper_than(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_nesting_outside_strings() {
        assert!(!nests_deeper_than(br#"{"a": [1, {"b": 2}]}"#, 3));
        assert!(nests_deeper_than(br#"{"a": [1, {"b": 2}]}"#, 2));
        assert!(!nests_deeper_than(br#"{"a": "[[[[[[", "b": "\"[[[["}"#, 1));
        assert!(nests_deeper_than(&vec![b'['; 1_000_000], JSON_DEPTH_MAX));
        assert!(!nests_deeper_than(&[b"[".repeat(128), b"]".repeat(128)].concat(), JSON_DEPTH_MAX));
        assert!(!nests_deeper_than(&b"[]".repeat(10_000), 1));
    }
}
