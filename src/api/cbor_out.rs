//! Writing CBOR (RFC 8949) by hand for answers too large to build as values first: the
//! GetRecords answer goes from the mapped frames straight into the body, as the JSON one does.
//! Every head takes its shortest form, as ciborium writes it (and as the AWS Java SDKs'
//! Jackson CBOR parser reads any form).

/// Major type 0: an unsigned integer.
pub const UNSIGNED: u8 = 0;
/// Major type 2: a byte string.
pub const BYTES: u8 = 2;
/// Major type 3: a UTF-8 text string.
pub const TEXT: u8 = 3;
/// Major type 4: an array of `n` items.
pub const ARRAY: u8 = 4;
/// Major type 5: a map of `n` pairs.
pub const MAP: u8 = 5;
/// Major type 6: a tag on the next item.
pub const TAG: u8 = 6;

/// Writes the head of an item of `major` type with argument `n` (a length, a count, a
/// value or a tag number).
pub fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let major = major << 5;
    match n {
        0..=23 => out.push(major | n as u8),
        24..=0xff => out.extend_from_slice(&[major | 24, n as u8]),
        0x100..=0xffff => {
            out.push(major | 25);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(major | 26);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        _ => {
            out.push(major | 27);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

/// Writes a text string.
pub fn text(out: &mut Vec<u8>, s: &str) {
    head(out, TEXT, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Writes a byte string.
pub fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    head(out, BYTES, b.len() as u64);
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use ciborium::value::{Integer, Value};

    use super::*;

    #[test]
    fn heads_at_every_width_read_back_as_ciborium_writes_them() {
        for n in [0u64, 23, 24, 255, 256, 65_535, 65_536, u32::MAX as u64, u32::MAX as u64 + 1, u64::MAX] {
            let mut ours = Vec::new();
            head(&mut ours, UNSIGNED, n);
            let mut theirs = Vec::new();
            ciborium::ser::into_writer(&Value::Integer(Integer::from(n)), &mut theirs).unwrap();
            assert_eq!(ours, theirs, "{n}");
        }
        for len in [0usize, 23, 24, 300, 70_000] {
            let (s, b) = ("é".repeat(len / 2) + &"x".repeat(len % 2), vec![7u8; len]);
            let mut ours = Vec::new();
            text(&mut ours, &s);
            bytes(&mut ours, &b);
            let mut theirs = Vec::new();
            ciborium::ser::into_writer(&Value::Text(s), &mut theirs).unwrap();
            ciborium::ser::into_writer(&Value::Bytes(b), &mut theirs).unwrap();
            assert_eq!(ours, theirs, "{len}");
        }
    }
}
