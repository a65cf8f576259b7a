#!/usr/bin/env bash
# Drives a real `sluice serve` with the AWS SDK for JavaScript v3 (@aws-sdk/client-kinesis and
# client-firehose from npm, installed into a cache): tests/clients/js-kinesis.mjs once in the
# Kinesis client's default transport (HTTP/2, h2c on an http:// endpoint), once over
# HTTP/1.1, and once in the default transport over HTTPS (HTTP/2 by ALPN) against a second
# server started with --tls-self-signed; then the browser build of the SDK in headless Chromium
# (tests/clients/browser-kinesis.mjs: a page on another origin puts records through CORS), the
# SQS client over HTTP/1.1 and HTTP/2 (tests/clients/js-sqs.mjs), and the web console
# (tests/clients/console.mjs).
# Prints "jssdk: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${SLUICE_CACHE_DIR:-$HOME/.cache/sluice}"
modules="$cache/npm/node_modules"
# The version the test was written against; bump it here.
version=3.1143.0
# The browser test's bundler and Chromium driver (playwright-core never downloads a browser).
esbuild=0.25.12 playwright=1.65.1
# Grafana's dashboard schema (its TypeScript types, generated from the schema Grafana keeps)
# and the compiler that checks deploy/grafana/dashboards/sluice.json against it.
grafana_schema=13.2.3 typescript=7.0.2
installed() { node -p "require('$modules/$1/package.json').version" 2>/dev/null; }
if [ "$(installed @aws-sdk/client-kinesis)" != "$version" ] || [ "$(installed @aws-sdk/client-sqs)" != "$version" ] \
  || [ "$(installed esbuild)" != "$esbuild" ] \
  || [ "$(installed playwright-core)" != "$playwright" ] || [ "$(installed @grafana/schema)" != "$grafana_schema" ] \
  || [ "$(installed typescript)" != "$typescript" ]; then
  mkdir -p "$cache/npm"
  [ -f "$cache/npm/package.json" ] || echo '{"name":"sluice-clients","private":true}' >"$cache/npm/package.json"
  (cd "$cache/npm" && npm install --no-audit --no-fund --silent \
    "@aws-sdk/client-kinesis@$version" "@aws-sdk/client-firehose@$version" "@aws-sdk/client-sqs@$version" \
    "@smithy/node-http-handler" \
    "esbuild@$esbuild" "playwright-core@$playwright" "@grafana/schema@$grafana_schema" "typescript@$typescript")
fi

# The test build made target/debug/sluice already (see awscli-smoke.sh for why not cargo build).
cargo test --workspace --locked --no-run --quiet
. scripts/serve-lib.sh
data=$(mktemp -d)
port=$(free_port)
page_port=$(free_port)
printf 'stream_transition_ms = 0\nsubscription_lifetime_ms = 2000\ncors_allowed_origins = ["http://127.0.0.1:%s"]\n[lake]\nurl = "file://%s/lake"\n' \
  "$page_port" "$data" >"$data.toml"
target/debug/sluice serve --config "$data.toml" --bind "127.0.0.1:$port" --data-dir "$data" >"$data.log" 2>&1 &
pid=$!
tls_pid=""
trap 'kill $pid $tls_pid 2>/dev/null; wait $pid $tls_pid 2>/dev/null; rm -rf "$data" "$data.log" "$data.toml" "$data-tls"*' EXIT
tls_port=$(free_port)
start_tls_sluice "$data.toml" "$data-tls" "$tls_port"
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

export SLUICE_NODE_MODULES="$modules" NODE_NO_WARNINGS=1
passed=0 failed=0
for http1 in 0 1; do
  run_counted "jssdk (SLUICE_JS_HTTP1=$http1)" "$data.log" \
    env SLUICE_JS_HTTP1=$http1 node tests/clients/js-kinesis.mjs "http://127.0.0.1:$port" sluice sluice-secret
done
# HTTPS, default transport: Node's HTTP/2 client negotiates h2 by ALPN; it trusts the
# generated authority through NODE_EXTRA_CA_CERTS.
run_counted "jssdk (https)" "$data-tls.log" \
  env NODE_EXTRA_CA_CERTS="$ca" node tests/clients/js-kinesis.mjs "https://localhost:$tls_port" sluice sluice-secret
# The SQS client (AWS JSON 1.0) in its default transport (HTTP/1.1) and over HTTP/2.
for http2 in 0 1; do
  run_counted "jssdk sqs (SLUICE_JS_HTTP2=$http2)" "$data.log" \
    env SLUICE_JS_HTTP2=$http2 node tests/clients/js-sqs.mjs "http://127.0.0.1:$port" sluice sluice-secret
done
run_counted "jssdk (browser)" "$data.log" \
  node tests/clients/browser-kinesis.mjs "http://127.0.0.1:$port" sluice sluice-secret "$page_port"
# The web console in headless Chromium, with boto3 (from the AWS CLI's venv, which
# awscli-smoke.sh installs) as the producer; screenshots in target/console-screens/.
run_counted "console (browser)" "$data.log" \
  env SLUICE_PYTHON="$cache/awscli-venv/bin/python" node tests/clients/console.mjs "http://127.0.0.1:$port" sluice sluice-secret
# The Grafana dashboard against Grafana's schema: the JSON as a TypeScript object literal typed
# as the schema's Dashboard, so a wrong type, value or unknown member fails to compile.
dashboard_check() {
  local dir
  dir=$(mktemp -d)
  { echo 'import type { Dashboard } from "@grafana/schema";'
    printf 'export const dashboard: Dashboard = '
    cat deploy/grafana/dashboards/sluice.json
    echo ';'
  } >"$dir/dashboard.ts"
  ln -s "$modules" "$dir/node_modules"
  (cd "$dir" && node node_modules/typescript/bin/tsc --noEmit --strict --skipLibCheck --moduleResolution bundler \
    --module esnext --target es2022 dashboard.ts) && echo "grafana dashboard schema: ok"
  local status=$?
  rm -rf "$dir"
  return $status
}
run_counted "grafana dashboard schema" "$data.log" dashboard_check
echo "jssdk: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
