//! The example transforms, built by `build.rs` and embedded, so `sluice demo` and anyone
//! trying a Lambda processor have them without a Rust toolchain (issue 17: the demo used to
//! build them with `cargo` at run time, which an installed binary or a container cannot).
//!
//! - `clickstream.wasm`: Wikipedia edits: drops bot edits, adds `edit_size_bucket`, and
//!   emits the wiki's `channel` as a partition key.
//! - `telemetry.wasm`: Beijing air-quality readings: adds `timestamp` and `CO_mg_m3`, fails
//!   readings outside physical ranges.
//! - `pii_redaction.wasm`: masks the IP address anonymous Wikipedia editors carry as `user`.
//!
//! Their logic is the `sluice-example-transforms` crate; their sources are in
//! `transforms/guests/`.

use std::path::Path;

/// Each example component: its file name (what a `LambdaArn` parameter names) and bytes.
pub const EXAMPLE_TRANSFORMS: [(&str, &[u8]); 3] = [
    ("clickstream.wasm", include_bytes!(concat!(env!("OUT_DIR"), "/clickstream.wasm"))),
    ("telemetry.wasm", include_bytes!(concat!(env!("OUT_DIR"), "/telemetry.wasm"))),
    ("pii_redaction.wasm", include_bytes!(concat!(env!("OUT_DIR"), "/pii_redaction.wasm"))),
];

/// Writes the example components into `dir` (created), leaving files that already hold the
/// same bytes alone, so a transform host's code cache keeps matching them.
///
/// Errors: the folder or a file cannot be written.
pub fn write_example_transforms(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, bytes) in EXAMPLE_TRANSFORMS {
        let path = dir.join(name);
        if std::fs::read(&path).is_ok_and(|existing| existing == bytes) {
            continue;
        }
        std::fs::write(&path, bytes)?;
    }
    Ok(())
}
