#!/usr/bin/env bash
# The project's one test command: formatting, lints, and every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all --check
cargo fmt --all --check --manifest-path transforms/guests/Cargo.toml
cargo clippy --workspace --all-targets --locked -- -D warnings
# The guest components (example transforms, test components) are WebAssembly.
cargo clippy --locked --target wasm32-wasip2 --manifest-path transforms/guests/Cargo.toml \
  --target-dir target/wasm-guests -- -D warnings

log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
# The delivery and table suites once more against Garage, when a Garage binary is given (CI
# installs one).
if [ -n "${SLUICE_GARAGE_BIN:-}" ]; then
  SLUICE_S3_BACKEND=garage cargo test --workspace --locked --test it -- firehose tables 2>&1 | tee -a "$log"
fi
# The AWS CLI against a running `sluice serve` (installs awscli into a cached venv).
scripts/awscli-smoke.sh | tee -a "$log"
# The JavaScript SDK v3 over its default HTTP/2 transport (h2c and HTTPS) and over HTTP/1.1,
# and its browser build in headless Chromium through CORS (npm, cached).
scripts/js-sdk-smoke.sh | tee -a "$log"
# One closing line for the whole run: cargo prints a result per test binary, and the last
# one is often a crate with no doc tests.
awk '/^test result:/ { p += $4; f += $6; s += $8 }
     /^(awscli|jssdk|conversion|operations|cli-operations|queues|sqs|sqs-query|sns|iceberg|reprocess): / { p += $2; f += $4 }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$log"
