//! Memory under attack: what holding connections open costs a running Sluice server, and
//! whether it keeps answering meanwhile. The project's target: 64 unauthenticated 10 MiB
//! bodies held open and 1,000 idle connections raise the server's RSS by less than 256 MiB,
//! and ListStreams stays within 100 ms p99. This is a benchmark: it reports the figures
//! (one table on stderr, one JSON line on stdout) and judges nothing.
//!
//! Phases:
//! 1. baseline: the server's RSS (`VmRSS` of `/proc/PID/status`), open sockets and threads,
//!    and the latency of `--baseline-requests` SigV4-signed ListStreams, one every
//!    `--interval-ms`, on one keep-alive connection;
//! 2. attack, for `--seconds` once every connection is open:
//!    - `--bodies` connections (half `body-trickle`, half `body-hold`) send the headers of a
//!      `POST /` with `X-Amz-Target: Kinesis_20131202.PutRecords` and
//!      `Content-Length: 10485760` and no `Authorization`, then trickle 1 KiB of body every
//!      100 ms (`body-trickle`) or send nothing more (`body-hold`);
//!    - `--idle` connections (half `idle-silent`: connect and send nothing; half
//!      `idle-partial`: send a request line and half a header line, then nothing);
//!    - `--forged-bodies` connections (default 0) whose headers pass the server's header
//!      check with only the public access key id (`sluice`, a well-formed scope and date, a
//!      made-up signature), then send all of a 10 MiB body but its last byte, fast, and hold:
//!      the server reads such bodies before it can check the signature, so this measures the
//!      256 MiB body budget rather than the credential check;
//!
//!    meanwhile ListStreams every `--interval-ms` (latency) and the server's RSS, sockets and
//!    threads every 500 ms (peak), plus `VmHWM` reset at the start of the phase when the
//!    kernel allows (`/proc/PID/clear_refs`), which catches peaks between samples;
//! 3. after: every attack connection closed, the server sampled again 2 s later.
//!
//! Per attack connection it records what the server did: answered (status and `__type`, time
//! from the headers), closed (EOF or reset) or refused further body bytes, or nothing.
//!
//! Bounds on itself: it talks to 127.0.0.1 only, raises its own `RLIMIT_NOFILE` soft limit
//! to what the connections need (up to the hard limit), and exits by itself at the latest
//! `--seconds` + 120 s after it starts.
//!
//! Run (`benches/attack.sh [attack options]` does all of this with a temporary data dir on a
//! free port):
//!
//! ```sh
//! cargo build --release -p sluice --bin sluice -p sluice-benches --example attack
//! dir=$(mktemp -d)
//! printf 'bind = "127.0.0.1:4567"\ndata_dir = "%s/data"\n' "$dir" >"$dir/sluice.toml"
//! target/release/sluice serve --config "$dir/sluice.toml" &   # default config: auth = "sigv4",
//! pid=$!                                                      # key pair sluice / sluice-secret
//! target/release/examples/attack --endpoint http://127.0.0.1:4567 --server-pid $pid [--seconds 10]
//! kill $pid; wait $pid; rm -rf "$dir"
//! ```
//!
//! (or `cargo run --release -p sluice-benches --example attack -- --endpoint ... --server-pid ...`).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use sluice::client::KinesisClient;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// The body size the attack's requests declare: 10 MiB.
const DECLARED_BODY: usize = 10 << 20;

#[derive(Debug, Clone)]
struct Options {
    endpoint: String,
    addr: SocketAddr,
    server_pid: u32,
    seconds: f64,
    bodies: usize,
    idle: usize,
    forged_bodies: usize,
    baseline_requests: usize,
    interval: Duration,
}

