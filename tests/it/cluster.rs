//! A cluster of `sluice serve` processes on one etcd (Debian's etcd-server, installed by
//! `.ci/run`): membership by lease, unique node ids, and what killing a node, stopping one and
//! restarting etcd do to it; streams created and deleted through the cluster's catalog on
//! any node, and every node's copy. Skipped, with the reason printed, where no etcd binary
//! is found.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod faults;
mod firehose;
mod reshard;

/// The etcd binary: `SLUICE_ETCD_BIN`, else `etcd` on the PATH.
fn etcd_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("SLUICE_ETCD_BIN") {
        // Named (as .ci/run does): it must be there, so CI never skips the test.
        assert!(Path::new(&p).is_file(), "SLUICE_ETCD_BIN={p} is not a file");
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join("etcd")).find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One etcd member on loopback ports, its data in `dir`.
struct Etcd {
    binary: PathBuf,
    dir: PathBuf,
    client: u16,
    peer: u16,
    process: Option<Killed>,
}

impl Etcd {
    fn start(binary: PathBuf, dir: &Path) -> Self {
        let mut e = Self { binary, dir: dir.to_owned(), client: free_port(), peer: free_port(), process: None };
        e.restart();
        e
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client)
    }

    fn restart(&mut self) {
        let client = self.url();
        let peer = format!("http://127.0.0.1:{}", self.peer);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("etcd.log")).unwrap();
        let child = Command::new(&self.binary)
            .args(["--name", "e1", "--data-dir"])
            .arg(self.dir.join("etcd-data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("e1={peer}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.process = Some(Killed(child));
    }

    fn kill(&mut self) {
        self.process = None;
    }
}

/// `sluice serve` as node `id` of cluster `test` (lease 2 s), landing delivery streams in
/// the folder `<dir>/lake`, which the nodes share.
fn node(dir: &Path, etcd: &str, id: &str, port: u16) -> Child {
    node_booted(dir, etcd, id, port, None)
}

/// As [`node`], on a machine whose boot id is `boot_id` (`SLUICE_BOOT_ID`; `None`: the
/// kernel's): a node started under another boot id than its last run's takes its machine
/// to have restarted.
fn node_booted(dir: &Path, etcd: &str, id: &str, port: u16, boot_id: Option<&str>) -> Child {
    let config = dir.join(format!("{id}-{port}.toml"));
    std::fs::write(
        &config,
        format!(
            "bind = \"127.0.0.1:{port}\"\ndata_dir = \"{data}\"\nauth = \"none\"\n[lake]\nurl = \"file://{lake}\"\n[cluster]\netcd_endpoints = [\"{etcd}\"]\nnode_id = \"{id}\"\nname = \"test\"\nlease_ttl_s = 2\n",
            data = dir.join(format!("{id}-{port}")).display(),
            lake = dir.join("lake").display(),
        ),
    )
    .unwrap();
    // To a file, not a pipe nobody reads: a node that logs much would block on a full pipe.
    let log = std::fs::OpenOptions::new().create(true).append(true).open(node_log(dir, id, port)).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command.args(["serve", "--config"]).arg(&config).env("RUST_LOG", "warn").stdout(Stdio::null()).stderr(log);
    if let Some(b) = boot_id {
        command.env("SLUICE_BOOT_ID", b);
    }
    command.spawn().unwrap()
}

/// Where node `id` on `port` logs.
fn node_log(dir: &Path, id: &str, port: u16) -> PathBuf {
    dir.join(format!("{id}-{port}.log"))
}

/// `sluice cluster status --json`: (node id, address) in id order.
fn status(etcd: &str) -> Vec<(String, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["cluster", "status", "--name", "test", "--json", "--etcd", etcd])
        .output()
        .unwrap();
    if !out.status.success() {
        return vec![("unreachable".into(), String::from_utf8_lossy(&out.stderr).into_owned())];
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["node_id"].as_str().unwrap().to_owned(), n["address"].as_str().unwrap().to_owned()))
        .collect()
}

