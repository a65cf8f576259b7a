//! One Parquet file from Arrow batches, its columns encoded side by side.
//!
//! `ArrowWriter` encodes a row group's columns one after another on one thread; after the
//! batches are decoded (on every core) that left a delivery's Parquet encoding on one core.
//! The columns of a row group are independent, so they are encoded on the threads the
//! conversion budget gives ([`crate::convert::ConversionThreads`]) and appended in schema
//! order. Row groups are cut where `ArrowWriter` cuts them (every `max_row_group_row_count`
//! rows), and each column writer is given the same leaves in the same order, so the file is
//! byte for byte the one `ArrowWriter` writes (checked by this module's tests).

use std::sync::Mutex;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnChunk, ArrowColumnWriter, ArrowLeafColumn};
use parquet::arrow::ArrowWriter;
use parquet::errors::{ParquetError, Result};
use parquet::file::properties::WriterProperties;

use crate::convert::{conversion_threads, ConversionThreads};

/// Rows a file has at least before its columns are encoded on several threads: below it,
/// starting threads costs more than the encoding.
const PARALLEL_ROWS_MIN: usize = 8192;

/// The Parquet file holding `batches` (all of `schema`) written with `properties`.
///
/// Errors: whatever the Parquet writer reports (a batch not of the schema, an I/O error of
/// the in-memory buffer cannot happen).
pub fn write(schema: &SchemaRef, properties: &WriterProperties, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    // A byte bound on row groups is checked against the encoders' running estimate as
    // `ArrowWriter` writes: only it cuts such row groups where it would.
    let threads = if rows < PARALLEL_ROWS_MIN || properties.max_row_group_bytes().is_some() {
        ConversionThreads::take(1)
    } else {
        ConversionThreads::take(conversion_threads().min(schema.fields().len()))
    };
    write_on(schema, properties, batches, threads.count())
}

/// [`write`] with the columns encoded on up to `threads` threads (1: `ArrowWriter` alone).
fn write_on(
    schema: &SchemaRef,
    properties: &WriterProperties,
    batches: &[RecordBatch],
    threads: usize,
) -> Result<Vec<u8>> {
    let mut writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(properties.clone()))?;
    if threads < 2 {
        for b in batches {
            writer.write(b)?;
        }
        return writer.into_inner();
    }
    let (mut file, factory) = writer.into_serialized_writer()?;
    let group_rows = properties.max_row_group_row_count().unwrap_or(usize::MAX).max(1);
    for (index, group) in row_groups(batches, group_rows).iter().enumerate() {
        let writers = factory.create_column_writers(index)?;
        let leaves = leaves_by_column(schema, group, writers.len())?;
        let columns: Vec<(Mutex<Option<ArrowColumnWriter>>, Vec<ArrowLeafColumn>)> =
            writers.into_iter().map(|w| Mutex::new(Some(w))).zip(leaves).collect();
        let chunks = sluice_engine::parallel::in_parallel(&columns, threads, "sluice-convert", encode_column);
        let mut row_group = file.next_row_group()?;
        for chunk in chunks {
            chunk?.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
    }
    file.into_inner()
}

/// Encodes one column chunk: its writer fed the column's leaves of every batch, in order.
fn encode_column(
    (writer, leaves): &(Mutex<Option<ArrowColumnWriter>>, Vec<ArrowLeafColumn>),
) -> Result<ArrowColumnChunk> {
    let mut writer = writer
        .lock()
        .map_err(|_| ParquetError::General("a column writer's lock was poisoned".into()))?
        .take()
        .ok_or_else(|| ParquetError::General("a column writer was used twice".into()))?;
    for leaf in leaves {
        writer.write(leaf)?;
    }
    writer.close()
}

/// The batches split into row groups of `group_rows` rows (the last one shorter), slicing a
/// batch where a row group ends, as `ArrowWriter::write` does.
fn row_groups(batches: &[RecordBatch], group_rows: usize) -> Vec<Vec<RecordBatch>> {
    let mut groups = vec![Vec::new()];
    let mut filled = 0;
    for batch in batches {
        let mut offset = 0;
        while offset < batch.num_rows() {
            if filled == group_rows {
                groups.push(Vec::new());
                filled = 0;
            }
            let take = (group_rows - filled).min(batch.num_rows() - offset);
            groups.last_mut().expect("one group at least").push(batch.slice(offset, take));
            (offset, filled) = (offset + take, filled + take);
        }
    }
    groups.retain(|g| !g.is_empty());
    groups
}