fn options() -> Options {
    let (mut endpoint, mut server_pid, mut seconds) = ("http://127.0.0.1:4567".to_owned(), None, 10.0);
    let (mut bodies, mut idle, mut forged_bodies, mut baseline_requests, mut interval_ms) = (64, 1000, 0, 200, 20);
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let (k, v) = (pair[0].as_str(), pair.get(1).map(String::as_str).unwrap_or_default());
        match k {
            "--endpoint" => endpoint = v.to_owned(),
            "--server-pid" => server_pid = Some(v.parse().expect("--server-pid PID")),
            "--seconds" => seconds = v.parse().expect("--seconds S"),
            "--bodies" => bodies = v.parse().expect("--bodies N"),
            "--idle" => idle = v.parse().expect("--idle N"),
            "--forged-bodies" => forged_bodies = v.parse().expect("--forged-bodies N"),
            "--baseline-requests" => baseline_requests = v.parse().expect("--baseline-requests N"),
            "--interval-ms" => interval_ms = v.parse().expect("--interval-ms N"),
            other => panic!("unknown option {other}"),
        }
    }
    let addr: SocketAddr = endpoint
        .strip_prefix("http://")
        .and_then(|a| a.trim_end_matches('/').parse().ok())
        .expect("--endpoint http://127.0.0.1:PORT");
    assert_eq!(addr.ip(), Ipv4Addr::LOCALHOST, "the attack only talks to 127.0.0.1");
    assert!(seconds > 0.0 && seconds <= 600.0, "--seconds must be in (0, 600]");
    assert!(bodies + idle + forged_bodies <= 10_000, "at most 10,000 attack connections");
    Options {
        endpoint,
        addr,
        server_pid: server_pid.expect("--server-pid PID (the server's RSS is the point)"),
        seconds,
        bodies,
        idle,
        forged_bodies,
        baseline_requests,
        interval: Duration::from_millis(interval_ms.max(1)),
    }
}

/// Raises this process's soft `RLIMIT_NOFILE` to `need` (capped at the hard limit); returns
/// the soft limit in force afterwards.
fn raise_nofile(need: libc::rlim_t) -> libc::rlim_t {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `r` is a valid, writable `rlimit` for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return 0;
    }
    if r.rlim_cur < need {
        let raised = libc::rlimit { rlim_cur: need.min(r.rlim_max), rlim_max: r.rlim_max };
        // SAFETY: `raised` is a valid `rlimit` for the duration of the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            r = raised;
        }
    }
    r.rlim_cur
}

/// A field of `/proc/PID/status` in its unit (kB for memory).
fn status_field(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with(field))?.split_whitespace().nth(1)?.parse().ok()
}

/// The sockets a process holds open (listener and connections).
fn sockets(pid: u32) -> Option<usize> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(
        fds.filter_map(Result::ok)
            .filter(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:")))
            .count(),
    )
}

#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    rss: u64,
    sockets: usize,
    threads: u64,
}

fn sample(pid: u32) -> Sample {
    Sample {
        rss: status_field(pid, "VmRSS:").unwrap_or(0) * 1024,
        sockets: sockets(pid).unwrap_or(0),
        threads: status_field(pid, "Threads:").unwrap_or(0),
    }
}

/// Samples the server every 500 ms until `stop`; returns the peaks and the sample count.
async fn monitor(pid: u32, stop: Arc<AtomicBool>) -> (Sample, usize) {
    let mut peak = Sample::default();
    let mut n = 0;
    let mut ticks = tokio::time::interval(Duration::from_millis(500));
    while !stop.load(Ordering::Relaxed) {
        ticks.tick().await;
        let s = sample(pid);
        peak = Sample {
            rss: peak.rss.max(s.rss),
            sockets: peak.sockets.max(s.sockets),
            threads: peak.threads.max(s.threads),
        };
        n += 1;
    }
    (peak, n)
}

/// ListStreams latencies (ms, sorted) and failures.
#[derive(Debug, Default)]
struct Probe {
    ms: Vec<f64>,
    errors: usize,
    first_error: Option<String>,
}

