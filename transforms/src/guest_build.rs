//! Building the guest components of `transforms/guests/` (the example transforms and the
//! test components) for `wasm32-wasip2`, for tests and the demo.

use std::path::{Path, PathBuf};

/// Why the guests could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GuestBuildError {
    /// `cargo` could not be run.
    #[error("cannot run cargo: {0}")]
    Cargo(#[source] std::io::Error),
    /// The build failed (its output went to stderr).
    #[error("building the guest components failed; is the wasm32-wasip2 target installed (rustup target add wasm32-wasip2)?")]
    Failed,
}

/// Builds every guest of `<repo>/transforms/guests` in release mode into `target_dir` (a
/// target directory of its own, so it never waits on another build's lock) and returns the
/// folder holding `<name>.wasm` (crate names with `_` for `-`). Quick when nothing changed.
pub fn build_guests(repo: &Path, target_dir: &Path) -> Result<PathBuf, GuestBuildError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--release", "--locked", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(repo.join("transforms/guests/Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .status()
        .map_err(GuestBuildError::Cargo)?;
    if !status.success() {
        return Err(GuestBuildError::Failed);
    }
    Ok(target_dir.join("wasm32-wasip2/release"))
}
