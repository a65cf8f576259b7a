//! The real datasets shipped in `examples/data/`, and what tests check landed objects against.

use std::collections::BTreeMap;
use std::io::BufRead;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::Array;

/// The first `n` lines of a gzipped JSON Lines file in `examples/data/`.
pub fn lines(file: &str, n: usize) -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data").join(file);
    let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::io::BufReader::new(flate2::read::GzDecoder::new(f)).lines().take(n).map(Result::unwrap).collect()
}

/// Beijing air-quality readings (420,768 in the file).
pub fn beijing(n: usize) -> Vec<String> {
    lines("beijing_multisite_air_quality_2013_2017.jsonl.gz", n)
}

/// What identifies a set of Beijing readings: each (station, No) pair once, and the sum of
/// PM2.5 (nulls left out) in thousandths.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BeijingDigest {
    pub readings: Vec<(String, i64)>,
    pub pm25_milli: i64,
}

impl BeijingDigest {
    /// The digest of JSON records.
    pub fn of_json(records: &[String]) -> Self {
        let mut d = Self::default();
        for r in records {
            let v: serde_json::Value = serde_json::from_str(r).unwrap();
            d.readings.push((v["station"].as_str().unwrap().to_owned(), v["No"].as_i64().unwrap()));
            if let Some(p) = v["PM2.5"].as_f64() {
                d.pm25_milli += (p * 1000.0).round() as i64;
            }
        }
        d.readings.sort();
        d
    }

    /// The digest of Parquet objects' rows, with the stations each object held.
    pub fn of_parquet(objects: &[(String, Vec<u8>)]) -> (Self, BTreeMap<String, Vec<String>>) {
        let mut d = Self::default();
        let mut stations_by_key = BTreeMap::new();
        for (key, bytes) in objects {
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(
                bytes.clone(),
            ))
            .unwrap_or_else(|e| panic!("{key} is not Parquet: {e}"))
            .build()
            .unwrap();
            let mut stations = Vec::new();
            for batch in reader {
                let batch = batch.unwrap();
                let station = batch.column_by_name("station").unwrap().as_string::<i32>();
                let no = batch.column_by_name("No").unwrap().as_primitive::<Int64Type>();
                // PM2.5 is a double in the schema file; an inferred schema may make it bigint.
                let pm = batch.column_by_name("PM2.5").unwrap();
                let pm_at = |i: usize| -> Option<f64> {
                    if pm.is_null(i) {
                        return None;
                    }
                    match pm.as_primitive_opt::<Int64Type>() {
                        Some(ints) => Some(ints.value(i) as f64),
                        None => Some(pm.as_primitive::<Float64Type>().value(i)),
                    }
                };
                for i in 0..batch.num_rows() {
                    d.readings.push((station.value(i).to_owned(), no.value(i)));
                    stations.push(station.value(i).to_owned());
                    if let Some(p) = pm_at(i) {
                        d.pm25_milli += (p * 1000.0).round() as i64;
                    }
                }
            }
            stations.sort();
            stations.dedup();
            stations_by_key.insert(key.clone(), stations);
        }
        d.readings.sort();
        (d, stations_by_key)
    }
}