/// ListStreams every `interval` on `c`'s keep-alive connection, `count` times or until `stop`.
async fn probe(c: KinesisClient, interval: Duration, count: Option<usize>, stop: Arc<AtomicBool>) -> Probe {
    let mut p = Probe::default();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) && count.is_none_or(|n| p.ms.len() + p.errors < n) {
        ticks.tick().await;
        let t = Instant::now();
        match c.kinesis("ListStreams", &json!({})).await {
            Ok(_) => p.ms.push(t.elapsed().as_secs_f64() * 1e3),
            Err(e) => {
                p.errors += 1;
                p.first_error.get_or_insert(e.to_string());
            }
        }
    }
    p.ms.sort_by(f64::total_cmp);
    p
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// What an attack connection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    BodyTrickle,
    BodyHold,
    IdleSilent,
    IdlePartial,
    ForgedBody,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::BodyTrickle => "body-trickle",
            Kind::BodyHold => "body-hold",
            Kind::IdleSilent => "idle-silent",
            Kind::IdlePartial => "idle-partial",
            Kind::ForgedBody => "forged-body",
        }
    }

    /// The bytes sent on connecting.
    fn preamble(self, addr: SocketAddr) -> Vec<u8> {
        let request = |extra: &str| {
            format!(
                "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-amz-json-1.1\r\n\
                 X-Amz-Target: Kinesis_20131202.PutRecords\r\nContent-Length: {DECLARED_BODY}\r\n{extra}\r\n"
            )
            .into_bytes()
        };
        match self {
            Kind::BodyTrickle | Kind::BodyHold => request(""),
            Kind::IdleSilent => Vec::new(),
            Kind::IdlePartial => format!("POST / HTTP/1.1\r\nHost: {addr}\r\nX-Amz-Tar").into_bytes(),
            Kind::ForgedBody => {
                let date = amz_date(SystemTime::now());
                request(&format!(
                    "X-Amz-Date: {date}\r\nAuthorization: AWS4-HMAC-SHA256 Credential=sluice/{}/us-east-1/kinesis/aws4_request, \
                     SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={}\r\n",
                    &date[..8],
                    "0".repeat(64)
                ))
            }
        }
    }
}

/// `YYYYMMDDTHHMMSSZ` of `t` (civil date from days: Howard Hinnant's algorithm).
fn amz_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// What the server did to one attack connection; times in ms from the connection's opening.
#[derive(Debug)]
struct ConnReport {
    kind: Kind,
    connect_error: Option<String>,
    /// How long `connect` took (a SYN the server's backlog dropped is retried after 1 s).
    connect_ms: f64,
    sent: u64,
    /// Status code, `__type` (empty if none) and when the answer's first byte came.
    answer: Option<(u16, String, f64)>,
    /// How and when the server closed its side: `eof` or an error kind.
    closed: Option<(String, f64)>,
    /// A write that failed (the server reset the connection): error kind and when.
    write_error: Option<(String, f64)>,
}

/// Completes once the attack's window has ended.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: dropped here, before any other await.
    let _ = stop.wait_for(|s| *s).await;
}

async fn attack_conn(
    kind: Kind,
    addr: SocketAddr,
    connect_slots: Arc<tokio::sync::Semaphore>,
    tried: tokio::sync::mpsc::UnboundedSender<()>,
    stop: watch::Receiver<bool>,
) -> ConnReport {
    let mut report = ConnReport {
        kind,
        connect_error: None,
        connect_ms: 0.0,
        sent: 0,
        answer: None,
        closed: None,
        write_error: None,
    };
    let stream = {
        let _slot = connect_slots.acquire().await.expect("never closed");
        let connecting = Instant::now();
        let connected = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr)).await;
        report.connect_ms = connecting.elapsed().as_secs_f64() * 1e3;
        let _ = tried.send(());
        match connected {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                report.connect_error = Some(e.kind().to_string());
                return report;
            }
            Err(_) => {
                report.connect_error = Some("connect timed out".into());
                return report;
            }
        }
    };
    let opened = Instant::now();
    let ms = move || opened.elapsed().as_secs_f64() * 1e3;
    let (mut rd, mut wr) = stream.into_split();
    let mut stop_r = stop.clone();
    let reader = async move {
        let (mut buf, mut chunk, mut first) = (Vec::new(), [0u8; 4096], None);
        loop {
            tokio::select! {
                biased;
                () = stopped(&mut stop_r) => return (buf, first, None),
                n = rd.read(&mut chunk) => match n {
                    Ok(0) => return (buf, first, Some(("eof".to_owned(), ms()))),
                    Ok(n) => {
                        first.get_or_insert(ms());
                        if buf.len() < 8192 {
                            buf.extend_from_slice(&chunk[..n]);
                        }
                    }
                    Err(e) => return (buf, first, Some((e.kind().to_string(), ms()))),
                },
            }
        }
    };
    let mut stop_w = stop;
    let writer = async move {
        let mut sent = 0u64;
        let fail = |e: std::io::Error| Some((e.kind().to_string(), ms()));
        let preamble = kind.preamble(addr);
        if let Err(e) = wr.write_all(&preamble).await {
            return (sent, fail(e), wr);
        }
        sent += preamble.len() as u64;
        match kind {
            Kind::BodyTrickle => {
                let kib = [b'x'; 1024];
                let mut ticks = tokio::time::interval(Duration::from_millis(100));
                while sent < (preamble.len() + DECLARED_BODY - kib.len()) as u64 {
                    tokio::select! {
                        () = stopped(&mut stop_w) => break,
                        _ = ticks.tick() => match wr.write_all(&kib).await {
                            Ok(()) => sent += kib.len() as u64,
                            Err(e) => return (sent, fail(e), wr),
                        },
                    }
                }
            }
            Kind::ForgedBody => {
                let chunk = vec![b'x'; 64 << 10];
                let mut left = DECLARED_BODY - 1;
                while left > 0 {
                    let n = left.min(chunk.len());
                    tokio::select! {
                        () = stopped(&mut stop_w) => break,
                        written = wr.write_all(&chunk[..n]) => match written {
                            Ok(()) => { sent += n as u64; left -= n; }
                            Err(e) => return (sent, fail(e), wr),
                        },
                    }
                }
            }
            Kind::BodyHold | Kind::IdleSilent | Kind::IdlePartial => {}
        }
        stopped(&mut stop_w).await;
        (sent, None, wr)
    };
    // The write half lives until the reader has seen the stop: its FIN must not make the
    // server close the connection before then, or that close would count as the server's.
    let ((buf, first, closed), (sent, write_error, wr)) = tokio::join!(reader, writer);
    drop(wr);
    report.sent = sent;
    report.closed = closed;
    report.write_error = write_error;
    if let Some(at) = first {
        let text = String::from_utf8_lossy(&buf);
        let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let kind = text.split("\"__type\":\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or("").to_owned();
        report.answer = Some((status, kind, at));
    }
    report
}

