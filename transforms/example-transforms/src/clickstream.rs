//! Clickstream: Wikipedia edit events. Drops bot edits (`isRobot`), adds `edit_size_bucket`
//! from the size of the change (`|delta|` bytes), and emits the wiki `channel` (without its
//! leading `#`) as the partition key `channel`.

use crate::{object, Verdict};

/// The bucket of an edit changing `bytes` bytes: `tiny` (< 10), `small` (< 100), `medium`
/// (< 1,000), `large` (< 10,000), `huge`.
pub fn size_bucket(bytes: u64) -> &'static str {
    match bytes {
        0..10 => "tiny",
        10..100 => "small",
        100..1_000 => "medium",
        1_000..10_000 => "large",
        _ => "huge",
    }
}

/// Transforms one edit event.
pub fn transform(data: &[u8]) -> Verdict {
    let mut edit = match object(data) {
        Ok(m) => m,
        Err(v) => return v,
    };
    if edit.get("isRobot").and_then(serde_json::Value::as_bool).unwrap_or(false) {
        return Verdict::Dropped;
    }
    let Some(channel) = edit.get("channel").and_then(serde_json::Value::as_str) else {
        return Verdict::Failed("the edit has no channel".into());
    };
    let channel = channel.trim_start_matches('#').to_owned();
    let delta = edit.get("delta").and_then(serde_json::Value::as_i64).unwrap_or(0);
    edit.insert("edit_size_bucket".into(), size_bucket(delta.unsigned_abs()).into());
    Verdict::Ok {
        data: serde_json::to_vec(&edit).expect("JSON values serialize"),
        partition_keys: vec![("channel".into(), channel)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_bots_and_buckets_edits() {
        assert_eq!(transform(br##"{"channel":"#en.wikipedia","isRobot":true,"delta":5}"##), Verdict::Dropped);
        let Verdict::Ok { data, partition_keys } =
            transform(br##"{"channel":"#de.wikipedia","isRobot":false,"delta":-250}"##)
        else {
            panic!("a human edit is kept")
        };
        let v: serde_json::Value = serde_json::from_slice(&data).unwrap();
        assert_eq!(v["edit_size_bucket"], "medium");
        assert_eq!(partition_keys, [("channel".to_owned(), "de.wikipedia".to_owned())]);
        assert!(matches!(transform(b"nope"), Verdict::Failed(_)));
    }
}
