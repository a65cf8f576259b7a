//! Record format conversion: JSON records to one Parquet object, and raw records to one
//! object (concatenated as Firehose does, no delimiter, optionally compressed).
//!
//! Conversion decodes the whole buffer with one `arrow-json` decoder. Only when that fails
//! does it bisect the buffer to find the records at fault, so a bad record costs
//! O(log n) extra decodes and fails alone: the others still land.

use std::io::Write;

use arrow_array::RecordBatch;
use arrow_json::reader::{Decoder, ReaderBuilder};
use arrow_schema::{ArrowError, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::file::properties::{WriterProperties, WriterVersion};

use crate::spec::ParquetSerDe;

/// Rows per Parquet row group at most: 1 Mi. Objects are bounded by the buffer (≤ 128 MiB of
/// JSON), so an object is usually one row group, which is what query engines read best.
pub const ROW_GROUP_ROWS_MAX: usize = 1 << 20;

/// Firehose's error code for a record that is not one well-formed JSON object.
pub const PARSE_ERROR: &str = "DataFormatConversion.ParseError";
/// Firehose's error code for a JSON object that does not fit the schema.
pub const MALFORMED_DATA: &str = "DataFormatConversion.MalformedData";

/// Why one record could not be converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionFailure {
    /// Index of the record in the input.
    pub index: usize,
    /// [`PARSE_ERROR`] or [`MALFORMED_DATA`].
    pub code: &'static str,
    /// What was wrong.
    pub message: String,
}

/// One Parquet object and the records that could not go into it.
#[derive(Debug)]
pub struct Converted {
    /// The Parquet file; empty when no record converted.
    pub bytes: Vec<u8>,
    /// Rows written.
    pub rows: usize,
    /// Records left out, by input index.
    pub failed: Vec<ConversionFailure>,
}

/// Why conversion as a whole failed (never a record's fault).
#[derive(Debug, thiserror::Error)]
#[error("parquet encoding failed: {0}")]
pub struct EncodeError(#[from] parquet::errors::ParquetError);

/// JSON → Arrow → Parquet with a fixed schema.
#[derive(Debug, Clone)]
pub struct ParquetEncoder {
    schema: SchemaRef,
    properties: WriterProperties,
}

/// Parquet compression named by `ParquetSerDe.Compression`: `SNAPPY` (default), `GZIP`,
/// `UNCOMPRESSED`, and Sluice's `ZSTD`. `None` for any other name.
pub fn parquet_compression(name: Option<&str>) -> Option<Compression> {
    Some(match name.unwrap_or("SNAPPY").to_ascii_uppercase().as_str() {
        "SNAPPY" => Compression::SNAPPY,
        "GZIP" => Compression::GZIP(GzipLevel::default()),
        "ZSTD" => Compression::ZSTD(ZstdLevel::default()),
        "UNCOMPRESSED" => Compression::UNCOMPRESSED,
        _ => return None,
    })
}

impl ParquetEncoder {
    /// An encoder writing `schema` with the `ParquetSerDe` settings. The compression name
    /// must have been checked with [`parquet_compression`].
    pub fn new(schema: SchemaRef, serde: &ParquetSerDe) -> Self {
        let mut b = WriterProperties::builder()
            .set_compression(parquet_compression(serde.compression.as_deref()).unwrap_or(Compression::SNAPPY))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS_MAX))
            .set_dictionary_enabled(serde.enable_dictionary_compression.unwrap_or(true))
            .set_created_by(concat!("sluice ", env!("CARGO_PKG_VERSION")).into());
        if serde.writer_version.as_deref() == Some("V2") {
            b = b.set_writer_version(WriterVersion::PARQUET_2_0);
        }
        if let Some(page) = serde.page_size_bytes {
            b = b.set_data_page_size_limit(page as usize);
        }
        Self { schema, properties: b.build() }
    }

    /// The schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Converts `records` (one JSON object each) to one Parquet file; records that do not
    /// fit are returned as failures and the rest are written in input order.
    pub fn encode(&self, records: &[&[u8]]) -> Result<Converted, EncodeError> {
        let mut batches = Vec::new();
        let mut failed = Vec::new();
        let all: Vec<usize> = (0..records.len()).collect();
        self.isolate(records, &all, &mut batches, &mut failed);
        failed.sort_by_key(|f| f.index);
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if rows == 0 {
            return Ok(Converted { bytes: Vec::new(), rows, failed });
        }
        let mut writer = ArrowWriter::try_new(Vec::new(), self.schema.clone(), Some(self.properties.clone()))?;
        for b in &batches {
            writer.write(b)?;
        }
        let bytes = writer.into_inner()?;
        Ok(Converted { bytes, rows, failed })
    }

    fn isolate(
        &self,
        records: &[&[u8]],
        indexes: &[usize],
        batches: &mut Vec<RecordBatch>,
        failed: &mut Vec<ConversionFailure>,
    ) {
        if indexes.is_empty() {
            return;
        }
        match self.decode(records, indexes) {
            Ok(b) => batches.push(b),
            Err(e) if indexes.len() == 1 => failed.push(classify(indexes[0], records[indexes[0]], &e)),
            Err(_) => {
                let (a, b) = indexes.split_at(indexes.len() / 2);
                self.isolate(records, a, batches, failed);
                self.isolate(records, b, batches, failed);
            }
        }
    }

    fn decode(&self, records: &[&[u8]], indexes: &[usize]) -> Result<RecordBatch, ArrowError> {
        let mut decoder = ReaderBuilder::new(self.schema.clone()).with_batch_size(indexes.len()).build_decoder()?;
        for &i in indexes {
            feed(&mut decoder, records[i])?;
            // Firehose records carry no delimiter; a newline keeps values apart.
            feed(&mut decoder, b"\n")?;
        }
        let batch = decoder.flush()?.unwrap_or_else(|| RecordBatch::new_empty(self.schema.clone()));
        if batch.num_rows() != indexes.len() {
            return Err(ArrowError::JsonError(format!(
                "expected {} JSON objects, found {}",
                indexes.len(),
                batch.num_rows()
            )));
        }
        Ok(batch)
    }
}

