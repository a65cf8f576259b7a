//! ORC output of format conversion (`OrcSerDe`), written by `orc-rust` (the datafusion-contrib
//! project's Arrow-native ORC crate; Arrow itself has no ORC writer). Version 0.8 is the last
//! one on the workspace's arrow 58; its writer covers flat columns of the scalar types and
//! writes no compression, row index or bloom filters, so [`check`] refuses the settings and
//! columns it cannot honour when the delivery stream is created, rather than landing files
//! that differ from what was asked.

use std::panic::{catch_unwind, AssertUnwindSafe};

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Schema, SchemaRef};

use crate::spec::OrcSerDe;

/// Default stripe size target, bytes: 64 MiB (AWS Firehose API reference, OrcSerDe).
pub const STRIPE_SIZE_BYTES_DEFAULT: u64 = 64 << 20;

/// Why an ORC file could not be written (never a record's fault).
#[derive(Debug, thiserror::Error)]
#[error("ORC encoding failed: {0}")]
pub struct OrcError(String);

/// Checks `serde` and, when known, `schema` against what the ORC writer honours.
///
/// Honoured: `StripeSizeBytes`; `Compression` `NONE` (also when not given: AWS's default is
/// SNAPPY, which the writer has not); `FormatVersion` `V0_12`; `EnablePadding` false (padding
/// is off, so `BlockSizeBytes` and `PaddingTolerance` have nothing to act on);
/// `DictionaryKeyThreshold` 0 (columns are written direct, never as dictionaries); no
/// `BloomFilterColumns` (so `BloomFilterFalsePositiveProbability` has nothing to act on).
/// Refused, with the reason: `SNAPPY`/`ZLIB`, `V0_11`, padding, a row index stride, a
/// dictionary threshold above 0, bloom filter columns, and columns that are not `boolean`,
/// `tinyint`, `smallint`, `int`, `bigint`, `float`, `double` or `string`/`varchar`/`char`.
pub fn check(serde: &OrcSerDe, schema: Option<&Schema>) -> Result<(), String> {
    const WRITER: &str = "Sluice's ORC writer (orc-rust 0.8)";
    match serde.compression.as_deref().unwrap_or("NONE") {
        "NONE" => {}
        other => return Err(format!("OrcSerDe Compression '{other}' is not supported by {WRITER}; use NONE.")),
    }
    if let Some(v) = serde.format_version.as_deref().filter(|v| *v != "V0_12") {
        return Err(format!("OrcSerDe FormatVersion '{v}' is not supported by {WRITER}; it writes V0_12."));
    }
    if serde.enable_padding == Some(true) {
        return Err(format!("OrcSerDe EnablePadding is not supported by {WRITER}; stripes are not padded."));
    }
    if serde.row_index_stride.is_some() {
        return Err(format!("OrcSerDe RowIndexStride is not supported by {WRITER}; it writes no row index."));
    }
    if serde.dictionary_key_threshold.is_some_and(|t| t > 0.0) {
        return Err(format!(
            "OrcSerDe DictionaryKeyThreshold above 0 is not supported by {WRITER}; columns are written without dictionaries."
        ));
    }
    if serde.bloom_filter_columns.as_ref().is_some_and(|c| !c.is_empty()) {
        return Err(format!("OrcSerDe BloomFilterColumns is not supported by {WRITER}; it writes no bloom filters."));
    }
    if let Some(schema) = schema {
        if let Some(f) = schema.fields().iter().find(|f| !writable(f.data_type())) {
            return Err(format!(
                "Column '{}' ({}) cannot be written as ORC by {WRITER}: it writes boolean, tinyint, smallint, int, bigint, float, double, string, varchar and char columns.",
                f.name(),
                f.data_type()
            ));
        }
    }
    Ok(())
}

fn writable(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Boolean
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::Float32
            | DataType::Float64
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Binary
            | DataType::LargeBinary
    )
}

