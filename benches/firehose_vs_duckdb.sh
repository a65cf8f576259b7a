#!/usr/bin/env bash
# The Beijing telemetry (420,768 readings, 83.6 MB of JSON Lines) to Parquet, two ways:
# Sluice end to end (PutRecords over HTTP → Kinesis stream → delivery stream → Parquet files,
# benches/examples/firehose_e2e.rs) and DuckDB's read_json → COPY TO Parquet on the same file,
# what a data engineer would otherwise run. DuckDB comes from PyPI into a cached venv.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${SLUICE_CACHE_DIR:-$HOME/.cache/sluice}/duckdb-venv"
[ -x "$venv/bin/python" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet --disable-pip-version-check duckdb; }
cargo build --release --quiet --locked -p sluice-benches --example firehose_e2e
echo "sluice: $(target/release/examples/firehose_e2e)"
"$venv/bin/python" - <<'PY'
import duckdb, json, os, tempfile, time
src = "examples/data/beijing_multisite_air_quality_2013_2017.jsonl.gz"
out = os.path.join(tempfile.mkdtemp(), "beijing.parquet")
con = duckdb.connect()
con.execute("SET threads = 1")
for threads in (1, 2):
    con.execute(f"SET threads = {threads}")
    t = time.perf_counter()
    con.execute(f"COPY (SELECT * FROM read_json('{src}', format = 'newline_delimited')) TO '{out}' (FORMAT parquet, COMPRESSION snappy)")
    s = time.perf_counter() - t
    rows = con.execute(f"SELECT count(*) FROM '{out}'").fetchone()[0]
    print("duckdb:", json.dumps({"threads": threads, "records": rows, "seconds": s, "records_per_s": rows / s, "mb_per_s": 83567833 / s / 1e6, "duckdb": duckdb.__version__}))
PY
