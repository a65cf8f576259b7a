//! Builds the components this crate embeds, for `wasm32-wasip2` in release mode, and leaves
//! them in `$OUT_DIR`: the jq sandbox (`guests/jq`, the `jq` world of `wit/jq.wit`), which
//! `src/jq.rs` embeds, and the example transforms (`clickstream`, `telemetry`,
//! `pii-redaction`), which `src/examples.rs` embeds so that `sluice demo` runs from an
//! installed binary or a container image, with no Rust toolchain at run time (issue 17).
//!
//! The nested `cargo build` uses `<target dir>/wasm-guests`, the folder the tests build every
//! guest into, so the debug, release, test and clippy builds of this crate share one guest
//! build (cold: about two minutes; warm: well under a second). A missing wasm32-wasip2 target
//! is added with `rustup target add`. `SLUICE_GUEST_WASM_DIR=<dir>` takes prebuilt components
//! (`jq.wasm` and the examples' `<name>.wasm`) from `dir` instead (for builds without the
//! wasm32-wasip2 target).

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

/// The guest packages built and embedded, and their components' file names.
const GUESTS: [(&str, &str); 4] = [
    ("jq", "jq.wasm"),
    ("clickstream", "clickstream.wasm"),
    ("telemetry", "telemetry.wasm"),
    ("pii-redaction", "pii_redaction.wasm"),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for input in ["guests", "example-transforms", "wit"] {
        println!("cargo:rerun-if-changed={input}");
    }
    println!("cargo:rerun-if-env-changed=SLUICE_GUEST_WASM_DIR");
    if let Some(prebuilt) = std::env::var_os("SLUICE_GUEST_WASM_DIR") {
        for (_, file) in GUESTS {
            copy(&Path::new(&prebuilt).join(file), &out_dir.join(file));
        }
        return;
    }

    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let installed = || {
        Command::new(&rustc)
            .args(["--print", "target-libdir", "--target", TARGET])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .is_some_and(|libdir| libdir.is_dir())
    };
    if !installed() {
        // The README's two commands must work on a machine with only rustup: add the target
        // as the user would (rustup's proxy set RUSTUP_TOOLCHAIN, so it lands in this
        // toolchain). Without rustup, say what to install.
        let added = Command::new("rustup").args(["target", "add", TARGET]).status().is_ok_and(|s| s.success());
        if added && installed() {
            println!("cargo:warning=installed the {TARGET} target with `rustup target add {TARGET}` (the embedded components are built for it)");
        } else {
            fail(&format!(
                "the {TARGET} target is not installed and `rustup target add {TARGET}` did not add it; \
                 sluice-transforms builds its jq sandbox and example transforms for it"
            ));
        }
    }

    let target_dir = guests_target_dir(&out_dir);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(manifest_dir.join("guests"))
        .args(["build", "--release", "--locked", "--target", TARGET])
        .args(GUESTS.iter().flat_map(|(package, _)| ["-p", package]))
        .arg("--manifest-path")
        .arg(manifest_dir.join("guests/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    // What cargo tells this build script about the outer build (its target, flags, wrappers,
    // jobserver, clippy's driver) must not leak into the nested one.
    let keep = ["CARGO_HOME", "CARGO_NET_", "CARGO_HTTP_", "CARGO_REGISTRIES_", "CARGO_REGISTRY_", "CARGO_TERM_"];
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let cargo_var =
            (name.starts_with("CARGO_") && !keep.iter().any(|k| name.starts_with(k))) || name.starts_with("__CARGO");
        let outer = matches!(
            name,
            "RUSTFLAGS"
                | "RUSTDOCFLAGS"
                | "RUSTC_WRAPPER"
                | "RUSTC_WORKSPACE_WRAPPER"
                | "MAKEFLAGS"
                | "MFLAGS"
                | "CLIPPY_ARGS"
                | "CLIPPY_CONF_DIR"
                | "TARGET"
                | "HOST"
                | "OUT_DIR"
                | "OPT_LEVEL"
                | "PROFILE"
                | "DEBUG"
                | "NUM_JOBS"
                | "RUSTC_LINKER"
        );
        if cargo_var || outer {
            build.env_remove(name);
        }
    }
    match build.status() {
        Ok(status) if status.success() => {}
        Ok(status) => fail(&format!("building the embedded guests (transforms/guests) failed: {status}")),
        Err(e) => fail(&format!("cannot run cargo to build the embedded guests: {e}")),
    }
    for (_, file) in GUESTS {
        copy(&target_dir.join(TARGET).join("release").join(file), &out_dir.join(file));
    }
}

/// `<target dir>/wasm-guests`: the target dir is the nearest ancestor of `OUT_DIR`
/// (`<target dir>/[<triple>/]<profile>/build/<package>-<hash>/out`) holding cargo's
/// `CACHEDIR.TAG`; `$OUT_DIR/guests` if there is none.
fn guests_target_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .skip(3)
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(|dir| dir.join("wasm-guests"))
        .unwrap_or_else(|| out_dir.join("guests"))
}

fn copy(from: &Path, to: &Path) {
    if let Err(e) = std::fs::copy(from, to) {
        fail(&format!("cannot copy the component {} to {}: {e}", from.display(), to.display()));
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    println!("cargo:warning={message}");
    std::process::exit(1);
}