/// For each of the row group's `count` leaf columns (a nested field has several, in the
/// order of the writers), its leaves in every batch of `group`, in batch order.
fn leaves_by_column(schema: &SchemaRef, group: &[RecordBatch], count: usize) -> Result<Vec<Vec<ArrowLeafColumn>>> {
    let mut by_column: Vec<Vec<ArrowLeafColumn>> = (0..count).map(|_| Vec::with_capacity(group.len())).collect();
    for batch in group {
        let mut column = 0;
        for (field, array) in schema.fields().iter().zip(batch.columns()) {
            for leaf in compute_leaves(field, array)? {
                by_column
                    .get_mut(column)
                    .ok_or_else(|| ParquetError::General("more leaves than column writers".into()))?
                    .push(leaf);
                column += 1;
            }
        }
        if column != count {
            return Err(ParquetError::General(format!("{column} leaves for {count} column writers")));
        }
    }
    Ok(by_column)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Float64Array, Int64Array, ListArray, StringArray, StructArray};
    use arrow_schema::{DataType, Field, Fields, Schema};
    use parquet::basic::Compression;

    use super::*;

    fn batches(rows: usize, per_batch: usize) -> (SchemaRef, Vec<RecordBatch>) {
        let inner = Fields::from(vec![Field::new("x", DataType::Int64, true), Field::new("y", DataType::Utf8, true)]);
        let schema = Arc::new(Schema::new(vec![
            Field::new("station", DataType::Utf8, true),
            Field::new("pm25", DataType::Float64, true),
            Field::new("at", DataType::Struct(inner.clone()), true),
            Field::new("tags", DataType::List(Arc::new(Field::new("item", DataType::Int64, true))), true),
        ]));
        let mut out = Vec::new();
        let mut start = 0;
        while start < rows {
            let n = per_batch.min(rows - start);
            let i = (start..start + n).map(|i| i as i64);
            let station: ArrayRef =
                Arc::new(StringArray::from_iter(i.clone().map(|i| (i % 7 != 3).then(|| format!("s{}", i % 12)))));
            let pm25: ArrayRef =
                Arc::new(Float64Array::from_iter(i.clone().map(|i| (i % 5 != 0).then_some(i as f64 * 0.25))));
            let at: ArrayRef = Arc::new(StructArray::new(
                inner.clone(),
                vec![
                    Arc::new(Int64Array::from_iter(i.clone().map(Some))) as ArrayRef,
                    Arc::new(StringArray::from_iter(i.clone().map(|i| Some(format!("y{}", i % 100))))),
                ],
                None,
            ));
            let tags: ArrayRef = Arc::new(ListArray::from_iter_primitive::<arrow_array::types::Int64Type, _, _>(
                i.clone().map(|i| (i % 3 != 0).then(|| (0..i % 4).map(Some).collect::<Vec<_>>())),
            ));
            out.push(RecordBatch::try_new(schema.clone(), vec![station, pm25, at, tags]).unwrap());
            start += n;
        }
        (schema, out)
    }

    fn with_arrow_writer(schema: &SchemaRef, properties: &WriterProperties, batches: &[RecordBatch]) -> Vec<u8> {
        let mut w = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(properties.clone())).unwrap();
        for b in batches {
            w.write(b).unwrap();
        }
        w.into_inner().unwrap()
    }

    #[test]
    fn the_file_is_byte_for_byte_arrow_writers() {
        let (schema, batches) = batches(50_000, 8192);
        for (group_rows, compression) in
            [(1 << 20, Compression::SNAPPY), (12_345, Compression::UNCOMPRESSED), (8192, Compression::SNAPPY)]
        {
            let properties = WriterProperties::builder()
                .set_compression(compression)
                .set_max_row_group_row_count(Some(group_rows))
                .build();
            let ours = write_on(&schema, &properties, &batches, 3).unwrap();
            assert_eq!(ours, with_arrow_writer(&schema, &properties, &batches), "row groups of {group_rows}");
            assert_eq!(write(&schema, &properties, &batches).unwrap(), ours);
            let reader = parquet::file::reader::SerializedFileReader::new(bytes::Bytes::from(ours)).unwrap();
            let groups = parquet::file::reader::FileReader::metadata(&reader).num_row_groups();
            assert_eq!(groups, 50_000usize.div_ceil(group_rows));
        }
    }

    #[test]
    fn row_groups_are_cut_at_the_row_bound_across_batches() {
        let (_, batches) = batches(25, 10);
        let groups = row_groups(&batches, 7);
        let sizes: Vec<Vec<usize>> = groups.iter().map(|g| g.iter().map(RecordBatch::num_rows).collect()).collect();
        assert_eq!(sizes, vec![vec![7], vec![3, 4], vec![6, 1], vec![4]]);
        assert!(row_groups(&[], 7).is_empty());
    }
}