/// Polls [`status`] until it is `want` (a bound for the test, not a timing assertion).
fn wait_for(etcd: &str, want: &[(String, String)], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = status(etcd);
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: still {got:?}, want {want:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn sigterm(c: &mut Child) {
    // SAFETY: a plain kill(2) of our own child.
    unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
    c.wait().unwrap();
}

#[test]
fn nodes_join_by_lease_ids_are_unique_and_membership_outlives_kills_and_an_etcd_restart() {
    let Some(binary) = etcd_binary() else {
        eprintln!(
            "cluster test skipped: no etcd binary (SLUICE_ETCD_BIN or etcd on the PATH; .ci/run installs etcd-server)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = Etcd::start(binary, dir.path());
    let url = etcd.url();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let ids = ["n1", "n2", "n3"];
    let mut nodes: Vec<Killed> = ids.iter().zip(&ports).map(|(id, p)| Killed(node(dir.path(), &url, id, *p))).collect();
    let member = |i: usize| (ids[i].to_owned(), format!("127.0.0.1:{}", ports[i]));
    let all: Vec<_> = (0..3).map(member).collect();
    wait_for(&url, &all, "three nodes join");

    // A second process with a live node's id is refused, naming that node.
    let port = free_port();
    let exit = node(dir.path(), &url, "n2", port).wait().unwrap();
    let stderr = std::fs::read_to_string(node_log(dir.path(), "n2", port)).unwrap();
    assert!(!exit.success(), "{stderr}");
    assert!(stderr.contains(&format!("node id n2 is held by a live node at 127.0.0.1:{}", ports[1])), "{stderr}");
    assert_eq!(status(&url), all, "the refused process changed nothing");

    // SIGKILL: the node leaves when its lease expires; started again, it joins again.
    nodes[1].0.kill().unwrap();
    nodes[1].0.wait().unwrap();
    wait_for(&url, &[member(0), member(2)], "a killed node leaves");
    nodes[1] = Killed(node(dir.path(), &url, "n2", ports[1]));
    wait_for(&url, &all, "the restarted node joins again");
    // Killed and started again at once, on its address: its own key, still leased, is taken
    // over (the port is the new process's, so the old one is gone).
    nodes[1].0.kill().unwrap();
    nodes[1].0.wait().unwrap();
    let mut again = node(dir.path(), &url, "n2", ports[1]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(again.try_wait().unwrap().is_none(), "a node restarted within its lease was refused");
    nodes[1] = Killed(again);
    wait_for(&url, &all, "the node restarted at once is a member");

    // etcd killed for longer than the lease, then started again on its data: every node is
    // a member again (its lease kept alive, or a new one claimed).
    etcd.kill();
    std::thread::sleep(Duration::from_secs(4));
    etcd.restart();
    wait_for(&url, &all, "membership after an etcd restart");

    // SIGTERM: the node leaves at once (its lease revoked).
    sigterm(&mut nodes[2].0);
    wait_for(&url, &[member(0), member(1)], "a stopped node leaves");
}

/// The catalog as `sluice cluster status --json` shows it: stream name → its shards.
fn catalog(etcd: &str) -> Vec<(String, Vec<Value>)> {
    status_json(etcd)["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_owned(), s["shards"].as_array().unwrap().clone()))
        .collect()
}

/// `sluice cluster status --json` of cluster "test".
fn status_json(etcd: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["cluster", "status", "--name", "test", "--json", "--etcd", etcd])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A node's view of stream `name`: (status, creation time in s, shard ids and hash key
/// ranges), or the error's code.
async fn view(k: &aws_sdk_kinesis::Client, name: &str) -> Result<(String, i64, Vec<String>), String> {
    let summary = k.describe_stream_summary().stream_name(name).send().await.map_err(|e| {
        use aws_sdk_kinesis::error::ProvideErrorMetadata;
        e.code().unwrap_or("no code").to_owned()
    })?;
    let d = summary.stream_description_summary.unwrap();
    let shards = k.list_shards().stream_name(name).send().await.map_err(|e| format!("{e:?}"))?;
    let shards = shards
        .shards()
        .iter()
        .map(|s| {
            let r = s.hash_key_range().unwrap();
            format!("{} {}..{}", s.shard_id(), r.starting_hash_key(), r.ending_hash_key())
        })
        .collect();
    Ok((d.stream_status.as_str().to_owned(), d.stream_creation_timestamp.secs(), shards))
}

/// Polls `node`'s view of `name` until `want` says yes (a bound for the test, not a timing
/// assertion).
async fn until(
    k: &aws_sdk_kinesis::Client,
    name: &str,
    what: &str,
    want: impl Fn(&Result<(String, i64, Vec<String>), String>) -> bool,
) -> Result<(String, i64, Vec<String>), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = view(k, name).await;
        if want(&got) {
            return got;
        }
        assert!(Instant::now() < deadline, "{what}: still {got:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// etcd and three nodes (n1, n2, n3) that have joined, with an aws-sdk-kinesis client of
/// each; `None` (the reason printed) where no etcd binary is found.
struct ThreeNodes {
    dir: tempfile::TempDir,
    etcd: Etcd,
    url: String,
    ports: Vec<u16>,
    ids: [&'static str; 3],
    nodes: Vec<Killed>,
    all: Vec<(String, String)>,
    clients: Vec<aws_sdk_kinesis::Client>,
}

fn three_nodes(what: &str) -> Option<ThreeNodes> {
    let Some(binary) = etcd_binary() else {
        eprintln!("cluster {what} test skipped: no etcd binary (SLUICE_ETCD_BIN or etcd on the PATH)");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(binary, dir.path());
    let url = etcd.url();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let ids = ["n1", "n2", "n3"];
    let nodes: Vec<Killed> = ids.iter().zip(&ports).map(|(id, p)| Killed(node(dir.path(), &url, id, *p))).collect();
    let all: Vec<_> = (0..3).map(|i| (ids[i].to_owned(), format!("127.0.0.1:{}", ports[i]))).collect();
    wait_for(&url, &all, "three nodes join");
    let clients: Vec<aws_sdk_kinesis::Client> =
        ports.iter().map(|p| crate::support::kinesis_client(([127, 0, 0, 1], *p).into(), "AKIDANY", "any")).collect();
    Some(ThreeNodes { dir, etcd, url, ports, ids, nodes, all, clients })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_created_and_deleted_through_the_catalog_on_any_node_and_every_node_holds_a_copy() {
    let Some(ThreeNodes { dir, etcd: _etcd, url, ports, ids, mut nodes, all: _, clients }) = three_nodes("catalog")
    else {
        return;
    };
    let active = |r: &Result<(String, i64, Vec<String>), String>| r.as_ref().is_ok_and(|v| v.0 == "ACTIVE");
    let gone = |r: &Result<(String, i64, Vec<String>), String>| {
        r.as_ref().err().map(String::as_str) == Some("ResourceNotFoundException")
    };

    // Created on n1: every node holds the same stream (creation time, shards, ranges).
    clients[0].create_stream().stream_name("clicks").shard_count(4).send().await.unwrap();
    let on_n1 = until(&clients[0], "clicks", "n1's stream becomes ACTIVE", active).await.unwrap();
    assert_eq!(on_n1.2.len(), 4);
    for (i, k) in clients.iter().enumerate().skip(1) {
        let copy = until(k, "clicks", &format!("{}'s copy becomes ACTIVE", ids[i]), active).await;
        assert_eq!(copy.as_ref().unwrap(), &on_n1, "{}'s copy", ids[i]);
    }
    // The catalog places each shard on three distinct nodes, and every node leads a shard.
    let shards = catalog(&url).into_iter().find(|(n, _)| n == "clicks").expect("clicks in the catalog").1;
    assert_eq!(shards.len(), 4);
    let mut leaders = std::collections::BTreeSet::new();
    for s in &shards {
        let mut replicas: Vec<&str> = s["replicas"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
        replicas.sort_unstable();
        assert_eq!(replicas, ids, "{s}");
        assert_eq!(s["epoch"], 1);
        leaders.insert(s["leader"].as_str().unwrap().to_owned());
    }
    assert_eq!(leaders.len(), 3, "leaders {leaders:?}");
    // A stream's own replication factor, as a tag given to CreateStream: one replica per
    // shard here; out of range, refused.
    let tagged = |name: &str, r: &str| {
        clients[1].create_stream().stream_name(name).shard_count(3).tags("sluice:replication-factor", r).send()
    };
    tagged("single", "1").await.unwrap();
    let single = catalog(&url).into_iter().find(|(n, _)| n == "single").expect("single in the catalog").1;
    assert!(single.iter().all(|s| s["replicas"].as_array().unwrap().len() == 1), "{single:?}");
    let refused = tagged("eight", "8").await.unwrap_err();
    let refused = aws_sdk_kinesis::error::ProvideErrorMetadata::code(&refused).map(str::to_owned);
    assert_eq!(refused.as_deref(), Some("InvalidArgumentException"));

    // The name is the cluster's: taken on every node, and two nodes racing for a new name
    // cannot both have it.
    let again = clients[2].create_stream().stream_name("clicks").shard_count(1).send().await.unwrap_err();
    assert_eq!(aws_sdk_kinesis::error::ProvideErrorMetadata::code(&again), Some("ResourceInUseException"));
    let (a, b) = tokio::join!(
        clients[1].create_stream().stream_name("race").shard_count(1).send(),
        clients[2].create_stream().stream_name("race").shard_count(2).send()
    );
    assert_eq!(u8::from(a.is_ok()) + u8::from(b.is_ok()), 1, "{a:?} {b:?}");
    let race = until(&clients[0], "race", "the race's winner on n1", active).await.unwrap();
    for k in &clients[1..] {
        assert_eq!(until(k, "race", "the race's winner everywhere", active).await.unwrap(), race);
    }
    // Tags, retention, monitoring and consumers changed on one node reach every copy.
    clients[1].add_tags_to_stream().stream_name("clicks").tags("team", "data").send().await.unwrap();
    clients[2]
        .increase_stream_retention_period()
        .stream_name("clicks")
        .retention_period_hours(48)
        .send()
        .await
        .unwrap();
    clients[0]
        .enable_enhanced_monitoring()
        .stream_name("clicks")
        .shard_level_metrics(aws_sdk_kinesis::types::MetricsName::IncomingBytes)
        .send()
        .await
        .unwrap();
    until(&clients[0], "clicks", "n1's copy ACTIVE after the monitoring change", active).await.unwrap();
    let summary = clients[0].describe_stream_summary().stream_name("clicks").send().await.unwrap();
    let arn = summary.stream_description_summary.unwrap().stream_arn;
    clients[0].register_stream_consumer().stream_arn(&arn).consumer_name("reader").send().await.unwrap();
    for (i, k) in clients.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let tags = k.list_tags_for_stream().stream_name("clicks").send().await.unwrap();
            let d = k.describe_stream_summary().stream_name("clicks").send().await.unwrap();
            let d = d.stream_description_summary.unwrap();
            let consumers = k.list_stream_consumers().stream_arn(&arn).send().await.unwrap();
            let seen = (
                tags.tags().iter().any(|t| t.key() == "team" && t.value() == Some("data")),
                d.retention_period_hours,
                d.enhanced_monitoring
                    .iter()
                    .flat_map(|m| m.shard_level_metrics())
                    .any(|m| *m == aws_sdk_kinesis::types::MetricsName::IncomingBytes),
                consumers.consumers().iter().any(|c| c.consumer_name() == "reader"),
            );
            if seen == (true, 48, true, true) {
                break;
            }
            assert!(Instant::now() < deadline, "{} never took the changes made on other nodes: {seen:?}", ids[i]);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // Deleted on n1 while n2 is down: gone from n3 at once and from n2 when it is back.
    nodes[1].0.kill().unwrap();
    nodes[1].0.wait().unwrap();
    clients[0].delete_stream().stream_name("clicks").enforce_consumer_deletion(true).send().await.unwrap();
    until(&clients[2], "clicks", "n3's copy deleted", gone).await.unwrap_err();
    nodes[1] = Killed(node(dir.path(), &url, "n2", ports[1]));
    until(&clients[1], "clicks", "the restarted n2 deletes its copy", gone).await.unwrap_err();
    assert!(catalog(&url).iter().all(|(n, _)| n != "clicks"));

    // Created again under the same name, with other shards: a new incarnation everywhere.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    clients[2].create_stream().stream_name("clicks").shard_count(2).send().await.unwrap();
    let reborn = until(&clients[2], "clicks", "the new clicks on n3", active).await.unwrap();
    assert_eq!(reborn.2.len(), 2);
    assert!(reborn.1 > on_n1.1, "a new creation time");
    for k in &clients[..2] {
        assert_eq!(
            until(k, "clicks", "the new clicks everywhere", |r| active(r) && r.as_ref().unwrap().2.len() == 2)
                .await
                .unwrap(),
            reborn
        );
    }
    drop(nodes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_replica_of_a_shard_serves_its_reads_from_one_that_has() {
    let Some(ThreeNodes { dir, etcd: _etcd, url, ports: _, ids: _, mut nodes, mut all, mut clients }) =
        three_nodes("read forwarding")
    else {
        return;
    };
    // A fourth node: each shard of a stream made now has three replicas among four nodes.
    let port = free_port();
    nodes.push(Killed(node(dir.path(), &url, "n4", port)));
    all.push(("n4".into(), format!("127.0.0.1:{port}")));
    wait_for(&url, &all, "four nodes join");
    clients.push(crate::support::kinesis_client(([127, 0, 0, 1], port).into(), "AKIDANY", "any"));
    let ids = ["n1", "n2", "n3", "n4"];
    let active = |r: &Result<(String, i64, Vec<String>), String>| r.as_ref().is_ok_and(|v| v.0 == "ACTIVE");
    clients[3].create_stream().stream_name("telemetry").shard_count(4).send().await.unwrap();
    for (i, k) in clients.iter().enumerate() {
        until(k, "telemetry", &format!("{}'s copy", ids[i]), active).await.unwrap();
    }
    let placement = catalog(&url).into_iter().find(|(n, _)| n == "telemetry").unwrap().1;
    for id in ids {
        let lacking = placement.iter().filter(|p| !p["replicas"].as_array().unwrap().iter().any(|r| r == id)).count();
        assert_eq!(lacking, 1, "{id} holds no replica of exactly one shard: {placement:?}");
    }
    let shards = ["shardId-000000000000", "shardId-000000000001", "shardId-000000000002", "shardId-000000000003"];
    let acked = put_through_every_node(&clients, &ids, 8, 100).await;
    assert_eq!(acked.len(), 4, "every shard took records");
    // Every node, a replica or not, returns every shard's acknowledged records (from
    // TRIM_HORIZON, through GetShardIterator and GetRecords), the same on every node.
    every_node_holds(&clients, &ids, &shards, &acked, true).await;

    // The same in CBOR (the Java SDKs' protocol), on the node without a replica of shard 0.
    let outsider = ids.iter().position(|id| !placement[0]["replicas"].as_array().unwrap().iter().any(|r| r == id));
    let outsider = outsider.unwrap();
    let iterator = clients[outsider]
        .get_shard_iterator()
        .stream_name("telemetry")
        .shard_id(shards[0])
        .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();
    use ciborium::value::Value as Cbor;
    let mut request = Vec::new();
    let body = Cbor::Map(vec![(Cbor::Text("ShardIterator".into()), Cbor::Text(iterator))]);
    ciborium::ser::into_writer(&body, &mut request).unwrap();
    let addr = all[outsider].1.parse().unwrap();
    let (status, content_type, answer) =
        crate::support::raw_call(addr, "Kinesis_20131202.GetRecords", "application/x-amz-cbor-1.1", &request).await;
    assert_eq!((status, content_type.as_str()), (200, "application/x-amz-cbor-1.1"), "{answer:?}");
    let answer: Cbor = ciborium::de::from_reader(answer.as_slice()).unwrap();
    let records = answer.as_map().unwrap().iter().find(|(k, _)| k.as_text() == Some("Records")).unwrap().1.clone();
    let data: Vec<Vec<u8>> = records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_map().unwrap().iter().find(|(k, _)| k.as_text() == Some("Data")).unwrap().1.as_bytes().unwrap().clone()
        })
        .collect();
    let mut want: Vec<Vec<u8>> = acked[shards[0]].iter().map(|(_, _, d)| d.clone()).collect();
    assert_eq!(data, want, "shard 0 in CBOR through {}", ids[outsider]);

    // SubscribeToShard on that node: the records come from a node that holds them, those
    // put before and those put while the subscription lives.
    use aws_sdk_kinesis::types::{ConsumerStatus, ShardIteratorType, StartingPosition, SubscribeToShardEventStream};
    let outside = &clients[outsider];
    let arn = outside.describe_stream_summary().stream_name("telemetry").send().await.unwrap();
    let arn = arn.stream_description_summary.unwrap().stream_arn;
    let registered = clients[0].register_stream_consumer().stream_arn(&arn).consumer_name("fan").send().await;
    let consumer = registered.unwrap().consumer.unwrap().consumer_arn;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = outside.describe_stream_consumer().consumer_arn(&consumer).send().await;
        if d.is_ok_and(|d| d.consumer_description.is_some_and(|c| c.consumer_status == ConsumerStatus::Active)) {
            break;
        }
        assert!(Instant::now() < deadline, "{} never sees the consumer ACTIVE", ids[outsider]);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut out = outside
        .subscribe_to_shard()
        .consumer_arn(&consumer)
        .shard_id(shards[0])
        .starting_position(StartingPosition::builder().r#type(ShardIteratorType::TrimHorizon).build().unwrap())
        .send()
        .await
        .unwrap();
    let (ok, failed) = put(&clients[(outsider + 1) % 4], "telemetry", 8, 100).await;
    assert_eq!(failed, 0, "the round put while subscribed");
    want.extend(ok.into_iter().filter(|(shard, ..)| shard == shards[0]).map(|(_, _, _, d)| d));
    let mut got: Vec<Vec<u8>> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got.len() < want.len() {
        let Ok(event) = tokio::time::timeout_at(deadline, out.event_stream.recv()).await else {
            panic!("{} of {} records by subscription", got.len(), want.len())
        };
        match event.unwrap() {
            Some(SubscribeToShardEventStream::SubscribeToShardEvent(e)) => {
                got.extend(e.records.into_iter().map(|r| r.data.into_inner()))
            }
            other => panic!("the subscription through {} ended: {other:?}", ids[outsider]),
        }
    }
    assert_eq!(got, want, "shard 0 by SubscribeToShard through {}", ids[outsider]);
    drop(nodes);
}

/// Puts `rounds` rounds of `n` records into "telemetry", through each of `clients` in
/// turn, every one acknowledged: what was acknowledged, by shard.
async fn put_through_every_node(clients: &[aws_sdk_kinesis::Client], ids: &[&str], rounds: usize, n: usize) -> Acked {
    let mut acked = Acked::default();
    for round in 0..rounds {
        let (ok, failed) = put(&clients[round % clients.len()], "telemetry", round, n).await;
        assert_eq!(failed, 0, "round {round} through {}", ids[round % clients.len()]);
        for (shard, seq, key, data) in ok {
            acked.entry(shard).or_default().push((seq, key, data));
        }
    }
    acked
}

/// Puts round `round + 1` (50 records) through one of `clients` in turn, adding what was
/// acknowledged to `acked`: how many records failed.
async fn put_round(clients: &[aws_sdk_kinesis::Client], round: &mut usize, acked: &mut Acked) -> i32 {
    *round += 1;
    let (ok, failures) = put(&clients[*round % clients.len()], "telemetry", *round, 50).await;
    for (shard, seq, key, data) in ok {
        acked.entry(shard).or_default().push((seq, key, data));
    }
    failures
}

/// Replicas per node in the catalog's placement of `stream`, and how many moves are under way.
fn replica_load(url: &str, stream: &str) -> (std::collections::BTreeMap<String, usize>, usize) {
    let placement = catalog(url).into_iter().find(|(n, _)| n == stream).unwrap().1;
    let mut load = std::collections::BTreeMap::new();
    for p in &placement {
        for r in p["replicas"].as_array().unwrap() {
            *load.entry(r.as_str().unwrap().to_owned()).or_insert(0) += 1;
        }
    }
    (load, placement.iter().filter(|p| !p["leaving"].is_null()).count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_move_to_a_node_that_joins_and_off_a_drained_node_under_ingest_and_nothing_is_lost() {
    let Some(ThreeNodes { dir, etcd: _etcd, url, ports: _, ids: _, mut nodes, mut all, mut clients }) =
        three_nodes("rebalancing")
    else {
        return;
    };
    let ids = ["n1", "n2", "n3", "n4"];
    let active = |r: &Result<(String, i64, Vec<String>), String>| r.as_ref().is_ok_and(|v| v.0 == "ACTIVE");
    clients[0].create_stream().stream_name("telemetry").shard_count(4).send().await.unwrap();
    for (i, k) in clients.iter().enumerate() {
        until(k, "telemetry", &format!("{}'s copy", ids[i]), active).await.unwrap();
    }
    let shards = ["shardId-000000000000", "shardId-000000000001", "shardId-000000000002", "shardId-000000000003"];
    let mut acked: Acked = Default::default();
    let mut failed = 0;
    let mut round = 0;
    for _ in 0..4 {
        failed += put_round(&clients, &mut round, &mut acked).await;
    }
    assert_eq!(replica_load(&url, "telemetry").0.values().copied().collect::<Vec<_>>(), [4, 4, 4]);

    // A fourth node joins: replicas move to it, one node's at a time, while records come.
    let port = free_port();
    nodes.push(Killed(node(dir.path(), &url, "n4", port)));
    all.push(("n4".into(), format!("127.0.0.1:{port}")));
    wait_for(&url, &all, "four nodes join");
    clients.push(crate::support::kinesis_client(([127, 0, 0, 1], port).into(), "AKIDANY", "any"));
    until(&clients[3], "telemetry", "n4's copy", active).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        failed += put_round(&clients, &mut round, &mut acked).await;
        let (load, moving) = replica_load(&url, "telemetry");
        if moving == 0 && load.values().all(|c| *c == 3) && load.len() == 4 {
            break;
        }
        assert!(Instant::now() < deadline, "not balanced after 60 s: {load:?}, {moving} moving");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A node that is not in the cluster (a misspelling) is refused, not "drained" at once.
    let typo = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["cluster", "drain", "nl", "--name", "test", "--etcd", &url])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&typo.stderr);
    assert!(!typo.status.success() && said.contains("no member"), "{:?}: {said}", typo.status);
    // n1 drained (`sluice cluster drain`, which waits): every replica leaves it.
    let mut drain = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["cluster", "drain", "n1", "--name", "test", "--etcd", &url])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        failed += put_round(&clients, &mut round, &mut acked).await;
        if let Some(status) = drain.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = drain.kill();
            panic!("n1 not drained after 60 s: {:?}", replica_load(&url, "telemetry"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut printed = String::new();
    std::io::Read::read_to_string(&mut drain.stdout.take().unwrap(), &mut printed).unwrap();
    assert!(status.success() && printed.contains("drained"), "{status:?}: {printed}");
    let (load, moving) = replica_load(&url, "telemetry");
    assert_eq!((load.get("n1"), moving), (None, 0), "{load:?}");
    assert!(load.values().all(|c| *c == 4), "{load:?}");
    for _ in 0..4 {
        failed += put_round(&clients, &mut round, &mut acked).await;
    }
    // Every node (n1 through its forwarded reads) returns every acknowledged record, in
    // order, the same on every node; nothing else unless a put failed.
    every_node_holds(&clients, &ids, &shards, &acked, failed == 0).await;
    drop(nodes);
}

/// Acknowledged records by shard id: sequence number, partition key, data.
type Acked = std::collections::BTreeMap<String, Vec<(String, String, Vec<u8>)>>;

/// (leader, epoch) of each shard of `stream`, as the catalog holds them.
fn leaders_of(url: &str, stream: &str) -> Vec<(String, u64)> {
    let shards = catalog(url).into_iter().find(|(n, _)| n == stream).unwrap().1;
    shards.iter().map(|p| (p["leader"].as_str().unwrap().to_owned(), p["epoch"].as_u64().unwrap())).collect()
}

/// A record as a node returns it: sequence number, arrival time ms, partition key, data.
type HeldRecord = (String, i64, String, Vec<u8>);

/// Every record of shard `shard` of `stream` on one node, from TRIM_HORIZON.
async fn shard_records(k: &aws_sdk_kinesis::Client, stream: &str, shard: &str) -> Vec<HeldRecord> {
    let mut iterator = Some(crate::support::trim_horizon(k, stream, shard).await);
    let mut out = Vec::new();
    while let Some(it) = iterator {
        let r = match k.get_records().shard_iterator(&it).send().await {
            Ok(r) => r,
            // Five reads per second per shard, as on Kinesis: wait and read again.
            Err(e)
                if aws_sdk_kinesis::error::ProvideErrorMetadata::code(&e)
                    == Some("ProvisionedThroughputExceededException") =>
            {
                tokio::time::sleep(Duration::from_millis(250)).await;
                iterator = Some(it);
                continue;
            }
            Err(e) => panic!("GetRecords: {e:?}"),
        };
        let got = r.records();
        out.extend(got.iter().map(|x| {
            let ts = x.approximate_arrival_timestamp().map_or(0, |t| t.to_millis().unwrap());
            (
                x.sequence_number().to_owned(),
                ts,
                x.partition_key().unwrap_or_default().to_owned(),
                x.data().as_ref().to_vec(),
            )
        }));
        if got.is_empty() && r.millis_behind_latest() == Some(0) {
            break;
        }
        iterator = r.next_shard_iterator;
    }
    out
}

/// Puts `n` records through `k` in one PutRecords: (shard id, sequence number, key, data)
/// of those acknowledged, and how many failed.
async fn put(
    k: &aws_sdk_kinesis::Client,
    stream: &str,
    round: usize,
    n: usize,
) -> (Vec<(String, String, String, Vec<u8>)>, i32) {
    use aws_sdk_kinesis::types::PutRecordsRequestEntry;
    let entries: Vec<(String, Vec<u8>)> =
        (0..n).map(|i| (format!("key-{i}"), format!("round {round} record {i}").into_bytes())).collect();
    let request = entries.iter().map(|(key, data)| {
        PutRecordsRequestEntry::builder()
            .partition_key(key)
            .data(aws_sdk_kinesis::primitives::Blob::new(data.clone()))
            .build()
            .unwrap()
    });
    let out = k.put_records().stream_name(stream).set_records(Some(request.collect())).send().await.unwrap();
    let acked = out
        .records()
        .iter()
        .zip(entries)
        .filter_map(|(r, (key, data))| Some((r.shard_id()?.to_owned(), r.sequence_number()?.to_owned(), key, data)))
        .collect();
    (acked, out.failed_record_count().unwrap_or(0))
}

/// Checks that every node returns every acknowledged record of every shard, in order, with
/// its key and data, and that all nodes return the same records with the same arrival
/// times (no sequence number names two records). `exactly`: nothing but the acknowledged
/// records (otherwise records a leader wrote without a quorum may sit between them). Waits
/// up to 30 s per node for replicas to catch up (a bound, not a timing assertion).
async fn every_node_holds(
    clients: &[aws_sdk_kinesis::Client],
    ids: &[&str],
    shards: &[&str],
    acked: &Acked,
    exactly: bool,
) {
    let none = Vec::new();
    for shard in shards {
        let want = acked.get(*shard).unwrap_or(&none);
        let mut first: Option<Vec<HeldRecord>> = None;
        for (i, k) in clients.iter().enumerate() {
            let deadline = Instant::now() + Duration::from_secs(30);
            let held = loop {
                let held = shard_records(k, "telemetry", shard).await;
                let complete = want.last().is_none_or(|(last, _, _)| held.iter().any(|h| &h.0 == last));
                let same = first.as_ref().is_none_or(|f| f.len() == held.len());
                if (complete && same) || Instant::now() > deadline {
                    break held;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            if exactly {
                let records: Vec<(String, String, Vec<u8>)> =
                    held.iter().map(|(s, _, k, d)| (s.clone(), k.clone(), d.clone())).collect();
                assert_eq!(&records, want, "{shard} on {}", ids[i]);
            }
            let mut at = 0;
            for (seq, key, data) in want {
                let found = held[at..].iter().position(|h| &h.0 == seq).map(|p| p + at);
                let Some(p) = found else { panic!("{shard} on {}: acknowledged {seq} missing", ids[i]) };
                assert_eq!((&held[p].2, &held[p].3), (key, data), "{shard} on {}: {seq}", ids[i]);
                at = p + 1;
            }
            match &first {
                None => first = Some(held),
                Some(f) => assert_eq!(&held, f, "{shard}: {} and n1 differ", ids[i]),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_put_on_any_node_are_held_by_every_replica_outlive_their_leaders_and_need_a_quorum() {
    let Some(ThreeNodes { dir, etcd: _etcd, url, ports, ids, mut nodes, all, clients }) = three_nodes("replication")
    else {
        return;
    };
    let active = |r: &Result<(String, i64, Vec<String>), String>| r.as_ref().is_ok_and(|v| v.0 == "ACTIVE");
    clients[0].create_stream().stream_name("telemetry").shard_count(3).send().await.unwrap();
    for (i, k) in clients.iter().enumerate() {
        until(k, "telemetry", &format!("{}'s copy", ids[i]), active).await.unwrap();
    }
    let shards = ["shardId-000000000000", "shardId-000000000001", "shardId-000000000002"];

    // Puts through every node: each shard's records go to its leader (forwarded by the
    // others) and are acknowledged once two of its three replicas hold them.
    let mut acked = put_through_every_node(&clients, &ids, 6, 120).await;
    assert_eq!(acked.len(), 3, "every shard took records");
    // Every node holds exactly the acknowledged records, in sequence order, with the same
    // arrival times.
    every_node_holds(&clients, &ids, &shards, &acked, true).await;

    // Any node takes an iterator another issued (one signing key for the cluster), and
    // reads the same records from its copy.
    let iterator = clients[0]
        .get_shard_iterator()
        .stream_name("telemetry")
        .shard_id(shards[1])
        .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();
    let elsewhere = clients[2].get_records().shard_iterator(iterator).limit(50).send().await.unwrap();
    let read: Vec<String> = elsewhere.records().iter().map(|r| r.sequence_number().to_owned()).collect();
    let want: Vec<String> = acked[shards[1]].iter().take(50).map(|(s, _, _)| s.clone()).collect();
    assert_eq!(read, want, "n1's iterator read on n3");

    // The nodes' own requests: refused without the cluster's token, and bodies that are
    // not batches refused whole, with the token too.
    let raw = |path: &str, token: Option<&str>, body: &[u8]| {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(("127.0.0.1", ports[0])).unwrap();
        let token = token.map_or_else(String::new, |t| format!("x-sluice-cluster-token: {t}\r\n"));
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\n{token}content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        c.write_all(head.as_bytes()).unwrap();
        c.write_all(body).unwrap();
        let mut answer = String::new();
        c.read_to_string(&mut answer).unwrap();
        answer.split(' ').nth(1).unwrap_or("none").parse::<u16>().unwrap_or(0)
    };
    let token = {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let body = format!("{{\"key\": \"{}\"}}", b64.encode("/sluice/test/token"));
        let out = Command::new("curl").args(["-s", "-X", "POST", &format!("{url}/v3/kv/range"), "-d", &body]).output();
        out.ok()
            .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
            .and_then(|v| v["kvs"][0]["value"].as_str().map(|t| String::from_utf8(b64.decode(t).unwrap()).unwrap()))
    };
    for path in ["/_sluice/cluster/replicate", "/_sluice/cluster/append"] {
        assert_eq!(raw(path, None, b"x"), 403, "{path} without a token");
        assert_eq!(raw(path, Some("not-the-token"), b"x"), 403, "{path} with a wrong token");
        if let Some(t) = &token {
            assert_eq!(raw(path, Some(t), b"\x05\x00abc"), 400, "{path}: a truncated batch");
            let mut huge = vec![9, 0];
            huge.extend_from_slice(b"telemetry");
            huge.extend_from_slice(&[0; 28]);
            huge.extend_from_slice(&u32::MAX.to_le_bytes());
            assert_eq!(raw(path, Some(t), &huge), 400, "{path}: a count past the limit");
        }
    }
    assert!(token.is_some() || std::env::var_os("CI").is_none(), "the cluster's token could not be read (curl?)");

    // Failover: the leader of a shard SIGKILLed, a replica with the longest log takes over
    // at epoch 2 once the old leader's lease is gone, and every shard takes records again.
    let leaders = |url: &str| leaders_of(url, "telemetry");
    let failover = |url: String, shard: usize, old: &'static str, epoch: u64| async move {
        let t0 = Instant::now();
        loop {
            let now = leaders(&url);
            if now[shard].0 != old && now[shard].1 == epoch {
                eprintln!(
                    "failover of {} from {old} to {} (epoch {epoch}): {:?}",
                    shards[shard],
                    now[shard].0,
                    t0.elapsed()
                );
                return now[shard].0.clone();
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "no new leader for {}: {now:?}", shards[shard]);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    // Puts through `via` until one round is acknowledged whole (nodes learn a new leader
    // within a catalog pass; records sent to a leader that is gone fail, and are retried
    // here as a client would).
    async fn settle(k: &aws_sdk_kinesis::Client, acked: &mut Acked, round: &mut usize) {
        for _ in 0..40 {
            *round += 1;
            let (ok, failed) = put(k, "telemetry", *round, 90).await;
            for (shard, seq, key, data) in ok {
                acked.entry(shard).or_default().push((seq, key, data));
            }
            if failed == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("no round acknowledged whole");
    }
    let mut round = 10;
    let before = leaders(&url);
    let of_n3 = before.iter().position(|(l, _)| l == "n3").expect("n3 leads a shard");
    nodes[2].0.kill().unwrap();
    nodes[2].0.wait().unwrap();
    failover(url.clone(), of_n3, "n3", 2).await;
    settle(&clients[0], &mut acked, &mut round).await;
    settle(&clients[1], &mut acked, &mut round).await;
    // n3 back: a replica of the shard it led, catching up under epoch 2.
    nodes[2] = Killed(node(dir.path(), &url, "n3", ports[2]));
    wait_for(&url, &all, "n3 is back");

    // A leader paused past its lease (SIGSTOP): replaced; woken, it cannot acknowledge
    // anything its replicas have not, and what it wrote alone is cut when it follows.
    let now = leaders(&url);
    let of_n1 = now.iter().position(|(l, _)| l == "n1").expect("n1 leads a shard");
    let next_epoch = now[of_n1].1 + 1;
    let n1_pid = nodes[0].0.id() as i32;
    // SAFETY: plain kill(2) of our own child.
    unsafe { libc::kill(n1_pid, libc::SIGSTOP) };
    failover(url.clone(), of_n1, "n1", next_epoch).await;
    settle(&clients[1], &mut acked, &mut round).await;
    // SAFETY: as above.
    unsafe { libc::kill(n1_pid, libc::SIGCONT) };
    // At once, before n1 has read the catalog again: whatever it acknowledges must hold.
    for _ in 0..3 {
        round += 1;
        let (ok, _) = put(&clients[0], "telemetry", round, 90).await;
        for (shard, seq, key, data) in ok {
            acked.entry(shard).or_default().push((seq, key, data));
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for k in &clients {
        settle(k, &mut acked, &mut round).await;
    }

    // Two of three down: no majority to elect, no quorum to acknowledge. The leader of the
    // first shard stays up: the records it appended without a quorum are not served, even
    // by it (they may be cut by the next leader).
    let up = ids.iter().position(|id| *id == leaders(&url)[0].0).unwrap();
    for (i, n) in nodes.iter_mut().enumerate().filter(|(i, _)| *i != up) {
        n.0.kill().unwrap();
        n.0.wait().unwrap();
        eprintln!("{} down", ids[i]);
    }
    round += 1;
    let (ok, failed) = put(&clients[up], "telemetry", round, 60).await;
    assert!(ok.is_empty() && failed == 60, "acknowledged without a quorum: {ok:?}");
    let unacknowledged = format!("round {round} record ");
    for shard in shards {
        let held = shard_records(&clients[up], "telemetry", shard).await;
        let served: Vec<&HeldRecord> =
            held.iter().filter(|h| String::from_utf8_lossy(&h.3).starts_with(&unacknowledged)).collect();
        assert!(served.is_empty(), "{} served records no quorum holds: {served:?}", ids[up]);
    }
    // Its metrics count the batches a quorum acknowledged and the puts that failed.
    let metrics = {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(("127.0.0.1", ports[up])).unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").unwrap();
        let mut text = String::new();
        c.read_to_string(&mut text).unwrap();
        text
    };
    let count = |series: &str| -> u64 {
        let line = metrics.lines().find(|l| l.starts_with(series)).unwrap_or_else(|| panic!("{series} in {metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(count("sluice_cluster_replicated_batches_total{outcome=\"quorum\"}") > 0);
    // It leads the first shard, whose last records neither replica holds.
    let lags: Vec<u64> = ids
        .iter()
        .filter(|id| **id != ids[up])
        .map(|id| {
            count(&format!(
                "sluice_cluster_replica_lag_records{{stream=\"telemetry\",shard=\"{}\",replica=\"{id}\"}}",
                shards[0]
            ))
        })
        .collect();
    assert!(lags.iter().all(|l| *l > 0), "replication lag of the first shard's replicas: {lags:?}");
    // The last put failed on n1 as a leader without a quorum or as a forward to a dead one.
    assert!(
        count("sluice_cluster_replicated_batches_total{outcome=\"no_quorum\"}")
            + count("sluice_cluster_forwarded_batches_total{outcome=\"failed\"}")
            > 0
    );

    // Both back, and no further put: every node holds every acknowledged record, in order,
    // and no sequence number names two records on two nodes.
    for i in (0..3).filter(|i| *i != up) {
        nodes[i] = Killed(node(dir.path(), &url, ids[i], ports[i]));
    }
    wait_for(&url, &all, "the two are back");
    // Their memberships may be the killed processes' still (a lease outlives its holder).
    for i in (0..3).filter(|i| *i != up) {
        until(&clients[i], "telemetry", &format!("{} serves again", ids[i]), active).await.unwrap();
    }
    every_node_holds(&clients, &ids, &shards, &acked, false).await;

    // A leader that crashed and lost records it had not synced (its log's tail cut here
    // while it is down; its replicas hold them), restarted at once, within its lease: it
    // gives up its leadership, a replica with the whole log leads at the next epoch, and
    // the restarted node's next records never take the lost ones' sequence numbers.
    let before = leaders(&url);
    let li = ids.iter().position(|id| *id == before[0].0).unwrap();
    nodes[li].0.kill().unwrap();
    nodes[li].0.wait().unwrap();
    let first_shard_dir = |i: usize| {
        let streams_dir = dir.path().join(format!("{}-{}", ids[i], ports[i])).join("streams");
        std::fs::read_dir(&streams_dir)
            .unwrap()
            .map(|e| e.unwrap().path().join(shards[0]))
            .find(|p| p.is_dir())
            .expect("the first shard's directory")
    };
    let shard_dir = first_shard_dir(li);
    {
        let log = sluice_engine::ShardLog::open(&shard_dir, sluice_engine::ShardLogOptions::default()).unwrap();
        let next = log.bounds().next_sequence_number;
        assert!(next > 5, "the first shard holds records");
        log.truncate(next - 5).unwrap();
    }
    nodes[li] = Killed(node(dir.path(), &url, ids[li], ports[li]));
    until(&clients[li], "telemetry", &format!("{} serves again", ids[li]), active).await.unwrap();
    let t0 = Instant::now();
    while leaders(&url)[0].1 <= before[0].1 {
        assert!(t0.elapsed() < Duration::from_secs(30), "no new epoch after {}'s restart", ids[li]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for k in &clients {
        settle(k, &mut acked, &mut round).await;
    }
    every_node_holds(&clients, &ids, &shards, &acked, false).await;

    // A machine that restarted lost the records its node had acknowledged but not synced:
    // that node takes part in no election until a leader has caught it up. The first
    // shard's next records are acknowledged by its leader L and one replica X while the
    // other, Y, is paused; L is killed and its copy loses them; X is paused and Y woken;
    // L starts again on a "rebooted" machine. L and Y are a majority, but both lack the
    // records: no leader until X is back, and then X leads.
    let before = leaders(&url);
    let li = ids.iter().position(|id| *id == before[0].0).unwrap();
    let (xi, yi) = ((li + 1) % 3, (li + 2) % 3);
    let pid = |i: usize, nodes: &[Killed]| nodes[i].0.id() as i32;
    // SAFETY: plain kill(2) of our own children, here and below.
    unsafe { libc::kill(pid(yi, &nodes), libc::SIGSTOP) };
    round += 1;
    let (ok, _) = put(&clients[li], "telemetry", round, 60).await;
    let lost = ok.iter().filter(|(shard, ..)| shard == shards[0]).count() as u64;
    assert!(lost > 0, "the first shard took records with {} paused", ids[yi]);
    for (shard, seq, key, data) in ok {
        acked.entry(shard).or_default().push((seq, key, data));
    }
    nodes[li].0.kill().unwrap();
    nodes[li].0.wait().unwrap();
    {
        let log =
            sluice_engine::ShardLog::open(first_shard_dir(li), sluice_engine::ShardLogOptions::default()).unwrap();
        log.truncate(log.bounds().next_sequence_number - lost).unwrap();
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid(xi, &nodes), libc::SIGSTOP) };
    // SAFETY: as above.
    unsafe { libc::kill(pid(yi, &nodes), libc::SIGCONT) };
    nodes[li] = Killed(node_booted(dir.path(), &url, ids[li], ports[li], Some("a-later-boot")));
    until(&clients[li], "telemetry", &format!("{} serves again", ids[li]), active).await.unwrap();
    // Several catalog passes and leases: a bound for a negative check.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let during = leaders(&url);
    assert!(
        during[0].0.is_empty() && during[0].1 == before[0].1,
        "a leader was elected by replicas lacking acknowledged records: {:?}",
        during[0]
    );
    // SAFETY: as above.
    unsafe { libc::kill(pid(xi, &nodes), libc::SIGCONT) };
    let t0 = Instant::now();
    while leaders(&url)[0].1 <= before[0].1 {
        assert!(t0.elapsed() < Duration::from_secs(30), "no leader once {} is back", ids[xi]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(leaders(&url)[0].0, ids[xi], "the replica holding every acknowledged record leads");
    wait_for(&url, &all, "all three are members again");
    for k in &clients {
        settle(k, &mut acked, &mut round).await;
    }
    every_node_holds(&clients, &ids, &shards, &acked, false).await;
    drop(nodes);
}

#[test]
fn cluster_settings_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    for (cluster, want) in [
        ("etcd_endpoints = [\"http://127.0.0.1:2379\"]\nnode_id = \"../x\"", "node_id"),
        ("etcd_endpoints = []\nnode_id = \"n1\"", "etcd_endpoints"),
        ("etcd_endpoints = [\"127.0.0.1:2379\"]\nnode_id = \"n1\"", "http://"),
        ("etcd_endpoints = [\"http://127.0.0.1:2379\"]\nnode_id = \"n1\"\nlease_ttl_s = 0", "lease_ttl_s"),
        ("etcd_endpoints = [\"http://127.0.0.1:2379\"]\nnode_id = \"n1\"\nname = \"a/b\"", "name"),
        (
            "etcd_endpoints = [\"http://127.0.0.1:2379\"]\nnode_id = \"n1\"\nreplication_factor = 0",
            "replication_factor",
        ),
    ] {
        let file = dir.path().join("c.toml");
        std::fs::write(&file, format!("auth = \"none\"\n[cluster]\n{cluster}\n")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_sluice")).arg("check-config").arg(&file).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(want), "{cluster}: {stderr}");
    }
    // SLUICE_NODE_ID stands in for the file's node id (a StatefulSet's pods share one file).
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "auth = \"none\"\n[cluster]\netcd_endpoints = [\"http://127.0.0.1:2379\"]\nnode_id = \"n1\"\n",
    )
    .unwrap();
    let check = |id: &str| {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("check-config")
            .arg(&file)
            .env("SLUICE_NODE_ID", id)
            .output()
            .unwrap()
    };
    assert!(check("sluice-2").status.success());
    let out = check("../sluice-2");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("node_id"));
}
