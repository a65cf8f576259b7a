//! `RecordDeAggregation`: one record that holds several (JSON objects one after another, or
//! pieces separated by a delimiter) becomes several records before any transform runs, as
//! Firehose does. Source: Firehose developer guide, "Apply dynamic partitioning to aggregated
//! data" (`SubRecordType` `JSON` or `DELIMITED`; the delimiter base64-encoded; at most 500
//! sub-records per record; deaggregation → transform → partitioning keys).

use base64::Engine as _;

use crate::plan::SourceRecord;

/// Most sub-records one record splits into: 500 (AWS's cap). The rest of a record past the
/// 499th split stays together in the 500th, so nothing is dropped.
pub const SUB_RECORDS_MAX: usize = 500;

/// How records split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deaggregation {
    /// `SubRecordType` `JSON`: consecutive JSON objects (`{"a":1}{"a":2}` or JSON lines).
    Json,
    /// `SubRecordType` `DELIMITED`, with the decoded `Delimiter`.
    Delimited(Vec<u8>),
}

/// A processor's `Delimiter` parameter: base64, as Firehose takes it (`IyMjIw==` is `####`).
/// Errors name the parameter and why.
pub fn decode_delimiter(value: &str) -> Result<Vec<u8>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|_| format!("Delimiter '{value}' must be base64-encoded (for '####', IyMjIw==)."))?;
    if bytes.is_empty() {
        return Err("Delimiter must not be empty.".into());
    }
    Ok(bytes)
}

impl Deaggregation {
    /// The splitting of a `RecordDeAggregation` processor's parameters.
    pub fn from_parameters(sub_record_type: Option<&str>, delimiter: Option<&str>) -> Result<Self, String> {
        match sub_record_type {
            Some("JSON") => Ok(Self::Json),
            Some("DELIMITED") => {
                let d =
                    delimiter.ok_or("RecordDeAggregation with SubRecordType DELIMITED needs a Delimiter parameter.")?;
                Ok(Self::Delimited(decode_delimiter(d)?))
            }
            Some(other) => Err(format!("SubRecordType '{other}' is not valid; use JSON or DELIMITED.")),
            None => Err("RecordDeAggregation needs a SubRecordType parameter (JSON or DELIMITED).".into()),
        }
    }

    /// Splits every record; sub-records keep their record's sequence number, arrival time and
    /// partition key. A record that does not split (not JSON, no delimiter) stays as it is.
    pub fn split(&self, records: Vec<SourceRecord>) -> Vec<SourceRecord> {
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            let pieces = match self {
                Self::Json => json_pieces(&r.data),
                Self::Delimited(d) => delimited_pieces(&r.data, d),
            };
            match pieces {
                Some(pieces) if pieces.len() > 1 => {
                    out.extend(pieces.into_iter().map(|data| SourceRecord { data, ..r.clone() }));
                }
                _ => out.push(r),
            }
        }
        out
    }
}

/// The JSON documents of `data` as the bytes they were written with; `None` when it is not
/// a sequence of JSON values.
fn json_pieces(data: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut stream = serde_json::Deserializer::from_slice(data).into_iter::<serde::de::IgnoredAny>();
    let mut bounds = Vec::new();
    let mut start = 0;
    while let Some(doc) = stream.next() {
        doc.ok()?;
        let end = stream.byte_offset();
        bounds.push((start, end));
        start = end;
    }
    Some(cap(bounds.iter().map(|&(a, b)| data[a..b].trim_ascii().to_vec()).collect()))
}

fn delimited_pieces(data: &[u8], delimiter: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut pieces = Vec::new();
    let mut rest = data;
    while let Some(at) = rest.windows(delimiter.len()).position(|w| w == delimiter) {
        pieces.push(rest[..at].to_vec());
        rest = &rest[at + delimiter.len()..];
    }
    if !rest.is_empty() {
        pieces.push(rest.to_vec());
    }
    Some(cap(pieces))
}

/// At most [`SUB_RECORDS_MAX`] pieces: the ones past it are joined to the last.
fn cap(mut pieces: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    if pieces.len() > SUB_RECORDS_MAX {
        let tail: Vec<u8> = pieces.split_off(SUB_RECORDS_MAX - 1).concat();
        pieces.push(tail);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(data: &[u8]) -> SourceRecord {
        SourceRecord { sequence: 7, arrival_ms: 1, partition_key: "k".into(), data: data.to_vec() }
    }

    fn datas(records: &[SourceRecord]) -> Vec<&[u8]> {
        records.iter().map(|r| r.data.as_slice()).collect()
    }

    #[test]
    fn json_and_delimited_records_split_and_others_stay_whole() {
        let json = Deaggregation::from_parameters(Some("JSON"), None).unwrap();
        let out =
            json.split(vec![record(br#"{"a":1}{"a":2}"#), record(b"{\"a\":3}\n{\"a\":4}\n"), record(b"not json")]);
        assert_eq!(datas(&out), [&br#"{"a":1}"#[..], br#"{"a":2}"#, br#"{"a":3}"#, br#"{"a":4}"#, b"not json"]);
        assert!(out.iter().all(|r| r.sequence == 7));
        let hashes = Deaggregation::from_parameters(Some("DELIMITED"), Some("IyMjIw==")).unwrap();
        assert_eq!(datas(&hashes.split(vec![record(b"a####b####")])), [&b"a"[..], b"b"]);
        assert!(Deaggregation::from_parameters(Some("DELIMITED"), Some("####")).is_err());
        assert!(Deaggregation::from_parameters(Some("CSV"), None).is_err());
        let many: Vec<u8> = (0..600).flat_map(|i| format!("{{\"i\":{i}}}").into_bytes()).collect();
        let out = json.split(vec![record(&many)]);
        assert_eq!(out.len(), SUB_RECORDS_MAX);
        assert_eq!(out.iter().map(|r| r.data.len()).sum::<usize>(), many.len(), "nothing dropped");
    }
}