/// Writes `batches` (rows of `schema`, which [`check`] accepted) as one ORC file, in stripes of
/// about `stripe_bytes` bytes.
pub fn write(schema: &SchemaRef, batches: &[RecordBatch], stripe_bytes: u64) -> Result<Vec<u8>, OrcError> {
    if let Some(f) = schema.fields().iter().find(|f| !writable(f.data_type())) {
        return Err(OrcError(format!("column '{}' has type {}", f.name(), f.data_type())));
    }
    let mut out = Vec::new();
    // The writer is a young library: should it panic on some input, that buffer fails
    // (to the error prefix) instead of the delivery worker.
    catch_unwind(AssertUnwindSafe(|| {
        let mut writer = orc_rust::ArrowWriterBuilder::new(&mut out, schema.clone())
            .with_stripe_byte_size(usize::try_from(stripe_bytes).unwrap_or(usize::MAX))
            .try_build()?;
        for b in batches {
            writer.write(b)?;
        }
        writer.close()
    }))
    .map_err(|_| OrcError("the ORC writer panicked".into()))?
    .map_err(|e| OrcError(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow_array::{Array, BooleanArray, Float64Array, Int64Array, StringArray};
    use arrow_schema::Field;

    fn schema(types: &[(&str, DataType)]) -> Schema {
        Schema::new(types.iter().map(|(n, t)| Field::new(*n, t.clone(), true)).collect::<Vec<_>>())
    }

    #[test]
    fn refuses_what_the_writer_cannot_honour() {
        let flat = schema(&[("id", DataType::Int64), ("name", DataType::Utf8)]);
        assert_eq!(check(&OrcSerDe::default(), Some(&flat)), Ok(()));
        let none =
            OrcSerDe { compression: Some("NONE".into()), format_version: Some("V0_12".into()), ..Default::default() };
        assert_eq!(check(&none, Some(&flat)), Ok(()));
        for bad in [
            OrcSerDe { compression: Some("SNAPPY".into()), ..Default::default() },
            OrcSerDe { compression: Some("ZLIB".into()), ..Default::default() },
            OrcSerDe { format_version: Some("V0_11".into()), ..Default::default() },
            OrcSerDe { enable_padding: Some(true), ..Default::default() },
            OrcSerDe { row_index_stride: Some(10_000), ..Default::default() },
            OrcSerDe { dictionary_key_threshold: Some(0.5), ..Default::default() },
            OrcSerDe { bloom_filter_columns: Some(vec!["id".into()]), ..Default::default() },
        ] {
            assert!(check(&bad, None).is_err(), "{bad:?}");
        }
        let timestamp = schema(&[("t", DataType::Timestamp(arrow_schema::TimeUnit::Millisecond, Some("UTC".into())))]);
        let e = check(&OrcSerDe::default(), Some(&timestamp)).unwrap_err();
        assert!(e.contains("Column 't'"), "{e}");
    }

    #[test]
    fn writes_an_orc_file_that_reads_back() {
        let schema = Arc::new(schema(&[
            ("id", DataType::Int64),
            ("v", DataType::Float64),
            ("s", DataType::Utf8),
            ("b", DataType::Boolean),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])),
                Arc::new(Float64Array::from(vec![Some(1.5), Some(2.5), None])),
                Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])),
                Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
            ],
        )
        .unwrap();
        let bytes = write(&schema, &[batch.clone(), batch.clone()], STRIPE_SIZE_BYTES_DEFAULT).unwrap();
        assert_eq!(&bytes[..3], b"ORC");
        let reader = orc_rust::ArrowReaderBuilder::try_new(bytes::Bytes::from(bytes)).unwrap().build();
        let read: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
        fn column<T: Array + Clone + 'static>(read: &[RecordBatch], i: usize) -> Vec<T> {
            read.iter().map(|b| b.column(i).as_any().downcast_ref::<T>().unwrap().clone()).collect()
        }
        let ids: Vec<Option<i64>> =
            column::<Int64Array>(&read, 0).iter().flat_map(|a| a.iter().collect::<Vec<_>>()).collect();
        assert_eq!(ids, [Some(1), None, Some(3), Some(1), None, Some(3)]);
        let s: Vec<Option<String>> = column::<StringArray>(&read, 2)
            .iter()
            .flat_map(|a| a.iter().map(|v| v.map(str::to_owned)).collect::<Vec<_>>())
            .collect();
        assert_eq!(s[..3], [Some("a".to_owned()), None, Some("c".to_owned())]);
        let b: Vec<Option<bool>> =
            column::<BooleanArray>(&read, 3).iter().flat_map(|a| a.iter().collect::<Vec<_>>()).collect();
        assert_eq!(b[..3], [Some(true), Some(false), None]);
        let v: Vec<Option<f64>> =
            column::<Float64Array>(&read, 1).iter().flat_map(|a| a.iter().collect::<Vec<_>>()).collect();
        assert_eq!(v[..3], [Some(1.5), Some(2.5), None]);
    }
}
