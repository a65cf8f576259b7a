//! What a replay on a running server costs live producers: PutRecords latency (p50, p99,
//! max) under a steady live load, without a replay, during an unpaced replay and during a
//! paced one. The server (`sluice serve`, started by `benches/replay_latency.sh`) holds a
//! 4-shard stream filled with the Beijing readings and a Parquet delivery stream reading it;
//! the replay lands the whole stream again under `replay-<n>/`.
//!
//! The live load is open-loop: every 10 ms a PutRecords of 20 Beijing readings is sent
//! whether or not the one before was answered (2,000 records/s), so a slow answer cannot
//! hide the ones queued behind it. Without a replay it runs `seconds`; with one, for as long
//! as the replay runs.
//!
//! Run: `benches/replay_latency.sh` (or this with `-- <endpoint> <dataset> <seconds per phase>`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice::client::{KinesisClient, PutEntry};

const STREAM: &str = "air";
const DELIVERY: &str = "air-lake";

fn lines(path: &str) -> Vec<String> {
    use std::io::BufRead as _;
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    std::io::BufReader::new(flate2::read::GzDecoder::new(file)).lines().map(Result::unwrap).collect()
}

fn station(line: &str) -> String {
    serde_json::from_str::<Value>(line).unwrap()["station"].as_str().unwrap().to_owned()
}

async fn put(client: &KinesisClient, batch: &[String]) {
    let keys: Vec<String> = batch.iter().map(|l| station(l)).collect();
    let entries: Vec<PutEntry<'_>> =
        batch.iter().zip(&keys).map(|(l, k)| PutEntry { partition_key: k, data: l.as_bytes() }).collect();
    client.put_records(STREAM, &entries).await.unwrap();
}

/// PutRecords latencies (s) of the live load, run until `running` turns false.
async fn live_load(
    client: &Arc<KinesisClient>,
    data: &Arc<Vec<String>>,
    running: tokio::sync::watch::Receiver<bool>,
) -> Vec<f64> {
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut sent = Vec::new();
    let mut i = 0usize;
    while *running.borrow() {
        tick.tick().await;
        let (client, data) = (client.clone(), data.clone());
        let from = (i * 20) % (data.len() - 20);
        i += 1;
        sent.push(tokio::spawn(async move {
            let started = Instant::now();
            put(&client, &data[from..from + 20]).await;
            started.elapsed().as_secs_f64()
        }));
    }
    let mut latencies = Vec::new();
    for s in sent {
        latencies.push(s.await.unwrap());
    }
    latencies.sort_by(f64::total_cmp);
    latencies
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

async fn reprocessing(client: &KinesisClient, operation: &str, body: Value) -> Value {
    client.call(&format!("SluiceReprocessing_20261205.{operation}"), "firehose", &body).await.unwrap()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let endpoint = args.first().cloned().unwrap_or_else(|| "http://127.0.0.1:4567".into());
    let dataset =
        args.get(1).cloned().unwrap_or_else(|| "examples/data/beijing_multisite_air_quality_2013_2017.jsonl.gz".into());
    let seconds: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(15.0);
    let client = Arc::new(KinesisClient::new(&endpoint, "us-east-1", "sluice", "sluice-secret"));
    let data = Arc::new(lines(&dataset));

    client.kinesis("CreateStream", &json!({"StreamName": STREAM, "ShardCount": 4})).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let arn = client.kinesis("DescribeStreamSummary", &json!({"StreamName": STREAM})).await.unwrap()
        ["StreamDescriptionSummary"]["StreamARN"]
        .as_str()
        .unwrap()
        .to_owned();
    client
        .firehose(
            "CreateDeliveryStream",
            &json!({
                "DeliveryStreamName": DELIVERY,
                "DeliveryStreamType": "KinesisStreamAsSource",
                "KinesisStreamSourceConfiguration": {"KinesisStreamARN": arn, "RoleARN": "arn:aws:iam::000000000000:role/r"},
                "ExtendedS3DestinationConfiguration": {
                    "RoleARN": "arn:aws:iam::000000000000:role/r",
                    "BucketARN": "arn:aws:s3:::lake",
                    "Prefix": "live/",
                    "ErrorOutputPrefix": "errors/!{firehose:error-output-type}/",
                    "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 5},
                    "DataFormatConversionConfiguration": {
                        "Enabled": true,
                        "SchemaConfiguration": {"DatabaseName": "beijing", "TableName": "air_quality", "RoleARN": "arn:aws:iam::000000000000:role/r"},
                        "InputFormatConfiguration": {"Deserializer": {"OpenXJsonSerDe": {}}},
                        "OutputFormatConfiguration": {"Serializer": {"ParquetSerDe": {}}}
                    }
                }
            }),
        )
        .await
        .unwrap();
    let filled = Instant::now();
    for chunk in data.chunks(500) {
        put(&client, chunk).await;
    }
    eprintln!("filled {} readings in {:.1} s", data.len(), filled.elapsed().as_secs_f64());
    // Live delivery catches up before the first phase.
    tokio::time::sleep(Duration::from_secs(8)).await;

    println!("| phase | PutRecords | p50 ms | p99 ms | max ms | replay |");
    println!("|---|---|---|---|---|---|");
    let mut phases: Vec<(&str, Option<u64>)> =
        vec![("no replay", None), ("unpaced replay", Some(0)), ("replay paced at 50,000 records/s", Some(50_000))];
    for (n, (label, pace)) in phases.drain(..).enumerate() {
        let task = match pace {
            None => None,
            Some(rate) => {
                let mut body =
                    json!({"DeliveryStreamName": DELIVERY, "FromTimestampMs": 0, "Prefix": format!("replay-{n}/")});
                if rate > 0 {
                    body["MaxRecordsPerSecond"] = rate.into();
                }
                Some(reprocessing(&client, "StartReplay", body).await["Task"]["TaskId"].as_str().unwrap().to_owned())
            }
        };
        let (stop, running) = tokio::sync::watch::channel(true);
        let load = {
            let (client, data) = (client.clone(), data.clone());
            tokio::spawn(async move { live_load(&client, &data, running).await })
        };
        let replay = match &task {
            None => {
                tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
                String::new()
            }
            Some(id) => loop {
                let t = reprocessing(&client, "DescribeTask", json!({"TaskId": id})).await["Task"].clone();
                if t["Status"] != "RUNNING" {
                    let took = (t["UpdatedMs"].as_u64().unwrap() - t["CreatedMs"].as_u64().unwrap()) as f64 / 1e3;
                    let n = t["Replay"]["Report"]["Records"].as_u64().unwrap();
                    break format!("{n} records in {took:.1} s ({:.0} records/s)", n as f64 / took);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            },
        };
        let _ = stop.send(false);
        let latencies = load.await.unwrap();
        let ms = |q: f64| quantile(&latencies, q) * 1e3;
        println!(
            "| {label} | {} | {:.2} | {:.2} | {:.2} | {replay} |",
            latencies.len(),
            ms(0.5),
            ms(0.99),
            latencies.last().copied().unwrap_or(0.0) * 1e3
        );
        eprintln!(
            "{}",
            json!({"phase": label, "requests": latencies.len(), "p50_ms": ms(0.5), "p99_ms": ms(0.99), "replay": replay})
        );
        // Live delivery of the load catches up before the next phase.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}
