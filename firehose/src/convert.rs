//! Record format conversion: JSON records to one Parquet or ORC object, and raw records to one
//! object (concatenated as Firehose does, no delimiter, optionally compressed).
//!
//! Each record first goes through the delivery stream's JSON deserializer
//! ([`crate::deserializer`]: OpenX or Hive rules, one row per JSON object in the record, every
//! value checked against its column); a record that does not fit fails alone, with the
//! reason. The rows of the others are decoded with one `arrow-json` decoder; should that
//! still fail, the buffer is bisected to find the records at fault, so they fail alone too.

use std::borrow::Cow;
use std::io::Write;

use arrow_array::RecordBatch;
use arrow_json::reader::{Decoder, ReaderBuilder};
use arrow_schema::{ArrowError, SchemaRef};
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::file::properties::{WriterProperties, WriterVersion};

use crate::deserializer::{JsonSerDe, RecordError, RowDecoder};
use crate::direct::DirectColumns;
use crate::spec::ParquetSerDe;

/// Rows per Parquet row group at most: 1 Mi. Objects are bounded by the buffer (≤ 128 MiB of
/// JSON), so an object is usually one row group, which is what query engines read best.
pub const ROW_GROUP_ROWS_MAX: usize = 1 << 20;

/// Records decoded into one Arrow batch at most: 8,192. One decoder over a whole buffer grows
/// its tape past the CPU caches and page-faults it in as it grows; batches of this size
/// stay in cache and go to the same row group.
const DECODE_BATCH_RECORDS: usize = 8192;

/// Records a conversion thread is given at least: a smaller buffer is converted on the
/// calling thread, where starting a thread would cost more than it saves.
const RECORDS_PER_THREAD_MIN: usize = 4096;

/// Threads one conversion uses at most: the machine's cores (`available_parallelism`, 1 when
/// unknown). Deliveries convert independent buffers, so a large buffer uses every core.
pub fn conversion_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
}