fn feed(decoder: &mut Decoder, mut bytes: &[u8]) -> Result<(), ArrowError> {
    while !bytes.is_empty() {
        let n = decoder.decode(bytes)?;
        if n == 0 {
            // The decoder is full: more JSON values than records.
            return Err(ArrowError::JsonError("a record holds more than one JSON value".into()));
        }
        bytes = &bytes[n..];
    }
    Ok(())
}

fn classify(index: usize, record: &[u8], e: &ArrowError) -> ConversionFailure {
    match serde_json::from_slice::<serde_json::Value>(record) {
        Ok(serde_json::Value::Object(_)) => ConversionFailure {
            index,
            code: MALFORMED_DATA,
            message: format!("Data does not match the schema: {}", strip(e)),
        },
        Ok(_) => ConversionFailure {
            index,
            code: MALFORMED_DATA,
            message: "The record is not a JSON object; conversion takes one JSON object per record.".into(),
        },
        Err(p) => ConversionFailure { index, code: PARSE_ERROR, message: format!("Encountered malformed JSON: {p}") },
    }
}

fn strip(e: &ArrowError) -> String {
    let s = e.to_string();
    s.strip_prefix("Json error: ").map(str::to_owned).unwrap_or(s)
}

/// Compression of raw (unconverted) objects: `CompressionFormat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawCompression {
    /// `UNCOMPRESSED`.
    None,
    /// `GZIP`, extension `.gz`.
    Gzip,
    /// `ZSTD` (Sluice), extension `.zst`.
    Zstd,
}

impl RawCompression {
    /// The compression named by `CompressionFormat`; `None` for names Sluice does not write
    /// (`ZIP`, `Snappy`, `HADOOP_SNAPPY`).
    pub fn from_name(name: Option<&str>) -> Option<Self> {
        Some(match name.unwrap_or("UNCOMPRESSED") {
            "UNCOMPRESSED" => Self::None,
            "GZIP" => Self::Gzip,
            "ZSTD" => Self::Zstd,
            _ => return None,
        })
    }

    /// The object extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Gzip => ".gz",
            Self::Zstd => ".zst",
        }
    }

    /// Concatenates `records`, each followed by `delimiter`, and compresses the result.
    pub fn encode<'a>(self, records: impl IntoIterator<Item = &'a [u8]>, delimiter: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut raw = Vec::new();
        for r in records {
            raw.extend_from_slice(r);
            raw.extend_from_slice(delimiter);
        }
        match self {
            Self::None => Ok(raw),
            Self::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(&raw)?;
                e.finish()
            }
            Self::Zstd => zstd::encode_all(raw.as_slice(), 3),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_schema::{DataType, Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    fn encoder() -> ParquetEncoder {
        let schema = Schema::new(vec![Field::new("a", DataType::Int64, true), Field::new("b", DataType::Utf8, true)]);
        ParquetEncoder::new(Arc::new(schema), &ParquetSerDe::default())
    }

    #[test]
    fn bad_records_fail_alone() {
        let records: Vec<&[u8]> = vec![
            br#"{"a": 1, "b": "x"}"#,
            br#"{"a": "#,
            br#"{"a": 2, "extra": [1]}"#,
            br#"{"a": "not a number"}"#,
            br#"[1, 2]"#,
            br#"{"a": 3}{"a": 4}"#,
            b"  ",
            br#"{"b": "y"}"#,
        ];
        let c = encoder().encode(&records).unwrap();
        let failed: Vec<(usize, &str)> = c.failed.iter().map(|f| (f.index, f.code)).collect();
        assert_eq!(
            failed,
            [(1, PARSE_ERROR), (3, MALFORMED_DATA), (4, MALFORMED_DATA), (5, PARSE_ERROR), (6, PARSE_ERROR)]
        );
        assert_eq!(c.rows, 3);
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(c.bytes)).unwrap().build().unwrap();
        let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
        let a = arrow_array::cast::AsArray::as_primitive::<arrow_array::types::Int64Type>(batches[0].column(0));
        assert_eq!(a.iter().collect::<Vec<_>>(), [Some(1), Some(2), None]);
    }

    #[test]
    fn raw_objects_concatenate_and_compress() {
        let recs: [&[u8]; 2] = [b"ab", b"cd"];
        assert_eq!(RawCompression::None.encode(recs, b"").unwrap(), b"abcd");
        assert_eq!(RawCompression::None.encode(recs, b"\n").unwrap(), b"ab\ncd\n");
        let gz = RawCompression::Gzip.encode(recs, b"").unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(gz.as_slice()), &mut out).unwrap();
        assert_eq!(out, "abcd");
        assert_eq!(zstd::decode_all(RawCompression::Zstd.encode(recs, b"").unwrap().as_slice()).unwrap(), b"abcd");
    }
}
