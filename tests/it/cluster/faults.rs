//! Fault rounds against a three-node cluster under ingest (issue 18): producers put through
//! every node while, round after round, a shard's leader is SIGKILLed (20 rounds; half of
//! them with a follower paused just before, so the replicas left differ), a leader
//! is paused past its lease (SIGSTOP), or etcd is restarted, in an order and at moments drawn
//! from a seed (`SLUICE_FAULT_SEED` replays one; the seed is printed). After each round the
//! history checker reads every shard from every node and holds them to what the producers
//! were told: every acknowledged record readable exactly once, in order, with its data, the
//! same on every node; the first violation is reported with the seed and the round.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::Rng;

use super::{leaders_of, node, shard_records, three_nodes, until, wait_for, HeldRecord, Killed, ThreeNodes};

/// Rounds that SIGKILL a shard's leader, as the issue asks.
const KILL_ROUNDS: usize = 20;

/// Records per PutRecords of a producer.
const PUT_RECORDS: usize = 10;

/// A producer's pause between puts: the checker reads every record from every node after
/// each round, so the history stays a few thousand records per round.
const PUT_PAUSE: Duration = Duration::from_millis(40);

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// SIGKILL the leader of shard `n`, then start it again once a new leader leads.
    KillLeader(usize),
    /// SIGSTOP the leader of shard `n` until a new leader leads, then SIGCONT.
    PauseLeader(usize),
    /// Kill etcd and start it again 3 s later (longer than the 2 s leases).
    RestartEtcd,
}

/// What the producers were told: per shard id, each acknowledged record's sequence number
/// and data; and how many records were refused or unanswered (they may or may not exist).
#[derive(Debug, Default)]
struct History {
    acked: BTreeMap<String, Vec<(String, Vec<u8>)>>,
    unknown: usize,
}

/// Sequence numbers are decimal strings: shorter is smaller.
fn seq_key(s: &str) -> (usize, &str) {
    (s.len(), s)
}

/// The first way `held` (per node, per shard, as read) breaks `history`, if any: an
/// acknowledged record missing or with other data on a node, a record twice, sequence
/// numbers out of order, or two nodes holding different records.
fn violation(history: &History, ids: &[&str], held: &[BTreeMap<String, Vec<HeldRecord>>]) -> Option<String> {
    for (n, node) in held.iter().enumerate() {
        for (shard, records) in node {
            if let Some(w) = records.windows(2).find(|w| seq_key(&w[0].0) >= seq_key(&w[1].0)) {
                return Some(format!("{shard} on {}: {} after {} (out of order)", ids[n], w[1].0, w[0].0));
            }
            let mut seen = std::collections::HashSet::new();
            if let Some(r) = records.iter().find(|r| !seen.insert(&r.3)) {
                return Some(format!(
                    "{shard} on {}: {:?} held twice (again at {})",
                    ids[n],
                    String::from_utf8_lossy(&r.3),
                    r.0
                ));
            }
        }
        for (shard, acked) in &history.acked {
            let records = node.get(shard).map_or(&[][..], Vec::as_slice);
            let by_seq: BTreeMap<&str, &Vec<u8>> = records.iter().map(|r| (r.0.as_str(), &r.3)).collect();
            for (seq, data) in acked {
                match by_seq.get(seq.as_str()) {
                    None => return Some(format!("{shard} on {}: acknowledged {seq} missing", ids[n])),
                    Some(d) if *d != data => {
                        return Some(format!(
                            "{shard} on {}: {seq} holds {:?}, acknowledged as {:?}",
                            ids[n],
                            String::from_utf8_lossy(d),
                            String::from_utf8_lossy(data)
                        ))
                    }
                    Some(_) => {}
                }
            }
        }
    }
    let first = &held[0];
    for (n, node) in held.iter().enumerate().skip(1) {
        for (shard, records) in node {
            let same = first
                .get(shard)
                .is_some_and(|f| f.iter().map(|r| (&r.0, &r.3)).eq(records.iter().map(|r| (&r.0, &r.3))));
            if !same {
                return Some(format!("{shard}: {} and {} hold different records", ids[0], ids[n]));
            }
        }
    }
    None
}