thread_local! {
    /// Set while [`on_one_thread`] runs: conversions on this thread take no more threads.
    static ONE_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with every conversion it starts on the calling thread alone: how background
/// work (replays, redrives on a running server) leaves the other cores to live requests
/// and deliveries.
pub fn on_one_thread<R>(f: impl FnOnce() -> R) -> R {
    let before = ONE_THREAD.replace(true);
    let out = f();
    ONE_THREAD.set(before);
    out
}

/// Threads held by conversions now, over every delivery stream (and nested conversions: the
/// partitions of a buffer convert in parallel, each of them in parallel again).
static THREADS_HELD: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Threads a conversion got from the budget shared by all conversions
/// ([`conversion_threads`] in all): given back when dropped.
#[derive(Debug)]
pub struct ConversionThreads {
    held: usize,
}

impl ConversionThreads {
    /// Takes up to `want` threads from the shared budget. With fewer than 2 free the
    /// conversion runs on its calling thread alone (`count` 1, nothing held): ten delivery
    /// streams converting at once on 2 cores use 2 threads between them plus their own,
    /// rather than 20.
    pub fn take(want: usize) -> Self {
        use std::sync::atomic::Ordering;
        if want < 2 || ONE_THREAD.get() {
            return Self { held: 0 };
        }
        let budget = conversion_threads();
        let mut held = THREADS_HELD.load(Ordering::Relaxed);
        loop {
            let take = want.min(budget.saturating_sub(held));
            if take < 2 {
                return Self { held: 0 };
            }
            match THREADS_HELD.compare_exchange_weak(held, held + take, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Self { held: take },
                Err(now) => held = now,
            }
        }
    }

    /// Threads to run on: what was taken, or 1 (the calling thread).
    pub fn count(&self) -> usize {
        self.held.max(1)
    }

    /// Threads held by all conversions now.
    pub fn held_now() -> usize {
        THREADS_HELD.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for ConversionThreads {
    fn drop(&mut self) {
        THREADS_HELD.fetch_sub(self.held, std::sync::atomic::Ordering::AcqRel);
    }
}

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

/// One Parquet or ORC object and the records that could not go into it.
#[derive(Debug)]
pub struct Converted {
    /// The file; empty when no record converted.
    pub bytes: Vec<u8>,
    /// Rows written.
    pub rows: usize,
    /// Records left out, by input index.
    pub failed: Vec<ConversionFailure>,
}

/// Records as Arrow rows, and the records that could not be converted.
#[derive(Debug)]
pub struct Decoded {
    /// The rows, in input order.
    pub batches: Vec<RecordBatch>,
    /// Rows in `batches`.
    pub rows: usize,
    /// Records left out, by input index.
    pub failed: Vec<ConversionFailure>,
}

/// Why conversion as a whole failed (never a record's fault).
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The Parquet writer failed.
    #[error("parquet encoding failed: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// The ORC writer failed.
    #[error(transparent)]
    Orc(#[from] crate::orc::OrcError),
}

/// JSON → Arrow → Parquet or ORC with a fixed schema.
#[derive(Debug, Clone)]
pub struct ColumnarEncoder {
    schema: SchemaRef,
    file: FileFormat,
    rows: RowDecoder,
    /// Whether batches of canonical records are built without arrow-json ([`DirectColumns`]).
    direct: bool,
}

/// The file an encoder writes.
#[derive(Debug, Clone)]
enum FileFormat {
    Parquet(Box<WriterProperties>),
    /// ORC, in stripes of about this many bytes.
    Orc {
        stripe_bytes: u64,
    },
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

impl ColumnarEncoder {
    /// An encoder writing Parquet files of `schema` with the `ParquetSerDe` settings, reading records with
    /// `deserializer`. The compression name must have been checked with
    /// [`parquet_compression`].
    pub fn new(schema: SchemaRef, serde: &ParquetSerDe, deserializer: JsonSerDe) -> Self {
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
        if let Some(block) = serde.block_size_bytes {
            // Row groups are bounded by rows; the byte target is the writer's closest knob.
            b = b.set_max_row_group_bytes(Some(block as usize));
        }
        let rows = RowDecoder::new(schema.clone(), deserializer);
        let direct = DirectColumns::supports(&schema);
        Self { schema, file: FileFormat::Parquet(Box::new(b.build())), rows, direct }
    }

    /// An encoder writing ORC files of `schema` with the `OrcSerDe` settings, reading records
    /// with `deserializer`. The settings and schema must have been checked with
    /// [`crate::orc::check`].
    pub fn orc(schema: SchemaRef, serde: &crate::spec::OrcSerDe, deserializer: JsonSerDe) -> Self {
        let stripe_bytes = serde.stripe_size_bytes.unwrap_or(crate::orc::STRIPE_SIZE_BYTES_DEFAULT);
        let rows = RowDecoder::new(schema.clone(), deserializer);
        let direct = DirectColumns::supports(&schema);
        Self { schema, file: FileFormat::Orc { stripe_bytes }, rows, direct }
    }

    /// The object name extension of its files: `.parquet` or `.orc`.
    pub fn extension(&self) -> &'static str {
        match self.file {
            FileFormat::Parquet(_) => ".parquet",
            FileFormat::Orc { .. } => ".orc",
        }
    }

    /// The schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Converts `records` (JSON objects, one or more each) to one file; records that do not
    /// fit are returned as failures and the rows of the rest are written in input order.
    pub fn encode(&self, records: &[&[u8]]) -> Result<Converted, EncodeError> {
        self.write(self.decode(records))
    }

    /// As [`Self::encode`], with the first `head_records` of `records` decoded already
    /// (`head`, from [`Self::decode`] on exactly those): only the rest is decoded now. The
    /// rows and failures are those [`Self::encode`] finds.
    pub fn encode_continuing(
        &self,
        records: &[&[u8]],
        head: Decoded,
        head_records: usize,
    ) -> Result<Converted, EncodeError> {
        let tail = self.decode(&records[head_records..]);
        let mut decoded = head;
        decoded.batches.extend(tail.batches);
        decoded.rows += tail.rows;
        decoded
            .failed
            .extend(tail.failed.into_iter().map(|f| ConversionFailure { index: f.index + head_records, ..f }));
        self.write(decoded)
    }

    /// Writes decoded rows as one file.
    fn write(&self, decoded: Decoded) -> Result<Converted, EncodeError> {
        let Decoded { batches, rows, failed } = decoded;
        if rows == 0 {
            return Ok(Converted { bytes: Vec::new(), rows, failed });
        }
        let bytes = match &self.file {
            FileFormat::Parquet(properties) => crate::parquet_file::write(&self.schema, properties, &batches)?,
            FileFormat::Orc { stripe_bytes } => crate::orc::write(&self.schema, &batches, *stripe_bytes)?,
        };
        Ok(Converted { bytes, rows, failed })
    }

    /// Converts `records` to Arrow rows of the schema (what [`Self::encode`] writes); records
    /// that do not fit are returned as failures. Large buffers are split in contiguous parts
    /// decoded on up to [`conversion_threads`] threads; rows keep the input order.
    pub fn decode(&self, records: &[&[u8]]) -> Decoded {
        let threads = ConversionThreads::take(conversion_threads().min(records.len() / RECORDS_PER_THREAD_MIN));
        let part = records.len().div_ceil(threads.count()).max(1);
        let parts: Vec<(usize, &[&[u8]])> = records.chunks(part).enumerate().map(|(i, p)| (i * part, p)).collect();
        let decoded =
            sluice_engine::parallel::in_parallel(&parts, threads.count(), "sluice-convert", |&(first, part)| {
                let (mut batches, mut failed) = (Vec::new(), Vec::new());
                for (i, batch) in part.chunks(DECODE_BATCH_RECORDS).enumerate() {
                    self.decode_batch(first + i * DECODE_BATCH_RECORDS, batch, &mut batches, &mut failed);
                }
                (batches, failed)
            });
        let (mut batches, mut failed) = (Vec::new(), Vec::new());
        for (b, f) in decoded {
            batches.extend(b);
            failed.extend(f);
        }
        failed.sort_by_key(|f| f.index);
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        Decoded { batches, rows, failed }
    }

    /// Decodes `records`, the first of which is input record `first`, into one batch (more
    /// where bad records are bisected out), adding failures to `failed`.
    fn decode_batch(
        &self,
        first: usize,
        records: &[&[u8]],
        batches: &mut Vec<RecordBatch>,
        failed: &mut Vec<ConversionFailure>,
    ) {
        // A batch of records all in their columns' form is read once, into the columns.
        if let Some(batch) = self.direct.then(|| self.decode_direct(records)).flatten() {
            batches.push(batch);
            return;
        }
        self.decode_general(first, records, batches, failed);
    }

    /// [`Self::decode_batch`] through the deserializer's rules and arrow-json.
    fn decode_general(
        &self,
        first: usize,
        records: &[&[u8]],
        batches: &mut Vec<RecordBatch>,
        failed: &mut Vec<ConversionFailure>,
    ) {
        // Each fitting record as newline-delimited rows (the record itself when it is already
        // in its columns' form), with its row count.
        let mut fitting: Vec<(usize, Cow<'_, [u8]>, usize)> = Vec::with_capacity(records.len());
        for (index, record) in (first..).zip(records) {
            // Most records already name their columns exactly with values in their form:
            // arrow-json reads those as they are.
            if self.rows.is_canonical(record) {
                fitting.push((index, Cow::Borrowed(*record), 1));
                continue;
            }
            match self.rows.rows(record) {
                Ok(rows) => {
                    let mut text = Vec::with_capacity(record.len() + 16);
                    for row in &rows {
                        serde_json::to_writer(&mut text, row).expect("writing JSON into memory cannot fail");
                        text.push(b'\n');
                    }
                    fitting.push((index, Cow::Owned(text), rows.len()));
                }
                Err(RecordError::Parse(message)) => {
                    failed.push(ConversionFailure { index, code: PARSE_ERROR, message })
                }
                Err(RecordError::Malformed(message)) => {
                    failed.push(ConversionFailure { index, code: MALFORMED_DATA, message })
                }
            }
        }
        self.isolate(&fitting, batches, failed);
    }

    /// `records` as one batch built by [`DirectColumns`], or `None` at the first record that
    /// is not canonical (the batch then takes the general path).
    fn decode_direct(&self, records: &[&[u8]]) -> Option<RecordBatch> {
        let mut columns = DirectColumns::new(&self.schema, records.len());
        let mut values = vec![None; self.schema.fields().len()];
        for record in records {
            values.fill(None);
            if !self.rows.canonical_values(record, &mut values) || !columns.append(&values) {
                return None;
            }
        }
        columns.finish().ok()
    }

    fn isolate(
        &self,
        fitting: &[(usize, Cow<'_, [u8]>, usize)],
        batches: &mut Vec<RecordBatch>,
        failed: &mut Vec<ConversionFailure>,
    ) {
        if fitting.is_empty() {
            return;
        }
        match self.decode_rows(fitting) {
            Ok(b) => batches.push(b),
            Err(e) if fitting.len() == 1 => failed.push(ConversionFailure {
                index: fitting[0].0,
                code: MALFORMED_DATA,
                message: format!("Data does not match the schema: {}", strip(&e)),
            }),
            Err(_) => {
                let (a, b) = fitting.split_at(fitting.len() / 2);
                self.isolate(a, batches, failed);
                self.isolate(b, batches, failed);
            }
        }
    }

    fn decode_rows(&self, fitting: &[(usize, Cow<'_, [u8]>, usize)]) -> Result<RecordBatch, ArrowError> {
        let expected: usize = fitting.iter().map(|(_, _, n)| n).sum();
        let mut decoder = ReaderBuilder::new(self.schema.clone()).with_batch_size(expected.max(1)).build_decoder()?;
        for (_, text, _) in fitting {
            feed(&mut decoder, text)?;
            // Rows end with a newline; a record passed as it is gets one here.
            if let Cow::Borrowed(_) = text {
                feed(&mut decoder, b"\n")?;
            }
        }
        let batch = decoder.flush()?.unwrap_or_else(|| RecordBatch::new_empty(self.schema.clone()));
        if batch.num_rows() != expected {
            return Err(ArrowError::JsonError(format!("expected {expected} rows, decoded {}", batch.num_rows())));
        }
        Ok(batch)
    }
}

fn feed(decoder: &mut Decoder, mut bytes: &[u8]) -> Result<(), ArrowError> {
    while !bytes.is_empty() {
        let n = decoder.decode(bytes)?;
        if n == 0 {
            // The decoder is full: more JSON values than rows counted.
            return Err(ArrowError::JsonError("more rows than counted".into()));
        }
        bytes = &bytes[n..];
    }
    Ok(())
}

fn strip(e: &ArrowError) -> String {
    let s = e.to_string();
    s.strip_prefix("Json error: ").map(str::to_owned).unwrap_or(s)
}

/// Compression of raw (unconverted) objects: `CompressionFormat`, with the extensions AWS
/// appends (Firehose developer guide, "S3 object name format").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawCompression {
    /// `UNCOMPRESSED`.
    None,
    /// `GZIP`, extension `.gz`.
    Gzip,
    /// `ZIP`: a zip archive of one entry (deflated), extension `.zip`.
    Zip,
    /// `Snappy`: the Snappy framing format, extension `.snappy`.
    Snappy,
    /// `HADOOP_SNAPPY`: Hadoop's block format (what Hadoop's `SnappyCodec` reads), extension
    /// `.hsnappy`.
    HadoopSnappy,
    /// `ZSTD` (Sluice), extension `.zst`.
    Zstd,
}

/// Uncompressed bytes per Hadoop Snappy block: 256 KiB, Hadoop's
/// `io.compression.codec.snappy.buffersize` default.
pub const HADOOP_SNAPPY_BLOCK_BYTES: usize = 256 << 10;

impl RawCompression {
    /// The compression named by `CompressionFormat`; `None` for other names.
    pub fn from_name(name: Option<&str>) -> Option<Self> {
        Some(match name.unwrap_or("UNCOMPRESSED") {
            "UNCOMPRESSED" => Self::None,
            "GZIP" => Self::Gzip,
            "ZIP" => Self::Zip,
            "Snappy" => Self::Snappy,
            "HADOOP_SNAPPY" => Self::HadoopSnappy,
            "ZSTD" => Self::Zstd,
            _ => return None,
        })
    }

    /// The object extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Gzip => ".gz",
            Self::Zip => ".zip",
            Self::Snappy => ".snappy",
            Self::HadoopSnappy => ".hsnappy",
            Self::Zstd => ".zst",
        }
    }

    /// Concatenates `records`, each followed by `delimiter`, and compresses the result; a
    /// zip archive names its one entry `entry`.
    pub fn encode<'a>(
        self,
        records: impl IntoIterator<Item = &'a [u8]>,
        delimiter: &[u8],
        entry: &str,
    ) -> std::io::Result<Vec<u8>> {
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
            Self::Zip => {
                let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
                let options = zip::write::SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Deflated)
                    .large_file(raw.len() >= u32::MAX as usize);
                z.start_file(entry, options).map_err(std::io::Error::other)?;
                z.write_all(&raw)?;
                Ok(z.finish().map_err(std::io::Error::other)?.into_inner())
            }
            Self::Snappy => {
                let mut e = snap::write::FrameEncoder::new(Vec::new());
                e.write_all(&raw)?;
                e.into_inner().map_err(|e| std::io::Error::other(e.to_string()))
            }
            Self::HadoopSnappy => {
                // Per block: uncompressed length, then one chunk: compressed length and the
                // raw Snappy bytes; all lengths 32-bit big-endian.
                let mut out = Vec::with_capacity(raw.len() / 2 + 16);
                let mut encoder = snap::raw::Encoder::new();
                for block in raw.chunks(HADOOP_SNAPPY_BLOCK_BYTES) {
                    let compressed = encoder.compress_vec(block).map_err(std::io::Error::other)?;
                    out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                    out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
                    out.extend_from_slice(&compressed);
                }
                Ok(out)
            }
            Self::Zstd => zstd::encode_all(raw.as_slice(), 3),
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn conversions_at_once_share_one_thread_budget() {
        // Other tests may convert meanwhile: what holds whatever they do.
        let budget = conversion_threads();
        let held: Vec<ConversionThreads> = (0..8).map(|_| ConversionThreads::take(budget)).collect();
        assert!(held.iter().map(|t| t.held).sum::<usize>() <= budget);
        assert!(ConversionThreads::held_now() <= budget, "{} held of {budget}", ConversionThreads::held_now());
        assert!(held.iter().all(|t| t.count() >= 1 && t.count() <= budget.max(1)));
        drop(held);
        assert_eq!(ConversionThreads::take(1).count(), 1, "one thread wanted: none taken");
    }

    use std::sync::Arc;

    use arrow_schema::{DataType, Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    fn encoder() -> ColumnarEncoder {
        let schema = Schema::new(vec![Field::new("a", DataType::Int64, true), Field::new("b", DataType::Utf8, true)]);
        ColumnarEncoder::new(Arc::new(schema), &ParquetSerDe::default(), JsonSerDe::default())
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
        // Two documents in one record are two rows (AWS: `{"a":1}{"b":1}` is valid input).
        assert_eq!(failed, [(1, PARSE_ERROR), (3, MALFORMED_DATA), (4, MALFORMED_DATA), (6, PARSE_ERROR)]);
        assert_eq!(c.rows, 5);
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(c.bytes)).unwrap().build().unwrap();
        let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
        let a = arrow_array::cast::AsArray::as_primitive::<arrow_array::types::Int64Type>(batches[0].column(0));
        assert_eq!(a.iter().collect::<Vec<_>>(), [Some(1), Some(2), Some(3), Some(4), None]);
    }

    /// A record's fate does not depend on its batch: an escape that is no character, in a
    /// member of no column, fails the record among canonical records and among others alike.
    #[test]
    fn a_record_fails_the_same_in_any_batch() {
        let bad: &[u8] = br#"{"a": 1, "other": ["\ud800"]}"#;
        let canonical: &[u8] = br#"{"a": 2, "b": "x"}"#;
        let folded: &[u8] = br#"{"A": 3}"#;
        for batch in [vec![bad], vec![canonical, bad], vec![folded, bad, canonical]] {
            let d = encoder().decode(&batch);
            let failed: Vec<(&[u8], &str)> = d.failed.iter().map(|f| (batch[f.index], f.code)).collect();
            assert_eq!(failed, [(bad, PARSE_ERROR)]);
            assert_eq!(d.rows, batch.len() - 1);
        }
    }

    /// A buffer large enough to be split over threads and batches keeps its rows in input
    /// order, and bad records at part and batch edges fail alone under their own index.
    #[test]
    fn large_buffers_keep_order_and_failure_indexes() {
        let n = RECORDS_PER_THREAD_MIN * 2 + DECODE_BATCH_RECORDS + 17;
        let bad = [0, DECODE_BATCH_RECORDS - 1, DECODE_BATCH_RECORDS, n / 2, n / 2 + 1, n - 1];
        let texts: Vec<String> = (0..n)
            .map(|i| {
                if bad.contains(&i) {
                    format!(r#"{{"a": "bad {i}"}}"#)
                } else {
                    format!(r#"{{"a": {i}, "b": "r{i}"}}"#)
                }
            })
            .collect();
        let records: Vec<&[u8]> = texts.iter().map(String::as_bytes).collect();
        let decoded = encoder().decode(&records);
        assert_eq!(decoded.failed.iter().map(|f| f.index).collect::<Vec<_>>(), bad);
        assert!(decoded.failed.iter().all(|f| f.code == MALFORMED_DATA));
        let expected: Vec<i64> = (0..n as i64).filter(|i| !bad.contains(&(*i as usize))).collect();
        let got: Vec<i64> = decoded
            .batches
            .iter()
            .flat_map(|b| {
                arrow_array::cast::AsArray::as_primitive::<arrow_array::types::Int64Type>(b.column(0)).values().to_vec()
            })
            .collect();
        assert_eq!(decoded.rows, expected.len());
        assert_eq!(got, expected);
    }

    /// A JSON number as written in many ways: integers, fractions, exponents, out of range.
    fn number_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            proptest::num::i32::ANY.prop_map(|i| i.to_string()),
            proptest::num::f64::NORMAL.prop_map(|f| f.to_string()),
            proptest::num::f64::ANY.prop_filter("finite", |f| f.is_finite()).prop_map(|f| format!("{f:e}")),
            proptest::sample::select(
                &["-0", "0.0", "-0.0", "1E2", "1e-400", "1e400", "-1e400", "18446744073709551616", "2.5e-320"][..]
            )
            .prop_map(str::to_owned),
        ]
    }

    /// A JSON string as written in many ways: any characters escaped as serde writes them,
    /// or `\u` escapes (a surrogate pair among them).
    fn string_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
            proptest::sample::select(&[r#""\u00e9\n\t\"\\""#, r#""\ud83d\ude00 x""#, r#""""#][..])
                .prop_map(str::to_owned),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

        /// Batches built straight from canonical records equal what arrow-json builds from the
        /// same records, value for value (nulls, absent members, escapes, number spellings,
        /// narrow integers, members of no column).
        #[test]
        fn direct_columns_equal_arrow_json(rows in proptest::collection::vec(
            (proptest::option::of(proptest::num::i16::ANY), proptest::option::of(proptest::num::i64::ANY),
             proptest::option::of(number_text()), proptest::option::of(string_text()),
             proptest::option::of(proptest::bool::ANY), proptest::bool::ANY, proptest::bool::ANY),
            1..60)) {
            let fields = vec![
                Field::new("s16", DataType::Int16, true),
                Field::new("l", DataType::Int64, true),
                Field::new("d", DataType::Float64, true),
                Field::new("s", DataType::Utf8, true),
                Field::new("b", DataType::Boolean, true),
            ];
            let enc = ColumnarEncoder::new(Arc::new(Schema::new(fields)), &ParquetSerDe::default(), JsonSerDe::default());
            proptest::prop_assert!(enc.direct);
            let records: Vec<String> = rows.iter().map(|(s16, l, d, s, b, nulls, extra)| {
                let mut members = Vec::new();
                let null = |present: bool| if *nulls && !present { Some("null".to_owned()) } else { None };
                if let Some(v) = s16.map(|v| v.to_string()).or_else(|| null(false)) { members.push(format!(r#""s16":{v}"#)); }
                if *extra { members.push(r#""other":[1,{"x":"\ud83d\ude00"}]"#.to_owned()); }
                if let Some(v) = l.map(|v| v.to_string()).or_else(|| null(false)) { members.push(format!(r#""l":{v}"#)); }
                if let Some(v) = d.clone().or_else(|| null(false)) { members.push(format!(r#""d":{v}"#)); }
                if let Some(v) = s.clone().or_else(|| null(false)) { members.push(format!(r#""s":{v}"#)); }
                if let Some(v) = b.map(|v| v.to_string()).or_else(|| null(false)) { members.push(format!(r#""b":{v}"#)); }
                format!("{{{}}}", members.join(","))
            }).collect();
            let refs: Vec<&[u8]> = records.iter().map(|r| r.as_bytes()).collect();
            let (mut general, mut failed) = (Vec::new(), Vec::new());
            enc.decode_general(0, &refs, &mut general, &mut failed);
            match enc.decode_direct(&refs) {
                Some(direct) => {
                    proptest::prop_assert!(failed.is_empty(), "arrow-json failed {:?} of {:?}", failed, records);
                    proptest::prop_assert_eq!(general.len(), 1);
                    proptest::prop_assert_eq!(&direct, &general[0], "records {:?}", records);
                }
                // Only a batch with a record that is not canonical is left to arrow-json.
                None => proptest::prop_assert!(
                    records.iter().any(|r| !enc.rows.is_canonical(r.as_bytes())),
                    "direct path refused {:?}", records
                ),
            }
        }
    }

    /// Reads a Parquet or ORC file back as JSON rows (arrow-json's writer), to compare values.
    fn read_back(bytes: Vec<u8>) -> Vec<serde_json::Value> {
        let bytes = bytes::Bytes::from(bytes);
        let batches: Vec<RecordBatch> = if bytes.starts_with(b"ORC") {
            orc_rust::ArrowReaderBuilder::try_new(bytes).unwrap().build().map(Result::unwrap).collect()
        } else {
            ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap().build().unwrap().map(Result::unwrap).collect()
        };
        let mut writer = arrow_json::ArrayWriter::new(Vec::new());
        for b in &batches {
            writer.write(b).unwrap();
        }
        writer.finish().unwrap();
        serde_json::from_slice(&writer.into_inner()).unwrap()
    }

    #[test]
    fn glue_types_land_with_their_values() {
        let fields: Vec<Field> = [
            ("id", "tinyint"),
            ("price", "decimal(8,2)"),
            ("at", "timestamp"),
            ("day", "date"),
            ("geo", "struct<lat:double,lon:double>"),
            ("tags", "array<string>"),
            ("attrs", "map<string,int>"),
            ("code", "varchar(3)"),
        ]
        .iter()
        .map(|(n, t)| crate::schema::field(n, t, true).unwrap())
        .collect();
        let enc = ColumnarEncoder::new(Arc::new(Schema::new(fields)), &ParquetSerDe::default(), JsonSerDe::default());
        let records: Vec<&[u8]> = vec![
            br#"{"ID":7,"Price":"19.999","At":1704164645,"Day":"2024-01-02","Geo":{"Lat":52.5,"Lon":13.4},"Tags":["a","b"],"Attrs":{"Clicks":3},"code":"abc"}"#,
            br#"{"id":1,"code":"abcd"}"#,
            br#"{"id":300}"#,
        ];
        let c = enc.encode(&records).unwrap();
        let failed: Vec<usize> = c.failed.iter().map(|f| f.index).collect();
        assert_eq!(failed, [1, 2], "{:?}", c.failed);
        let rows = read_back(c.bytes);
        assert_eq!(
            rows,
            [serde_json::json!({"id": 7, "price": 20.0, "at": "2024-01-02T03:04:05Z", "day": "2024-01-02",
                "geo": {"lat": 52.5, "lon": 13.4}, "tags": ["a", "b"], "attrs": {"Clicks": 3}, "code": "abc"})]
        );
    }

    proptest::proptest! {
        /// Every record either lands with its values (under the documented coercions) or
        /// fails with a reason: never both, never neither, never another value; in Parquet
        /// and in ORC.
        #[test]
        fn every_record_lands_exactly_or_fails(values in proptest::collection::vec(
            (proptest::option::of(proptest::num::i64::ANY), proptest::option::of(-1e6f64..1e6),
             proptest::option::of("[a-z]{0,6}"), proptest::option::of(proptest::bool::ANY), 0u8..4),
            1..40), orc in proptest::bool::ANY) {
            let fields = vec![
                Field::new("i", DataType::Int32, true),
                Field::new("d", DataType::Float64, true),
                Field::new("s", DataType::Utf8, true),
                Field::new("b", DataType::Boolean, true),
            ];
            let schema = Arc::new(Schema::new(fields));
            let enc = if orc {
                ColumnarEncoder::orc(schema, &crate::spec::OrcSerDe::default(), JsonSerDe::default())
            } else {
                ColumnarEncoder::new(schema, &ParquetSerDe::default(), JsonSerDe::default())
            };
            // Some records put a value of another kind into a column (a string into `i`,
            // a fraction into `i`, a number into `b`), so failures are generated too.
            let records: Vec<String> = values.iter().map(|(i, d, s, b, twist)| {
                let mut o = serde_json::Map::new();
                if let Some(i) = i { o.insert("i".into(), (*i).into()); }
                if let Some(d) = d { o.insert("d".into(), (*d).into()); }
                if let Some(s) = s { o.insert("s".into(), s.clone().into()); }
                if let Some(b) = b { o.insert("b".into(), (*b).into()); }
                match twist { 1 => { o.insert("i".into(), "x".into()); } 2 => { o.insert("i".into(), 0.5.into()); } 3 => { o.insert("b".into(), 1.into()); } _ => {} }
                serde_json::Value::Object(o).to_string()
            }).collect();
            let refs: Vec<&[u8]> = records.iter().map(|r| r.as_bytes()).collect();
            let c = enc.encode(&refs).unwrap();
            let rows = if c.rows == 0 { Vec::new() } else { read_back(c.bytes) };
            let failed: Vec<usize> = c.failed.iter().map(|f| f.index).collect();
            proptest::prop_assert_eq!(rows.len() + failed.len(), records.len());
            let mut landed = rows.iter();
            for (n, (i, d, s, b, twist)) in values.iter().enumerate() {
                let fits = *twist == 0 && i.is_none_or(|i| i32::try_from(i).is_ok());
                proptest::prop_assert_eq!(fits, !failed.contains(&n), "record {}: {}", n, &records[n]);
                if fits {
                    let row = landed.next().unwrap();
                    proptest::prop_assert_eq!(row.get("i").and_then(|v| v.as_i64()), *i);
                    proptest::prop_assert_eq!(row.get("d").and_then(|v| v.as_f64()), *d);
                    proptest::prop_assert_eq!(row.get("s").and_then(|v| v.as_str()), s.as_deref());
                    proptest::prop_assert_eq!(row.get("b").and_then(|v| v.as_bool()), *b);
                }
            }
        }
    }

    #[test]
    fn raw_objects_concatenate_and_compress() {
        let recs: [&[u8]; 2] = [b"ab", b"cd"];
        assert_eq!(RawCompression::None.encode(recs, b"", "e").unwrap(), b"abcd");
        assert_eq!(RawCompression::None.encode(recs, b"\n", "e").unwrap(), b"ab\ncd\n");
        let gz = RawCompression::Gzip.encode(recs, b"", "e").unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(gz.as_slice()), &mut out).unwrap();
        assert_eq!(out, "abcd");
        assert_eq!(zstd::decode_all(RawCompression::Zstd.encode(recs, b"", "e").unwrap().as_slice()).unwrap(), b"abcd");
        let framed = RawCompression::Snappy.encode(recs, b"\n", "e").unwrap();
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut snap::read::FrameDecoder::new(framed.as_slice()), &mut out).unwrap();
        assert_eq!(out, b"ab\ncd\n");
        let big: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
        let hadoop = RawCompression::HadoopSnappy.encode([big.as_slice()], b"", "e").unwrap();
        let (mut at, mut back) = (0, Vec::new());
        while at < hadoop.len() {
            let n = u32::from_be_bytes(hadoop[at..at + 4].try_into().unwrap()) as usize;
            let c = u32::from_be_bytes(hadoop[at + 4..at + 8].try_into().unwrap()) as usize;
            let block = snap::raw::Decoder::new().decompress_vec(&hadoop[at + 8..at + 8 + c]).unwrap();
            assert_eq!(block.len(), n);
            back.extend(block);
            at += 8 + c;
        }
        assert_eq!(back, big, "three 256 KiB blocks decode back");
        let zipped = RawCompression::Zip.encode(recs, b"", "stream-1").unwrap();
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zipped)).unwrap();
        let mut entry = archive.by_name("stream-1").unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
        assert_eq!(text, "abcd");
    }
}
