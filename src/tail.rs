//! `sluice tail`: prints a stream's records as they arrive, through the Kinesis API
//! (ListShards, GetShardIterator, GetRecords), without checkpointing: for debugging.

use std::time::Duration;

use base64::Engine as _;
use serde_json::json;

use crate::client::{ClientError, KinesisClient};

/// How a record's data is shown: as text when it is printable UTF-8, else base64.
pub fn show(data: &[u8]) -> String {
    match std::str::from_utf8(data) {
        Ok(s) if s.chars().all(|c| !c.is_control() || c == '\t') => s.to_owned(),
        _ => format!("base64:{}", base64::engine::general_purpose::STANDARD.encode(data)),
    }
}

/// Follows every open shard of `stream` from `iterator_type` (`LATEST` or `TRIM_HORIZON`),
/// calling `print` with one line per record, until `stop` completes.
pub async fn tail(
    client: &KinesisClient,
    stream: &str,
    iterator_type: &str,
    mut print: impl FnMut(String),
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), ClientError> {
    let shards = client.kinesis("ListShards", &json!({"StreamName": stream})).await?;
    let mut iterators = Vec::new();
    for s in shards["Shards"].as_array().into_iter().flatten() {
        let id = s["ShardId"].as_str().unwrap_or_default().to_owned();
        let it = client
            .kinesis(
                "GetShardIterator",
                &json!({"StreamName": stream, "ShardId": id, "ShardIteratorType": iterator_type}),
            )
            .await?;
        iterators.push((id, it["ShardIterator"].as_str().map(str::to_owned)));
    }
    tokio::pin!(stop);
    loop {
        let mut got = 0;
        for (shard, iterator) in &mut iterators {
            let Some(it) = iterator.clone() else { continue };
            let out = client.kinesis("GetRecords", &json!({"ShardIterator": it})).await?;
            for r in out["Records"].as_array().into_iter().flatten() {
                let data = base64::engine::general_purpose::STANDARD
                    .decode(r["Data"].as_str().unwrap_or_default())
                    .unwrap_or_default();
                print(format!(
                    "{shard} {} {}: {}",
                    r["SequenceNumber"].as_str().unwrap_or_default(),
                    r["PartitionKey"].as_str().unwrap_or_default(),
                    show(&data)
                ));
                got += 1;
            }
            *iterator = out["NextShardIterator"].as_str().map(str::to_owned);
        }
        if got == 0 {
            // GetRecords is limited to 5 calls per second per shard.
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
                () = &mut stop => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::show;

    #[test]
    fn shows_text_as_text_and_bytes_as_base64() {
        assert_eq!(show(b"{\"a\":1}"), "{\"a\":1}");
        assert_eq!(show(&[0, 159, 146, 150]), "base64:AJ+Slg==");
    }
}