/// Puts batches through `k` until `stop`, each record's data unique to its round, producer
/// and attempt.
async fn produce(
    k: aws_sdk_kinesis::Client,
    (round, producer): (usize, usize),
    history: Arc<Mutex<History>>,
    stop: Arc<AtomicBool>,
) {
    use aws_sdk_kinesis::types::PutRecordsRequestEntry;
    let mut attempt = 0u64;
    while !stop.load(Relaxed) {
        attempt += 1;
        let data: Vec<Vec<u8>> =
            (0..PUT_RECORDS).map(|i| format!("n{round} p{producer} a{attempt} r{i}").into_bytes()).collect();
        let entries = data.iter().enumerate().map(|(i, d)| {
            PutRecordsRequestEntry::builder()
                .partition_key(format!("p{producer}-{i}"))
                .data(aws_sdk_kinesis::primitives::Blob::new(d.clone()))
                .build()
                .unwrap()
        });
        match k.put_records().stream_name("telemetry").set_records(Some(entries.collect())).send().await {
            Ok(out) => {
                let mut h = history.lock().unwrap();
                for (r, d) in out.records().iter().zip(data) {
                    match (r.shard_id(), r.sequence_number()) {
                        (Some(shard), Some(seq)) => {
                            h.acked.entry(shard.to_owned()).or_default().push((seq.to_owned(), d))
                        }
                        _ => h.unknown += 1,
                    }
                }
            }
            // The node is down: a client backs off.
            Err(_) => {
                history.lock().unwrap().unknown += PUT_RECORDS;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        tokio::time::sleep(PUT_PAUSE).await;
    }
}

/// Stops the producers and returns what they were told.
async fn stop_producers(
    stop: &AtomicBool,
    producers: Vec<tokio::task::JoinHandle<()>>,
    history: &Mutex<History>,
) -> History {
    stop.store(true, Relaxed);
    for p in producers {
        p.await.unwrap();
    }
    let h = history.lock().unwrap();
    History { acked: h.acked.clone(), unknown: h.unknown }
}

/// Reads every shard from every node until the history checker passes, or 30 s have gone
/// by (replicas catching up; a bound, not a timing assertion); the last violation then.
async fn check(clients: &[aws_sdk_kinesis::Client], ids: &[&str], history: &History) -> Option<String> {
    let shards = ["shardId-000000000000", "shardId-000000000001", "shardId-000000000002"];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut held = Vec::new();
        for k in clients {
            let mut node = BTreeMap::new();
            for shard in shards {
                node.insert(shard.to_owned(), shard_records(k, "telemetry", shard).await);
            }
            held.push(node);
        }
        let found = violation(history, ids, &held);
        if found.is_none() || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_seeded_rounds_of_leader_kills_pauses_and_etcd_restarts() {
    let Some(ThreeNodes { dir, mut etcd, url, ports, ids, mut nodes, all, clients }) = three_nodes("fault rounds")
    else {
        return;
    };
    let seed = std::env::var("SLUICE_FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("fault rounds: seed {seed} (SLUICE_FAULT_SEED={seed} replays them)");
    let mut rng = Rng(seed);
    let mut faults: Vec<Fault> = (0..KILL_ROUNDS).map(|_| Fault::KillLeader(rng.range(0, 2) as usize)).collect();
    for f in [Fault::PauseLeader(rng.range(0, 2) as usize), Fault::RestartEtcd] {
        let at = rng.range(0, faults.len() as u64) as usize;
        faults.insert(at, f);
    }

    let active = |r: &Result<(String, i64, Vec<String>), String>| r.as_ref().is_ok_and(|v| v.0 == "ACTIVE");
    clients[0].create_stream().stream_name("telemetry").shard_count(3).send().await.unwrap();
    for (i, k) in clients.iter().enumerate() {
        until(k, "telemetry", &format!("{}'s copy", ids[i]), active).await.unwrap();
    }
    let history = Arc::new(Mutex::new(History::default()));
    for (round, fault) in faults.iter().enumerate() {
        let stop = Arc::new(AtomicBool::new(false));
        let producers: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(p, k)| tokio::spawn(produce(k.clone(), (round, p), history.clone(), stop.clone())))
            .collect();
        // Mid-ingest.
        tokio::time::sleep(Duration::from_millis(200 + rng.range(0, 599))).await;
        // Every shard led (a node restarted in the last round may have given up its
        // leaderships, and their election may still be under way).
        let t0 = Instant::now();
        let before = loop {
            let now = leaders_of(&url, "telemetry");
            if now.iter().all(|(l, _)| !l.is_empty()) {
                break now;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "seed {seed}, round {round}: shards without a leader: {now:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let new_leader = |shard: usize| {
            let (url, old) = (url.clone(), before[shard].clone());
            async move {
                let t0 = Instant::now();
                loop {
                    let now = leaders_of(&url, "telemetry");
                    if now[shard].1 > old.1 && !now[shard].0.is_empty() {
                        return (now[shard].0.clone(), t0.elapsed());
                    }
                    assert!(t0.elapsed() < Duration::from_secs(30), "seed {seed}, round {round}: no new leader");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        match *fault {
            Fault::KillLeader(shard) => {
                let i = ids.iter().position(|id| *id == before[shard].0).unwrap();
                // Half the time a follower is paused first, so that the replicas left
                // differ and the election must pick the one with every acknowledged record.
                let lagging = (rng.range(0, 1) == 0).then(|| (i + 1 + rng.range(0, 1) as usize) % 3);
                if let Some(f) = lagging {
                    // SAFETY: plain kill(2) of our own child.
                    unsafe { libc::kill(nodes[f].0.id() as i32, libc::SIGSTOP) };
                    tokio::time::sleep(Duration::from_millis(300 + rng.range(0, 699))).await;
                }
                nodes[i].0.kill().unwrap();
                nodes[i].0.wait().unwrap();
                if let Some(f) = lagging {
                    // SAFETY: as above.
                    unsafe { libc::kill(nodes[f].0.id() as i32, libc::SIGCONT) };
                }
                let (leader, took) = new_leader(shard).await;
                let paused = lagging.map_or(String::new(), |f| format!(" ({} paused before)", ids[f]));
                eprintln!("round {round}: {} SIGKILLed{paused}; shard {shard} led by {leader} after {took:?}", ids[i]);
                nodes[i] = Killed(node(dir.path(), &url, ids[i], ports[i]));
                until(&clients[i], "telemetry", &format!("{} serves again", ids[i]), active).await.unwrap();
            }
            Fault::PauseLeader(shard) => {
                let i = ids.iter().position(|id| *id == before[shard].0).unwrap();
                let pid = nodes[i].0.id() as i32;
                // SAFETY: plain kill(2) of our own child.
                unsafe { libc::kill(pid, libc::SIGSTOP) };
                let (leader, took) = new_leader(shard).await;
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGCONT) };
                eprintln!("round {round}: {} SIGSTOPped; shard {shard} led by {leader} after {took:?}", ids[i]);
            }
            Fault::RestartEtcd => {
                etcd.kill();
                tokio::time::sleep(Duration::from_secs(3)).await;
                etcd.restart();
                eprintln!("round {round}: etcd restarted");
            }
        }
        wait_for(&url, &all, "every node a member again");
        // Ingest on after the fault, then the producers stop and the checker reads.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let snapshot = stop_producers(&stop, producers, &history).await;
        if let Some(v) = check(&clients, &ids, &snapshot).await {
            panic!("seed {seed}, round {round} ({fault:?}): {v}");
        }
        let acked: usize = snapshot.acked.values().map(Vec::len).sum();
        eprintln!(
            "round {round} ({fault:?}): {acked} records acknowledged so far, {} refused or unanswered; history holds",
            snapshot.unknown
        );
    }
    let h = history.lock().unwrap();
    assert!(h.acked.len() == 3, "every shard took records: {:?}", h.acked.keys());
    drop(nodes);
}

/// Runs `ip` with `args`; whether it succeeded.
fn ip(args: &[&str]) -> bool {
    let run = std::process::Command::new("ip").args(args).stderr(std::process::Stdio::null()).status();
    run.is_ok_and(|s| s.success())
}

/// A network namespace for one node, joined to this one by two veth pairs: the cluster's
/// (to etcd and the other nodes, which listen on `10.213.0.1`, an address added to this
/// side's loopback; the node is `10.213.1.2` on it), which the test takes down and up
/// again, and its clients' (the node is `10.213.2.2` on it), which stays up: cut off from
/// the cluster, the node still takes puts.
struct Partition {
    netns: String,
    host_link: String,
    client_link: String,
    shared_added: bool,
}

impl Partition {
    const SHARED: &'static str = "10.213.0.1";
    const CUT: &'static str = "10.213.1.2";
    const CLIENTS: &'static str = "10.213.2.2";
    /// The host's end of the clients' link.
    const CLIENTS_HOST: &'static str = "10.213.2.1";

    /// Errors: why namespaces cannot be made here (not root, no `ip`).
    fn new() -> Result<Self, String> {
        let tag = std::process::id() % 100_000;
        let mut p = Self {
            netns: format!("sluice{tag}"),
            host_link: format!("slh{tag}"),
            client_link: format!("slc{tag}"),
            shared_added: false,
        };
        let (ns_link, ns_client_link) = (format!("sln{tag}"), format!("slm{tag}"));
        let shared = format!("{}/32", Self::SHARED);
        // Left by a run that was killed before it could clean up.
        ip(&["addr", "del", &shared, "dev", "lo"]);
        if !ip(&["addr", "add", &shared, "dev", "lo"]) {
            return Err(format!("`ip addr add {shared} dev lo` failed (root and iproute2 are needed)"));
        }
        p.shared_added = true;
        let steps: [&[&str]; 15] = [
            &["netns", "add", &p.netns],
            &["link", "add", &p.host_link, "type", "veth", "peer", "name", &ns_link],
            &["link", "set", &ns_link, "netns", &p.netns],
            &["addr", "add", "10.213.1.1/30", "dev", &p.host_link],
            &["link", "set", &p.host_link, "up"],
            &["-n", &p.netns, "addr", "add", &format!("{}/30", Self::CUT), "dev", &ns_link],
            &["-n", &p.netns, "link", "set", &ns_link, "up"],
            &["-n", &p.netns, "link", "set", "lo", "up"],
            &["-n", &p.netns, "route", "add", &shared, "via", "10.213.1.1"],
            &["link", "add", &p.client_link, "type", "veth", "peer", "name", &ns_client_link],
            &["link", "set", &ns_client_link, "netns", &p.netns],
            &["addr", "add", "10.213.2.1/30", "dev", &p.client_link],
            &["link", "set", &p.client_link, "up"],
            &["-n", &p.netns, "addr", "add", &format!("{}/30", Self::CLIENTS), "dev", &ns_client_link],
            &["-n", &p.netns, "link", "set", &ns_client_link, "up"],
        ];
        for step in steps {
            if !ip(step) {
                return Err(format!("`ip {}` failed (root and iproute2 are needed)", step.join(" ")));
            }
        }
        Ok(p)
    }

    fn cut(&self, off: bool) {
        assert!(ip(&["link", "set", &self.host_link, if off { "down" } else { "up" }]));
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        ip(&["link", "del", &self.host_link]);
        ip(&["link", "del", &self.client_link]);
        ip(&["netns", "del", &self.netns]);
        if self.shared_added {
            ip(&["addr", "del", &format!("{}/32", Self::SHARED), "dev", "lo"]);
        }
    }
}

/// `sluice serve` as node `id` of cluster `test` on `bind`, reached by the other nodes at
/// `advertise`, signing with a test key pair (a non-loopback address refuses
/// `auth = "none"`), inside network namespace `netns` if given.
fn node_at(
    dir: &std::path::Path,
    etcd: &str,
    id: &str,
    (bind, advertise): (&str, &str),
    netns: Option<&str>,
) -> std::process::Child {
    let config = dir.join(format!("{id}.toml"));
    std::fs::write(
        &config,
        format!(
            "bind = \"{bind}\"\ndata_dir = \"{data}\"\n[[access_keys]]\naccess_key_id = \"{KEY}\"\nsecret_access_key = \"{SECRET}\"\n[cluster]\netcd_endpoints = [\"{etcd}\"]\nnode_id = \"{id}\"\nadvertise_address = \"{advertise}\"\nname = \"test\"\nlease_ttl_s = 2\n",
            data = dir.join(id).display(),
        ),
    )
    .unwrap();
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(format!("{id}.log"))).unwrap();
    let bin = env!("CARGO_BIN_EXE_sluice");
    let mut command = match netns {
        Some(ns) => {
            let mut c = std::process::Command::new("ip");
            c.args(["netns", "exec", ns, bin]);
            c
        }
        None => std::process::Command::new(bin),
    };
    command.args(["serve", "--config"]).arg(&config).env("RUST_LOG", "warn");
    command.stdout(std::process::Stdio::null()).stderr(log).spawn().unwrap()
}

const KEY: &str = "AKIDPARTITIONTEST";
const SECRET: &str = "a-secret-for-the-partition-test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_the_others_acknowledges_nothing_alone_and_loses_nothing() {
    let Some(etcd_binary) = super::etcd_binary() else {
        eprintln!("partition test skipped: no etcd binary");
        return;
    };
    // Cut off from etcd too: its lease runs out. From the other nodes only: it stays a
    // member, and gives its leadership up once no quorum of its replicas answers.
    for reaches_etcd in [false, true] {
        let partition = match Partition::new() {
            Ok(p) => p,
            Err(reason) => {
                eprintln!("partition test skipped: {reason}");
                return;
            }
        };
        cut_off(&etcd_binary, &partition, reaches_etcd).await;
    }
}

/// Three nodes, n3 in its own network namespace behind `partition`, cut off mid-ingest from
/// the other nodes (and from etcd unless `reaches_etcd`), then back; the history checker
/// then holds every node to what the producers were told.
async fn cut_off(etcd_binary: &std::path::Path, partition: &Partition, reaches_etcd: bool) {
    let dir = tempfile::tempdir().unwrap();
    let shared = Partition::SHARED;
    let (client_port, peer_port) = (super::free_port(), super::free_port());
    let url = format!("http://{shared}:{client_port}");
    // n3 reaches etcd over its clients' link, which stays up, when `reaches_etcd`.
    let url_for_n3 = format!("http://{}:{client_port}", Partition::CLIENTS_HOST);
    let listen = if reaches_etcd { format!("{url},{url_for_n3}") } else { url.clone() };
    let etcd_log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
    let _etcd = Killed(
        std::process::Command::new(etcd_binary)
            .args(["--name", "e1", "--data-dir"])
            .arg(dir.path().join("etcd-data"))
            .args(["--listen-client-urls", &listen, "--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer_port}")])
            .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer_port}")])
            .args(["--initial-cluster", &format!("e1=http://127.0.0.1:{peer_port}")])
            .stdout(std::process::Stdio::null())
            .stderr(etcd_log)
            .spawn()
            .unwrap(),
    );
    let ids = ["n1", "n2", "n3"];
    let ports: Vec<u16> = (0..3).map(|_| super::free_port()).collect();
    let addresses: Vec<String> =
        (0..3).map(|i| format!("{}:{}", if i == 2 { Partition::CUT } else { shared }, ports[i])).collect();
    // n3 listens on both of its links: the cluster's, and its clients'.
    let binds: Vec<String> =
        (0..3).map(|i| if i == 2 { format!("0.0.0.0:{}", ports[i]) } else { addresses[i].clone() }).collect();
    let _nodes: Vec<Killed> = (0..3)
        .map(|i| {
            let netns = (i == 2).then_some(partition.netns.as_str());
            let etcd = if i == 2 && reaches_etcd { &url_for_n3 } else { &url };
            Killed(node_at(dir.path(), etcd, ids[i], (&binds[i], &addresses[i]), netns))
        })
        .collect();
    let all: Vec<(String, String)> = (0..3).map(|i| (ids[i].to_owned(), addresses[i].clone())).collect();
    wait_for(&url, &all, "three nodes join, one in its own network namespace");
    let client_addresses: Vec<String> = (0..3)
        .map(|i| if i == 2 { format!("{}:{}", Partition::CLIENTS, ports[i]) } else { addresses[i].clone() })
        .collect();
    let clients: Vec<aws_sdk_kinesis::Client> =
        client_addresses.iter().map(|a| crate::support::kinesis_client(a.parse().unwrap(), KEY, SECRET)).collect();
    let active = |r: &Result<(String, i64, Vec<String>), String>| r.as_ref().is_ok_and(|v| v.0 == "ACTIVE");
    clients[0].create_stream().stream_name("telemetry").shard_count(3).send().await.unwrap();
    for (i, k) in clients.iter().enumerate() {
        until(k, "telemetry", &format!("{}'s copy", ids[i]), active).await.unwrap();
    }
    let before = leaders_of(&url, "telemetry");
    let shard = before.iter().position(|(l, _)| l == "n3").expect("n3 leads a shard");

    let history = Arc::new(Mutex::new(History::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(p, k)| tokio::spawn(produce(k.clone(), (0, p), history.clone(), stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    // n3 cut off mid-ingest, its producer still putting through it: its shard gets a new
    // leader (its lease runs out; or, reaching etcd, it steps down), and what it appends
    // alone is acknowledged to nobody and cut when it follows again.
    partition.cut(true);
    let t0 = Instant::now();
    let what = if reaches_etcd { "from the other nodes" } else { "from etcd and the other nodes" };
    loop {
        let now = leaders_of(&url, "telemetry");
        if now[shard].1 > before[shard].1 && !now[shard].0.is_empty() && now[shard].0 != "n3" {
            eprintln!("n3 cut off {what}: {} leads shard {shard} after {:?}", now[shard].0, t0.elapsed());
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(40), "n3 cut off {what}: no new leader for its shard: {now:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    partition.cut(false);
    wait_for(&url, &all, "n3 back in the cluster");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let snapshot = stop_producers(&stop, producers, &history).await;
    assert_eq!(snapshot.acked.len(), 3, "every shard took records");
    if let Some(v) = check(&clients, &ids, &snapshot).await {
        panic!("after n3 was cut off {what}: {v}");
    }
    let acked: usize = snapshot.acked.values().map(Vec::len).sum();
    eprintln!(
        "partition {what}: {acked} records acknowledged, {} refused or unanswered; history holds",
        snapshot.unknown
    );
}
