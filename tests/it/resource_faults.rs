//! Faults of the machine, injected for real: a data directory on a small tmpfs that fills
//! up (mounted by the test; needs root), and a server process whose descriptor limit is
//! tiny (`prlimit`). Through both, the client gets an error, reads go on, and once the
//! resource returns appends resume with no acknowledged record lost.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use sluice_engine::ManualClock;

use crate::support::TestServer;

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// A tmpfs of `mib` MiB mounted at `dir`, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts it, or says why it cannot be (not root, no mount permission in a container).
    fn mount(dir: &Path, mib: u64) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!("mount failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(Self { dir: dir.to_owned() })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Fills the file system of `dir` with a ballast file until at most `leave` bytes are free.
fn fill(dir: &Path, leave: u64) -> PathBuf {
    use std::io::Write;
    let path = dir.join("ballast");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    loop {
        let free = free_bytes(dir);
        if free <= leave + chunk.len() as u64 {
            break;
        }
        if f.write_all(&chunk).is_err() {
            break;
        }
    }
    f.sync_all().unwrap();
    path
}

fn free_bytes(dir: &Path) -> u64 {
    let out = std::process::Command::new("df").args(["-B1", "--output=avail"]).arg(dir).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().nth(1).unwrap().trim().parse().unwrap()
}

/// Every record of every shard of `stream`, as (shard id, data).
async fn read_all(k: &aws_sdk_kinesis::Client, stream: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let shards = k.list_shards().stream_name(stream).send().await.unwrap();
    for shard in shards.shards() {
        let mut it = k
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator()
            .map(str::to_owned);
        while let Some(i) = it {
            let got = k.get_records().shard_iterator(i).send().await.unwrap();
            if got.records().is_empty() {
                break;
            }
            out.extend(got.records().iter().map(|r| (shard.shard_id().to_owned(), r.data().as_ref().to_vec())));
            it = got.next_shard_iterator().map(str::to_owned);
        }
    }
    out
}

/// Puts records `{n}-<pad>` from `next` on until `stop` says so; returns the acknowledged.
async fn put_until(
    k: &aws_sdk_kinesis::Client,
    stream: &str,
    next: &mut u64,
    record_bytes: usize,
    mut stop: impl FnMut(usize, bool) -> bool,
) -> (Vec<Vec<u8>>, usize) {
    let mut acked = Vec::new();
    let mut failures = 0;
    for round in 0.. {
        let entries: Vec<_> = (0..8)
            .map(|_| {
                *next += 1;
                let mut data = format!("{:012}-", *next).into_bytes();
                data.resize(record_bytes, b'.');
                PutRecordsRequestEntry::builder().partition_key(next.to_string()).data(Blob::new(data)).build().unwrap()
            })
            .collect();
        let sent: Vec<Vec<u8>> = entries.iter().map(|e| e.data().as_ref().to_vec()).collect();
        let failed = match k.put_records().stream_name(stream).set_records(Some(entries)).send().await {
            Ok(out) => {
                for (r, data) in out.records().iter().zip(sent) {
                    if r.error_code().is_none() {
                        acked.push(data);
                    }
                }
                out.failed_record_count().unwrap_or(0) > 0
            }
            Err(e) => {
                let code = aws_sdk_kinesis::error::ProvideErrorMetadata::code(&e).unwrap_or_default().to_owned();
                assert_eq!(code, "InternalFailure", "a full disk is a server-side failure: {e:?}");
                true
            }
        };
        failures += usize::from(failed);
        if stop(round, failed) {
            break;
        }
    }
    (acked, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_requests_keeps_reads_and_loses_nothing_once_space_returns() {
    let root = tempfile::tempdir().unwrap();
    let mnt = root.path().join("mnt");
    let fs = match Tmpfs::mount(&mnt, 64) {
        Ok(fs) => fs,
        Err(why) => {
            // Mounting needs root and a mount namespace; CI runs as root. Say so loudly.
            println!("SKIPPED a_full_disk_fails_requests...: cannot mount a tmpfs here ({why})");
            return;
        }
    };
    let server = TestServer::start_with(&fs.dir.join("data"), Arc::new(ManualClock::new(now_ms())), |c| {
        c.throttle = sluice::config::Throttle::Off
    })
    .await;
    let k = server.client();
    k.create_stream().stream_name("full").shard_count(2).send().await.unwrap();
    k.create_stream().stream_name("other").shard_count(1).send().await.unwrap();
    let ballast = fill(&fs.dir, 3 << 20);

    // Appends until the disk refuses, and on for a while after (segment rolls keep failing).
    let mut next = 0;
    let mut first_failure = None;
    let (mut acked, failures) = put_until(&k, "full", &mut next, 16 << 10, |round, failed| {
        if failed && first_failure.is_none() {
            first_failure = Some(round);
        }
        first_failure.is_some_and(|f| round >= f + 20) || round > 5_000
    })
    .await;
    assert!(failures > 0, "the disk never filled: {} records acknowledged", acked.len());
    // With the last bytes taken too, metadata writes fail, and change nothing.
    let last_bytes = {
        let path = fs.dir.join("ballast-2");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 4096];
        while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
        path
    };
    let tag = k.add_tags_to_stream().stream_name("other").tags("t", "x").send().await;
    let code = tag.map_err(|e| aws_sdk_kinesis::error::ProvideErrorMetadata::code(&e).map(str::to_owned));
    assert_eq!(code.unwrap_err().as_deref(), Some("InternalFailure"));
    let tags = k.list_tags_for_stream().stream_name("other").send().await.unwrap();
    assert!(tags.tags().is_empty(), "a refused tag write must not show up");
    let created = k.create_stream().stream_name("new-on-full-disk").shard_count(4).send().await;
    assert!(created.is_err(), "a stream cannot be made on a full disk");
    assert_eq!(k.list_streams().send().await.unwrap().stream_names(), ["full", "other"]);
    // Reads go on meanwhile, and see every acknowledged record.
    let before: Vec<Vec<u8>> = read_all(&k, "full").await.into_iter().map(|(_, d)| d).collect();
    for a in &acked {
        assert!(before.contains(a), "acknowledged record missing while the disk is full");
    }

    // Space returns: appends resume, on the same shards, without a restart.
    std::fs::remove_file(&ballast).unwrap();
    std::fs::remove_file(&last_bytes).unwrap();
    let (more, failures_after) = put_until(&k, "full", &mut next, 16 << 10, |round, _| round >= 20).await;
    assert_eq!(failures_after, 0, "appends must resume once space returns");
    acked.extend(more);
    k.create_stream().stream_name("new-on-full-disk").shard_count(4).send().await.unwrap();
    k.add_tags_to_stream().stream_name("other").tags("after", "ok").send().await.unwrap();

    // Nothing acknowledged was lost, nothing is there twice, also after a restart.
    let check = |all: Vec<(String, Vec<u8>)>| {
        let mut count: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
        for (_, d) in all {
            *count.entry(d).or_default() += 1;
        }
        for a in &acked {
            assert_eq!(
                count.get(a),
                Some(&1),
                "acknowledged record {} not there exactly once",
                String::from_utf8_lossy(&a[..13])
            );
        }
        assert!(count.values().all(|&n| n == 1), "a record is there twice");
    };
    check(read_all(&k, "full").await);
    let data_dir = fs.dir.join("data");
    server.stop().await;
    let server = TestServer::start_with(&data_dir, Arc::new(ManualClock::new(now_ms())), |c| {
        c.throttle = sluice::config::Throttle::Off
    })
    .await;
    let k = server.client();
    check(read_all(&k, "full").await);
    server.stop().await;
    drop(fs);
}

/// One kept-alive HTTP/1.1 connection for unsigned JSON requests: it stays usable while the
/// server cannot accept new connections.
struct KeepAlive(tokio::net::TcpStream);

impl KeepAlive {
    async fn call(&mut self, action: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let body = body.to_string();
        let head = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Target: Kinesis_20131202.{action}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        self.0.write_all(head.as_bytes()).await.unwrap();
        self.0.write_all(body.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            self.0.read_exact(&mut byte).await.unwrap();
            buf.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let len: usize =
            head.lines().find_map(|l| l.strip_prefix("content-length: ")).map_or(0, |v| v.trim().parse().unwrap());
        let mut body = vec![0u8; len];
        self.0.read_exact(&mut body).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
    }

    /// PutRecords of eight records of `bytes` bytes; the acknowledged ones' data.
    async fn put(&mut self, next: &mut u64, bytes: usize) -> (Vec<Vec<u8>>, bool) {
        use base64::Engine as _;
        let datas: Vec<Vec<u8>> = (0..8)
            .map(|_| {
                *next += 1;
                let mut d = format!("{:012}-", *next).into_bytes();
                d.resize(bytes, b'.');
                d
            })
            .collect();
        let records: Vec<_> = datas
            .iter()
            .map(|d| serde_json::json!({"PartitionKey": "k", "Data": base64::engine::general_purpose::STANDARD.encode(d)}))
            .collect();
        let (status, answer) =
            self.call("PutRecords", &serde_json::json!({"StreamName": "s", "Records": records})).await;
        if status != 200 {
            assert_eq!(answer["__type"], "InternalFailure", "{answer}");
            return (Vec::new(), true);
        }
        let ok = answer["Records"].as_array().unwrap().iter().zip(datas).filter(|(r, _)| r["ErrorCode"].is_null());
        let acked: Vec<Vec<u8>> = ok.map(|(_, d)| d).collect();
        let failed = acked.len() < 8;
        (acked, failed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptor_exhaustion_fails_requests_without_poisoning_shards() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "bind = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nauth = \"none\"\nthrottle = \"off\"\nstream_transition_ms = 0\nschema_dir = \"{}\"\ntransform_dir = \"{}\"\n[lake]\nurl = \"file://{}\"\n",
            dir.path().join("data").display(),
            dir.path().join("schemas").display(),
            dir.path().join("wasm").display(),
            dir.path().join("lake").display(),
        ),
    )
    .unwrap();
    // 128 descriptors: enough to start and serve, few enough for a client to use them up.
    let mut child = KilledOnDrop(
        std::process::Command::new("prlimit")
            .arg("--nofile=128:128")
            .arg(env!("CARGO_BIN_EXE_sluice"))
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("prlimit (util-linux) runs the server with a low descriptor limit"),
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut control = loop {
        if let Ok(c) = tokio::net::TcpStream::connect(addr).await {
            break KeepAlive(c);
        }
        assert!(std::time::Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (status, _) = control.call("CreateStream", &serde_json::json!({"StreamName": "s", "ShardCount": 1})).await;
    assert_eq!(status, 200);
    let mut next = 0;
    let mut acked = Vec::new();
    for _ in 0..4 {
        acked.extend(control.put(&mut next, 1024).await.0);
    }

    // Hold connections until the server has used up its descriptors (it accepts while it
    // can; the kernel's backlog takes the rest). They send nothing; the header timeout
    // (30 s) is longer than this phase.
    let mut held = Vec::new();
    for _ in 0..200 {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Appends go on over the kept-alive connection; those that need a new segment file fail.
    let mut failed_during = 0;
    for _ in 0..40 {
        let (ok, failed) = control.put(&mut next, 16 << 10).await;
        acked.extend(ok);
        failed_during += usize::from(failed);
    }
    let (created, answer) =
        control.call("CreateStream", &serde_json::json!({"StreamName": "t", "ShardCount": 8})).await;
    assert!(failed_during > 0, "descriptors were never exhausted: every put found a segment file");
    assert_eq!((created, answer["__type"].as_str()), (500, Some("InternalFailure")), "{answer}");
    assert!(child.0.try_wait().unwrap().is_none(), "the server must survive descriptor exhaustion");

    // Descriptors return: the same shard takes appends again (it was not poisoned) and
    // rolls segments; the stream that could not be made can be made now.
    drop(held);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for _ in 0..40 {
        let (ok, failed) = control.put(&mut next, 16 << 10).await;
        assert!(!failed, "appends must resume once descriptors return");
        acked.extend(ok);
    }
    let (status, answer) = control.call("CreateStream", &serde_json::json!({"StreamName": "t", "ShardCount": 8})).await;
    assert_eq!(status, 200, "{answer}");
    drop(child);

    // Every acknowledged record is there once, after the SIGKILL too.
    let server = TestServer::start_with(&dir.path().join("data"), Arc::new(ManualClock::new(now_ms())), |c| {
        c.throttle = sluice::config::Throttle::Off
    })
    .await;
    let all: Vec<Vec<u8>> = read_all(&server.client(), "s").await.into_iter().map(|(_, d)| d).collect();
    let mut count: BTreeMap<&[u8], usize> = BTreeMap::new();
    for d in &all {
        *count.entry(d.as_slice()).or_default() += 1;
    }
    for a in &acked {
        assert_eq!(count.get(a.as_slice()), Some(&1));
    }
    server.stop().await;
}

/// A `file://` lake on a full disk: deliveries fail and are retried, puts go on (the data
/// directory has room), and once space returns every record lands exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_lake_delays_delivery_and_loses_nothing() {
    let root = tempfile::tempdir().unwrap();
    let fs = match Tmpfs::mount(&root.path().join("lake"), 8) {
        Ok(fs) => fs,
        Err(why) => {
            println!("SKIPPED a_full_lake_delays_delivery_and_loses_nothing: cannot mount a tmpfs here ({why})");
            return;
        }
    };
    let clock = Arc::new(ManualClock::new(now_ms()));
    let lake = sluice_firehose::LakeConfig { url: format!("file://{}", fs.dir.display()), ..Default::default() };
    let server = TestServer::start_with(&root.path().join("data"), clock.clone(), |c| {
        crate::firehose_delivery::delivery_config(c, lake)
    })
    .await;
    let f = server.firehose();
    f.create_delivery_stream()
        .delivery_stream_name("to-full-lake")
        .extended_s3_destination_configuration(
            crate::firehose_delivery::destination("raw/", "raw-errors/").build().unwrap(),
        )
        .send()
        .await
        .unwrap();
    std::fs::create_dir_all(fs.dir.join("lake")).unwrap();
    let ballast = {
        let path = fs.dir.join("ballast");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 4096];
        while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
        path
    };
    let records: Vec<String> = (0..200).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    for chunk in records.chunks(50) {
        let batch: Vec<_> = chunk
            .iter()
            .map(|d| {
                aws_sdk_firehose::types::Record::builder()
                    .data(aws_sdk_firehose::primitives::Blob::new(d.as_bytes()))
                    .build()
                    .unwrap()
            })
            .collect();
        let out =
            f.put_record_batch().delivery_stream_name("to-full-lake").set_records(Some(batch)).send().await.unwrap();
        assert_eq!(out.failed_put_count(), 0);
    }
    // Intervals pass; every write fails on the full disk (well inside the 300 s retry time).
    for _ in 0..5 {
        clock.advance(1_000);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let landed = crate::firehose_delivery::local_objects(&fs.dir.join("lake"));
    assert!(landed.is_empty(), "nothing can land on a full disk: {landed:?}");
    // The server goes on answering meanwhile.
    f.list_delivery_streams().send().await.unwrap();

    std::fs::remove_file(&ballast).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let lines = loop {
        clock.advance(1_000);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let landed = crate::firehose_delivery::local_objects(&fs.dir.join("lake"));
        let lines: Vec<String> = landed
            .iter()
            .filter(|(k, _)| k.contains("raw/"))
            .flat_map(|(_, b)| String::from_utf8_lossy(b).lines().map(|l| format!("{l}\n")).collect::<Vec<_>>())
            .collect();
        if lines.len() >= records.len() {
            break lines;
        }
        assert!(std::time::Instant::now() < deadline, "delivery did not resume once space returned");
    };
    let mut lines = lines;
    lines.sort();
    let mut want = records.clone();
    want.sort();
    assert_eq!(lines, want, "every record exactly once");
    assert!(
        crate::firehose_delivery::local_objects(&fs.dir.join("lake")).iter().all(|(k, _)| !k.contains("raw-errors")),
        "the outage was shorter than the retry time: no error objects"
    );
    server.stop().await;
}

/// A child process killed (and reaped) when dropped, also when a failed assertion unwinds:
/// a leaked server would keep the test command's output pipe open and hang it.
struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
