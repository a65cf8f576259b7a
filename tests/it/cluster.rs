//! A cluster of `sluice serve` processes on one etcd (Debian's etcd-server, installed by
//! `.ci/run`): membership by lease, unique node ids, and what killing a node, stopping one and
//! restarting etcd do to it. Skipped, with the reason printed, where no etcd binary is found.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

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

/// `sluice serve` as node `id` of cluster `test` (lease 2 s).
fn node(dir: &Path, etcd: &str, id: &str, port: u16) -> Child {
    let config = dir.join(format!("{id}-{port}.toml"));
    std::fs::write(
        &config,
        format!(
            "bind = \"127.0.0.1:{port}\"\ndata_dir = \"{data}\"\nauth = \"none\"\n[cluster]\netcd_endpoints = [\"{etcd}\"]\nnode_id = \"{id}\"\nname = \"test\"\nlease_ttl_s = 2\n",
            data = dir.join(format!("{id}-{port}")).display(),
        ),
    )
    .unwrap();
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
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
    let out = node(dir.path(), &url, "n2", free_port()).wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
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

#[test]
fn cluster_settings_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    for (cluster, want) in [
        ("etcd_endpoints = [\"http://127.0.0.1:2379\"]\nnode_id = \"../x\"", "node_id"),
        ("etcd_endpoints = []\nnode_id = \"n1\"", "etcd_endpoints"),
        ("etcd_endpoints = [\"127.0.0.1:2379\"]\nnode_id = \"n1\"", "http://"),
        ("etcd_endpoints = [\"http://127.0.0.1:2379\"]\nnode_id = \"n1\"\nlease_ttl_s = 0", "lease_ttl_s"),
        ("etcd_endpoints = [\"http://127.0.0.1:2379\"]\nnode_id = \"n1\"\nname = \"a/b\"", "name"),
    ] {
        let file = dir.path().join("c.toml");
        std::fs::write(&file, format!("auth = \"none\"\n[cluster]\n{cluster}\n")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_sluice")).arg("check-config").arg(&file).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(want), "{cluster}: {stderr}");
    }
}
