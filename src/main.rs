//! The `sluice` binary. Its commands (`serve`, `demo`, `replay`, `tail`) arrive with the
//! Kinesis API, Firehose and demo issues; today the workspace holds the storage engine.

fn main() {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        Some("--version" | "-V") => println!("sluice {}", env!("CARGO_PKG_VERSION")),
        _ => {
            eprintln!(
                "sluice {}: no commands yet; the storage engine is the crate sluice-engine",
                env!("CARGO_PKG_VERSION")
            );
            std::process::exit(2);
        }
    }
}
