#!/usr/bin/env bash
# Drives a real `sluice serve` with the AWS SDK for JavaScript v3 (@aws-sdk/client-kinesis and
# client-firehose from npm, installed into a cache): tests/clients/js-kinesis.mjs once in the
# Kinesis client's default transport (HTTP/2, h2c on an http:// endpoint), once over
# HTTP/1.1, and once in the default transport over HTTPS (HTTP/2 by ALPN) against a second
# server started with --tls-self-signed; then the browser build of the SDK in headless Chromium
# (tests/clients/browser-kinesis.mjs: a page on another origin puts records through CORS).
# Prints "jssdk: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${SLUICE_CACHE_DIR:-$HOME/.cache/sluice}"
modules="$cache/npm/node_modules"
# The version the test was written against; bump it here.
version=3.1143.0
# The browser test's bundler and Chromium driver (playwright-core never downloads a browser).
esbuild=0.25.12 playwright=1.65.1
installed() { node -p "require('$modules/$1/package.json').version" 2>/dev/null; }
if [ "$(installed @aws-sdk/client-kinesis)" != "$version" ] || [ "$(installed esbuild)" != "$esbuild" ] \
  || [ "$(installed playwright-core)" != "$playwright" ]; then
  mkdir -p "$cache/npm"
  [ -f "$cache/npm/package.json" ] || echo '{"name":"sluice-clients","private":true}' >"$cache/npm/package.json"
  (cd "$cache/npm" && npm install --no-audit --no-fund --silent \
    "@aws-sdk/client-kinesis@$version" "@aws-sdk/client-firehose@$version" "@smithy/node-http-handler" \
    "esbuild@$esbuild" "playwright-core@$playwright")
fi

# The test build made target/debug/sluice already (see awscli-smoke.sh for why not cargo build).
cargo test --workspace --locked --no-run --quiet
data=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
page_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf 'stream_transition_ms = 0\ncors_allowed_origins = ["http://127.0.0.1:%s"]\n[lake]\nurl = "file://%s/lake"\n' \
  "$page_port" "$data" >"$data.toml"
target/debug/sluice serve --config "$data.toml" --bind "127.0.0.1:$port" --data-dir "$data" >"$data.log" 2>&1 &
pid=$!
tls_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$data-tls"
target/debug/sluice serve --tls-self-signed --config "$data.toml" --bind "127.0.0.1:$tls_port" --data-dir "$data-tls" \
  >"$data-tls.log" 2>&1 &
tls_pid=$!
trap 'kill $pid $tls_pid 2>/dev/null; wait $pid $tls_pid 2>/dev/null; rm -rf "$data" "$data.log" "$data.toml" "$data-tls"*' EXIT
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
ca=""
for _ in $(seq 100); do
  ca=$(sed -n 's/^TLS certificate authority: //p' "$data-tls.log")
  [ -n "$ca" ] && (echo >"/dev/tcp/127.0.0.1/$tls_port") 2>/dev/null && break
  sleep 0.1
done

passed=0 failed=0
for http1 in 0 1; do
  if SLUICE_JS_HTTP1=$http1 SLUICE_NODE_MODULES="$modules" NODE_NO_WARNINGS=1 \
    node tests/clients/js-kinesis.mjs "http://127.0.0.1:$port" sluice sluice-secret; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "jssdk (SLUICE_JS_HTTP1=$http1) failed; server log:"
    tail -20 "$data.log"
  fi
done
# HTTPS, default transport: Node's HTTP/2 client negotiates h2 by ALPN; it trusts the
# generated authority through NODE_EXTRA_CA_CERTS.
if NODE_EXTRA_CA_CERTS="$ca" SLUICE_NODE_MODULES="$modules" NODE_NO_WARNINGS=1 \
  node tests/clients/js-kinesis.mjs "https://localhost:$tls_port" sluice sluice-secret; then
  passed=$((passed + 1))
else
  failed=$((failed + 1))
  echo "jssdk (https) failed; server log:"
  tail -20 "$data-tls.log"
fi
if SLUICE_NODE_MODULES="$modules" NODE_NO_WARNINGS=1 \
  node tests/clients/browser-kinesis.mjs "http://127.0.0.1:$port" sluice sluice-secret "$page_port"; then
  passed=$((passed + 1))
else
  failed=$((failed + 1))
  echo "jssdk (browser) failed; server log:"
  tail -20 "$data.log"
fi
echo "jssdk: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
