//! Loading is held to limits too: a component whose instantiation loops or allocates fails to
//! load within the transform's deadline and memory limit, an oversized file or one that is not
//! a regular file is refused unread, and the compiled-code cache is named by content and never
//! loads a file that is not exactly what it wrote for that name.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_transforms::{LoadError, Outcome, TransformHost, TransformLimits};

use crate::guests::{component, inputs};

fn leb(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn section(id: u8, body: &[u8], out: &mut Vec<u8>) {
    out.push(id);
    leb(body.len(), out);
    out.extend_from_slice(body);
}

/// A component (binary format, hand-encoded) holding one core module with a one-page memory
/// whose start function has `code` as its body, instantiated by the component.
fn start_function_component(code: &[u8]) -> Vec<u8> {
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    section(1, &[1, 0x60, 0, 0], &mut module); // one type: [] -> []
    section(3, &[1, 0], &mut module); // one function, of type 0
    section(5, &[1, 0, 1], &mut module); // one memory: at least 1 page, no maximum
    section(8, &[0], &mut module); // start: function 0
    let mut body = vec![0]; // no locals
    body.extend_from_slice(code);
    let mut bodies = vec![1];
    leb(body.len(), &mut bodies);
    bodies.extend(body);
    section(10, &bodies, &mut module);
    let mut c = b"\0asm\x0d\0\x01\0".to_vec();
    section(1, &module, &mut c); // core module section
    section(2, &[1, 0, 0, 0], &mut c); // one core instance: instantiate module 0, no arguments
    c
}

/// `loop br 0 end`: never returns.
const LOOP: &[u8] = &[0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b];
/// `loop (drop (memory.grow (i32.const 16))) br 0 end`: grows memory 1 MiB at a time without end.
const GROW: &[u8] = &[0x03, 0x40, 0x41, 0x10, 0x40, 0x00, 0x1a, 0x0c, 0x00, 0x0b, 0x0b];

/// Loads `path` on a thread of its own; the error, or a panic if loading took over 60 s (the
/// thread is left behind).
fn load_err(host: &Arc<TransformHost>, path: &Path, limits: TransformLimits) -> (LoadError, Duration) {
    let (tx, rx) = std::sync::mpsc::channel();
    let (host, file) = (host.clone(), path.to_owned());
    let start = Instant::now();
    std::thread::spawn(move || {
        let _ = tx.send(host.load(&file, limits, Vec::new()).map(|_| ()));
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Err(e)) => (e, start.elapsed()),
        Ok(Ok(())) => panic!("{} loaded", path.display()),
        Err(_) => panic!("loading {} did not finish within 60 s", path.display()),
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn a_start_function_that_loops_fails_to_load_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "loop.wasm", &start_function_component(LOOP));
    let host = Arc::new(TransformHost::new().unwrap());
    let limits = TransformLimits { memory_bytes: 16 << 20, deadline: Duration::from_millis(200), retries: 0 };
    let (e, took) = load_err(&host, &path, limits);
    assert!(matches!(e, LoadError::Instantiate { .. }), "{e:?}");
    assert!(e.to_string().contains("timed out after 200ms"), "{e}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn a_start_function_that_allocates_without_end_fails_to_load_at_the_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "grow.wasm", &start_function_component(GROW));
    let host = Arc::new(TransformHost::new().unwrap());
    // A long deadline: only the memory limit stops it quickly.
    let limits = TransformLimits { memory_bytes: 16 << 20, deadline: Duration::from_secs(120), retries: 0 };
    let (e, took) = load_err(&host, &path, limits);
    assert!(matches!(e, LoadError::Instantiate { .. }), "{e:?}");
    assert!(e.to_string().contains("memory"), "{e}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn an_oversized_file_a_fifo_a_link_and_a_folder_are_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let host = Arc::new(TransformHost::new().unwrap());
    let limits = TransformLimits::default();
    // Sparse: 32 MiB and one byte, nothing written.
    let big = dir.path().join("big.wasm");
    std::fs::File::create(&big).unwrap().set_len(TransformHost::COMPONENT_BYTES_MAX + 1).unwrap();
    let (e, took) = load_err(&host, &big, limits);
    assert!(matches!(e, LoadError::TooLarge { limit, .. } if limit == 32 << 20), "{e:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");

    let fifo = dir.path().join("fifo.wasm");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let (e, _) = load_err(&host, &fifo, limits);
    assert!(matches!(e, LoadError::NotAFile { .. }), "{e:?}");

    let target = write(dir.path(), "target.wasm", &start_function_component(LOOP));
    let link = dir.path().join("link.wasm");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let (e, _) = load_err(&host, &link, limits);
    assert!(matches!(e, LoadError::NotAFile { .. }), "{e:?}");

    let (e, _) = load_err(&host, dir.path(), limits);
    assert!(matches!(e, LoadError::NotAFile { .. }), "{e:?}");
    let (e, _) = load_err(&host, Path::new("/dev/zero"), limits);
    assert!(matches!(e, LoadError::NotAFile { .. }), "{e:?}");
}

/// The cache files of `dir`, by name.
fn cache_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

/// Loads `path` with a fresh host caching in `cache` and runs the `hostile` guest's echo.
fn echo_with_fresh_host(cache: &Path, path: &Path) -> Vec<Outcome> {
    let host = Arc::new(TransformHost::with_precompiled_dir(Some(cache.to_owned())).unwrap());
    let t = host.load(path, TransformLimits::default(), vec![("mode".into(), "echo".into())]).unwrap();
    t.process(&inputs(&[b"{\"a\":1}".to_vec()]))
}

fn is_echo(out: &[Outcome]) -> bool {
    matches!(out, [Outcome::Ok { data, .. }] if data == b"{\"a\":1}")
}

#[test]
fn cache_files_are_named_by_the_sha256_of_content_and_engine() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let hostile = std::fs::read(component("hostile")).unwrap();
    let a = write(dir.path(), "a.wasm", &hostile);
    assert!(is_echo(&echo_with_fresh_host(&cache, &a)));
    let first = cache_files(&cache);
    assert_eq!(first.len(), 1, "{first:?}");
    let is_key =
        |n: &str| n.strip_suffix(".cwasm").is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(is_key(&first[0]), "{first:?}");

    // The same bytes under another name: the same cache file, nothing compiled or written.
    let b = write(dir.path(), "b.wasm", &hostile);
    assert!(is_echo(&echo_with_fresh_host(&cache, &b)));
    assert_eq!(cache_files(&cache), first);

    // One byte more (a custom section at the end): another file.
    let mut changed = hostile.clone();
    section(0, b"\x05sluicex", &mut changed);
    let c = write(dir.path(), "c.wasm", &changed);
    assert!(is_echo(&echo_with_fresh_host(&cache, &c)));
    let both = cache_files(&cache);
    assert_eq!(both.len(), 2, "{both:?}");
    assert!(both.iter().all(|n| is_key(n)), "{both:?}");
}

#[test]
fn a_truncated_damaged_or_swapped_cache_file_is_compiled_afresh_not_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let hostile = component("hostile");
    assert!(is_echo(&echo_with_fresh_host(&cache, &hostile)));
    let [own] = cache_files(&cache).try_into().unwrap();
    let own = cache.join(own);
    let good = std::fs::read(&own).unwrap();
    // Another component's compiled code, from the same engine.
    let host = Arc::new(TransformHost::with_precompiled_dir(Some(cache.clone())).unwrap());
    host.load(&component("clickstream"), TransformLimits::default(), Vec::new()).unwrap();
    let other = cache_files(&cache).into_iter().map(|n| cache.join(n)).find(|p| *p != own).unwrap();

    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x55;
    let damages: [(&str, Vec<u8>); 4] = [
        ("swapped for another component's", std::fs::read(&other).unwrap()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("one byte flipped", flipped),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in damages {
        std::fs::write(&own, &bytes).unwrap();
        assert!(is_echo(&echo_with_fresh_host(&cache, &hostile)), "{what}: not hostile's code");
        // Compiled afresh and written back whole.
        assert_eq!(std::fs::read(&own).unwrap().len(), good.len(), "{what}");
        assert!(is_echo(&echo_with_fresh_host(&cache, &hostile)), "{what}");
    }
    // No temporary files left.
    assert_eq!(cache_files(&cache).len(), 2);
}