/// One attack kind's outcome, summed over its connections.
#[derive(Debug, Default, serde::Serialize)]
struct KindSummary {
    connections: usize,
    connected: usize,
    connect_errors: usize,
    connect_p50_ms: Option<f64>,
    connect_max_ms: Option<f64>,
    /// "STATUS __type" → count.
    answers: BTreeMap<String, usize>,
    answer_p50_ms: Option<f64>,
    answer_max_ms: Option<f64>,
    /// How the server closed ("eof", "connection reset", ...) → count.
    closed_by_server: BTreeMap<String, usize>,
    /// When the server closed them, ms from opening: the first and the median.
    closed_min_ms: Option<f64>,
    closed_p50_ms: Option<f64>,
    write_errors: BTreeMap<String, usize>,
    /// Connected, no close seen, no write refused, when the window ended.
    open_at_end: usize,
    bytes_sent: u64,
}

fn summarize(reports: &[ConnReport]) -> BTreeMap<Kind, KindSummary> {
    let mut out: BTreeMap<Kind, (KindSummary, [Vec<f64>; 3])> = BTreeMap::new();
    for r in reports {
        let (s, [answer_ms, closed_ms, connect_ms]) = out.entry(r.kind).or_default();
        s.connections += 1;
        if r.connect_error.is_some() {
            s.connect_errors += 1;
            continue;
        }
        s.connected += 1;
        connect_ms.push(r.connect_ms);
        s.bytes_sent += r.sent;
        if let Some((status, kind, at)) = &r.answer {
            *s.answers.entry(format!("{status} {kind}").trim().to_owned()).or_default() += 1;
            answer_ms.push(*at);
        }
        if let Some((how, at)) = &r.closed {
            *s.closed_by_server.entry(how.clone()).or_default() += 1;
            closed_ms.push(*at);
        }
        if let Some((how, _)) = &r.write_error {
            *s.write_errors.entry(how.clone()).or_default() += 1;
        }
        if r.closed.is_none() && r.write_error.is_none() {
            s.open_at_end += 1;
        }
    }
    out.into_iter()
        .map(|(k, (mut s, [mut ms, mut closed, mut connect]))| {
            connect.sort_by(f64::total_cmp);
            s.connect_p50_ms = (!connect.is_empty()).then(|| percentile(&connect, 0.5));
            s.connect_max_ms = connect.last().copied();
            ms.sort_by(f64::total_cmp);
            s.answer_p50_ms = (!ms.is_empty()).then(|| percentile(&ms, 0.5));
            s.answer_max_ms = ms.last().copied();
            closed.sort_by(f64::total_cmp);
            s.closed_min_ms = closed.first().copied();
            s.closed_p50_ms = (!closed.is_empty()).then(|| percentile(&closed, 0.5));
            (k, s)
        })
        .collect()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

fn latency_json(p: &Probe) -> serde_json::Value {
    json!({"requests": p.ms.len(), "errors": p.errors, "p50_ms": percentile(&p.ms, 0.5),
           "p99_ms": percentile(&p.ms, 0.99), "max_ms": p.ms.last(), "first_error": p.first_error})
}

#[tokio::main]
async fn main() {
    let o = options();
    let pid = o.server_pid;
    let total = o.bodies + o.idle + o.forged_bodies;
    let nofile = raise_nofile(total as u64 + 256);
    assert!(nofile as usize >= total + 64, "RLIMIT_NOFILE {nofile} is too low for {total} connections");
    // The generator stops by itself whatever the server does.
    let limit = Duration::from_secs_f64(o.seconds + 120.0);
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("attack: time limit of {} s reached, exiting", limit.as_secs());
        std::process::exit(2);
    });
    assert!(sample(pid).rss > 0, "no process {pid} to measure (--server-pid)");

    let c = KinesisClient::new(&o.endpoint, "us-east-1", "sluice", "sluice-secret");
    let stream = format!("attack-{}", std::process::id());
    let mut up = false;
    for _ in 0..100 {
        if c.kinesis("ListStreams", &json!({})).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the server at {} does not answer a signed ListStreams", o.endpoint);
    // One stream, so ListStreams lists something.
    c.kinesis("CreateStream", &json!({"StreamName": stream, "ShardCount": 1})).await.expect("CreateStream");

    // 1. Baseline.
    let base = sample(pid);
    let never = Arc::new(AtomicBool::new(false));
    let baseline = probe(c.clone(), o.interval, Some(o.baseline_requests), never).await;
    let base = Sample { rss: base.rss.max(sample(pid).rss), ..base };

    // 2. Attack.
    let hwm_reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
    let stop = Arc::new(AtomicBool::new(false));
    let monitor = tokio::spawn(monitor(pid, stop.clone()));
    let prober = tokio::spawn(probe(c.clone(), o.interval, None, stop.clone()));
    let (stop_conns, stop_rx) = watch::channel(false);
    let connect_slots = Arc::new(tokio::sync::Semaphore::new(64));
    let started = Instant::now();
    let kinds = (0..o.bodies)
        .map(|i| if i % 2 == 0 { Kind::BodyTrickle } else { Kind::BodyHold })
        .chain((0..o.forged_bodies).map(|_| Kind::ForgedBody))
        .chain((0..o.idle).map(|i| if i % 2 == 0 { Kind::IdleSilent } else { Kind::IdlePartial }));
    let (tried, mut tries) = tokio::sync::mpsc::unbounded_channel();
    let conns: Vec<_> = kinds
        .map(|k| tokio::spawn(attack_conn(k, o.addr, connect_slots.clone(), tried.clone(), stop_rx.clone())))
        .collect();
    drop(tried);
    // The window starts once every connection is open (or failed to open).
    for _ in 0..total {
        tries.recv().await.expect("an attack task ended before trying to connect");
    }
    let setup_ms = started.elapsed().as_secs_f64() * 1e3;
    tokio::time::sleep(Duration::from_secs_f64(o.seconds)).await;
    let during = sample(pid);
    let hwm = status_field(pid, "VmHWM:").map(|kb| kb * 1024).filter(|_| hwm_reset);

    // 3. After: close everything.
    stop.store(true, Ordering::Relaxed);
    stop_conns.send_replace(true);
    let mut reports = Vec::with_capacity(conns.len());
    for h in conns {
        reports.push(h.await.expect("attack connection task"));
    }
    let attack = prober.await.expect("probe");
    let (peak, samples) = monitor.await.expect("monitor");
    let peak = Sample {
        rss: peak.rss.max(during.rss).max(hwm.unwrap_or(0)),
        sockets: peak.sockets.max(during.sockets),
        threads: peak.threads.max(during.threads),
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = sample(pid);
    let answers_after = c.kinesis("ListStreams", &json!({})).await.is_ok();
    let _ = c.kinesis("DeleteStream", &json!({"StreamName": stream})).await;

    let kinds = summarize(&reports);
    let delta = peak.rss as i64 - base.rss as i64;
    let row = |name: &str, s: Sample, p: Option<&Probe>| {
        let lat = p.map_or_else(
            || "-".to_owned(),
            |p| {
                format!(
                    "{:.2} / {:.2} / {:.2} ({} ok, {} failed)",
                    percentile(&p.ms, 0.5),
                    percentile(&p.ms, 0.99),
                    p.ms.last().copied().unwrap_or(f64::NAN),
                    p.ms.len(),
                    p.errors
                )
            },
        );
        eprintln!("{name:<22} {:>9.1} {:>9} {:>8}   {lat}", mib(s.rss), s.sockets, s.threads);
    };
    eprintln!(
        "\nmemory under attack: {} bodies ({} declared bytes each, no Authorization), {} forged-signature bodies, \
         {} idle connections, {:.0} s window after {:.0} ms to open them",
        o.bodies, DECLARED_BODY, o.forged_bodies, o.idle, o.seconds, setup_ms
    );
    eprintln!("{:<22} {:>9} {:>9} {:>8}   ListStreams p50 / p99 / max ms", "server", "RSS MiB", "sockets", "threads");
    row("baseline", base, Some(&baseline));
    row("attack (peak)", peak, Some(&attack));
    row("after (2 s)", after, None);
    eprintln!(
        "RSS delta (peak - baseline): {:.1} MiB (issue's bound: < 256 MiB); ListStreams p99 during attack: {:.2} ms \
         (issue's bound: < 100 ms); VmHWM {}; server answers after: {answers_after}",
        delta as f64 / f64::from(1 << 20),
        percentile(&attack.ms, 0.99),
        hwm.map_or("not available".to_owned(), |b| format!("{:.1} MiB (reset at attack start)", mib(b))),
    );
    eprintln!(
        "\n{:<13} {:>6} {:>9} {:>15} {:>9} {:>14} {:>10} {:>7} {:>14} {:>11}  answers / server closes / refused writes",
        "connections",
        "count",
        "connected",
        "connect p50/max",
        "MiB sent",
        "answer p50 ms",
        "answered",
        "closed",
        "closed p50 ms",
        "open at end"
    );
    for (k, s) in &kinds {
        let answered: usize = s.answers.values().sum();
        let closed: usize = s.closed_by_server.values().sum();
        eprintln!(
            "{:<13} {:>6} {:>9} {:>15} {:>9.2} {:>14} {:>10} {:>7} {:>14} {:>11}  {:?} / {:?} / {:?}",
            k.name(),
            s.connections,
            s.connected,
            format!("{:.0}/{:.0}", s.connect_p50_ms.unwrap_or(f64::NAN), s.connect_max_ms.unwrap_or(f64::NAN)),
            mib(s.bytes_sent),
            s.answer_p50_ms.map_or("-".to_owned(), |m| format!("{m:.2}")),
            answered,
            closed,
            s.closed_p50_ms.map_or("-".to_owned(), |m| format!("{m:.0}")),
            s.open_at_end,
            s.answers,
            s.closed_by_server,
            s.write_errors
        );
    }
    let kinds_json: serde_json::Map<String, serde_json::Value> =
        kinds.iter().map(|(k, s)| (k.name().to_owned(), serde_json::to_value(s).expect("serializes"))).collect();
    println!(
        "{}",
        json!({
            "bench": "attack", "seconds": o.seconds, "setup_ms": setup_ms, "declared_body_bytes": DECLARED_BODY,
            "bodies": o.bodies, "forged_bodies": o.forged_bodies, "idle": o.idle,
            "baseline": {"rss_bytes": base.rss, "sockets": base.sockets, "threads": base.threads, "list_streams": latency_json(&baseline)},
            "attack": {"peak_rss_bytes": peak.rss, "vm_hwm_bytes": hwm, "rss_samples": samples, "peak_sockets": peak.sockets,
                       "peak_threads": peak.threads, "list_streams": latency_json(&attack)},
            "after": {"rss_bytes": after.rss, "sockets": after.sockets, "threads": after.threads, "server_answers": answers_after},
            "rss_delta_bytes": delta,
            "connections": kinds_json,
        })
    );
}
