#!/usr/bin/env bash
# Drives a real `sluice serve` with the AWS CLI (installed from PyPI into a cached venv):
# create-stream, put-record, get-shard-iterator, get-records, split-shard, delete-stream, STS
# get-caller-identity, then a Firehose delivery stream into a folder: create-delivery-stream,
# describe-delivery-stream, put-record-batch; SQS create-queue, send-message, receive-message;
# boto3 (same venv) runs
# tests/clients/boto3_kinesis.py; last, a second server with --tls-self-signed, which the CLI
# reaches over HTTPS with --ca-bundle. Prints "awscli: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${SLUICE_CACHE_DIR:-$HOME/.cache/sluice}"
venv="$cache/awscli-venv"
# pyarrow and cramjam read the delivered Parquet and compressed objects back
# (tests/clients/firehose_conversion.py), PyIceberg the Iceberg tables
# (tests/clients/iceberg_tables.py), independently of Sluice's own readers.
# cryptography checks the signatures of SNS's messages (tests/clients/sns.py).
if [ ! -x "$venv/bin/aws" ] || ! "$venv/bin/python" -c 'import boto3, pyarrow, cramjam, pyiceberg.catalog.sql, cryptography' 2>/dev/null; then
  mkdir -p "$cache"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check awscli boto3 pyarrow cramjam 'pyiceberg[sql-sqlite,pyarrow]' cryptography
fi

# `cargo test --workspace` already built target/debug/sluice; `cargo build --bin sluice` would
# resolve features without the dev-dependencies and rebuild every crate a second time.
cargo test --workspace --locked --no-run --quiet
data=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$data-schemas"
# Subscriptions end after 2 s (AWS: 5 minutes), so clients' resubscriptions are exercised.
printf 'schema_dir = "%s-schemas"\nsubscription_lifetime_ms = 2000\n[lake]\nurl = "file://%s/lake"\n' "$data" "$data" >"$data.toml"
# An authority for tests/clients/sns.py's https endpoint, which this server trusts (its
# SSL_CERT_FILE); nothing else of this server makes TLS connections.
mkdir -p "$data-certs"
"$venv/bin/python" tests/clients/make_ca.py "$data-certs"
SSL_CERT_FILE="$data-certs/ca.pem" target/debug/sluice serve --config "$data.toml" --bind "127.0.0.1:$port" --data-dir "$data" >"$data.log" 2>&1 &
pid=$!
tls_pid=""
trap 'kill $pid $tls_pid 2>/dev/null; wait $pid $tls_pid 2>/dev/null; rm -rf "$data" "$data.log" "$data.toml" "$data-tls"* "$data-schemas" "$data-certs"' EXIT

export AWS_ACCESS_KEY_ID=sluice AWS_SECRET_ACCESS_KEY=sluice-secret AWS_DEFAULT_REGION=us-east-1 AWS_PAGER=""
aws() { "$venv/bin/aws" --endpoint-url "http://127.0.0.1:$port" "$@"; }
for _ in $(seq 100); do aws kinesis list-streams >/dev/null 2>&1 && break; sleep 0.1; done

passed=0 failed=0
check() { # name, got, want
  if [ "$2" = "$3" ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "awscli $1: got '$2', want '$3'"; fi
}

aws kinesis create-stream --stream-name cli --shard-count 2
# A new stream is CREATING for stream_transition_ms (100 ms by default), as on AWS.
for _ in $(seq 50); do
  [ "$(aws kinesis describe-stream-summary --stream-name cli --query StreamDescriptionSummary.StreamStatus --output text)" = ACTIVE ] && break
  sleep 0.1
done
check create-stream "$(aws kinesis describe-stream-summary --stream-name cli --query StreamDescriptionSummary.OpenShardCount --output text)" 2
# CLI v1 sends the --data text base64-encoded; "k" hashes into the second half of the key space.
put=$(aws kinesis put-record --stream-name cli --partition-key k --data hello --query '[ShardId,SequenceNumber]' --output text)
shard=${put%%$'\t'*}
seq=${put##*$'\t'}
check put-record "$shard" shardId-000000000001
it=$(aws kinesis get-shard-iterator --stream-name cli --shard-id "$shard" --shard-iterator-type AT_SEQUENCE_NUMBER \
  --starting-sequence-number "$seq" --query ShardIterator --output text)
check get-shard-iterator "$([ -n "$it" ] && echo issued)" issued
got=$(aws kinesis get-records --shard-iterator "$it" --query 'Records[0].[SequenceNumber,PartitionKey,Data]' --output text)
check get-records "$got" "$seq"$'\t'k$'\t'aGVsbG8=
aws kinesis split-shard --stream-name cli --shard-to-split shardId-000000000000 \
  --new-starting-hash-key 85070591730234615865843651857942052864
for _ in $(seq 50); do
  [ "$(aws kinesis describe-stream-summary --stream-name cli --query StreamDescriptionSummary.StreamStatus --output text)" = ACTIVE ] && break
  sleep 0.1
done
check split-shard "$(aws kinesis describe-stream-summary --stream-name cli --query StreamDescriptionSummary.OpenShardCount --output text)" 3
aws kinesis delete-stream --stream-name cli
for _ in $(seq 50); do
  aws kinesis describe-stream-summary --stream-name cli >/dev/null 2>&1 || break
  sleep 0.1
done
check delete-stream "$(aws kinesis list-streams --query 'length(StreamNames)' --output text)" 0
check sts-get-caller-identity "$(aws sts get-caller-identity --query Account --output text)" 000000000000

aws firehose create-delivery-stream --delivery-stream-name cli-lake --extended-s3-destination-configuration \
  '{"RoleARN":"arn:aws:iam::000000000000:role/r","BucketARN":"arn:aws:s3:::lake","Prefix":"cli/",
    "BufferingHints":{"SizeInMBs":1,"IntervalInSeconds":0},
    "ProcessingConfiguration":{"Enabled":true,"Processors":[{"Type":"AppendDelimiterToRecord"}]}}' >/dev/null
# CREATING for stream_transition_ms (100 ms by default), then ACTIVE, as on AWS.
for _ in $(seq 50); do
  [ "$(aws firehose describe-delivery-stream --delivery-stream-name cli-lake --query DeliveryStreamDescription.DeliveryStreamStatus --output text)" = ACTIVE ] && break
  sleep 0.1
done
check describe-delivery-stream \
  "$(aws firehose describe-delivery-stream --delivery-stream-name cli-lake --query DeliveryStreamDescription.DeliveryStreamStatus --output text)" ACTIVE
# CLI v1 base64-encodes blob text, as for kinesis put-record.
check put-record-batch "$(aws firehose put-record-batch --delivery-stream-name cli-lake --records '[{"Data":"one"},{"Data":"two"}]' --query FailedPutCount --output text)" 0
landed=""
for _ in $(seq 100); do
  landed=$(find "$data/lake/lake/cli" -type f -exec cat {} + 2>/dev/null || true)
  [ -n "$landed" ] && break
  sleep 0.1
done
check firehose-delivery "$landed" $'one\ntwo'
# SQS (AWS JSON 1.0) from the CLI.
qurl=$(aws sqs create-queue --queue-name cli-queue --query QueueUrl --output text)
check sqs-create-queue "$qurl" "http://127.0.0.1:$port/000000000000/cli-queue"
aws sqs send-message --queue-url "$qurl" --message-body "from the cli" >/dev/null
check sqs-receive-message "$(aws sqs receive-message --queue-url "$qurl" --query 'Messages[0].Body' --output text)" "from the cli"
check sqs-missing-queue "$(aws sqs get-queue-url --queue-name none 2>&1 | grep -o 'AWS.SimpleQueueService.NonExistentQueue' || true)" \
  AWS.SimpleQueueService.NonExistentQueue
# SNS (the query protocol) from the CLI: a topic fanning out to the queue above.
topic=$(aws sns create-topic --name cli-topic --query TopicArn --output text)
check sns-create-topic "$topic" arn:aws:sns:us-east-1:000000000000:cli-topic
aws sns subscribe --topic-arn "$topic" --protocol sqs --notification-endpoint arn:aws:sqs:us-east-1:000000000000:cli-queue \
  --attributes RawMessageDelivery=true >/dev/null
aws sns publish --topic-arn "$topic" --message "through the topic" >/dev/null
check sns-publish "$(aws sqs receive-message --queue-url "$qurl" --wait-time-seconds 5 --query 'Messages[0].Body' --output text)" \
  "through the topic"
check boto3 "$("$venv/bin/python" tests/clients/boto3_kinesis.py "http://127.0.0.1:$port" sluice sluice-secret 2>&1 | tail -1)" "boto3: ok"
# Firehose data correctness (issue 22's table), read back with pyarrow; prints its own line.
conversion_failed=0
if ! "$venv/bin/python" tests/clients/firehose_conversion.py "http://127.0.0.1:$port" sluice sluice-secret \
  "$data/lake" "$data-schemas"; then
  conversion_failed=1
  echo "conversion cases failed; server log:"
  tail -5 "$data.log"
fi
# Every operation of botocore's Kinesis and Firehose models, and SubscribeToShard across a
# split and a merge; prints its own line.
operations_failed=0
if ! "$venv/bin/python" tests/clients/operations.py "http://127.0.0.1:$port" sluice sluice-secret; then
  operations_failed=1
  echo "operations failed; server log:"
  tail -5 "$data.log"
fi

# SQS through boto3: every operation of botocore's model, and their behaviour; prints its own line.
sqs_failed=0
if ! "$venv/bin/python" tests/clients/sqs.py "http://127.0.0.1:$port" sluice sluice-secret; then
  sqs_failed=1
  echo "sqs failed; server log:"
  tail -5 "$data.log"
fi

# SQS's older query protocol through boto3 1.34.22 (the last before JSON), in a venv of its own.
qvenv="$cache/sqs-query-venv"
if ! "$qvenv/bin/python" -c 'import boto3; assert boto3.__version__ == "1.34.22"' 2>/dev/null; then
  [ -x "$qvenv/bin/python" ] || python3 -m venv "$qvenv"
  "$qvenv/bin/pip" install --quiet --disable-pip-version-check 'boto3==1.34.22' 'botocore==1.34.22'
fi
sqs_query_failed=0
if ! "$qvenv/bin/python" tests/clients/sqs_query.py "http://127.0.0.1:$port" sluice sluice-secret; then
  sqs_query_failed=1
  echo "sqs-query failed; server log:"
  tail -5 "$data.log"
fi

# The AWS CLI calls every SQS and SNS operation of its own models; prints its own line.
cli_operations_failed=0
if ! "$venv/bin/python" tests/clients/cli_operations.py "$venv/bin/aws" "http://127.0.0.1:$port"; then
  cli_operations_failed=1
  echo "cli-operations failed; server log:"
  tail -5 "$data.log"
fi

# SNS through boto3: every operation, fan-out through filter policies to queues and to an HTTP
# endpoint the script serves (signatures checked), retries, FIFO; prints its own line.
sns_failed=0
if ! "$venv/bin/python" tests/clients/sns.py "http://127.0.0.1:$port" sluice sluice-secret "$data/lake" "$data-certs"; then
  sns_failed=1
  echo "sns failed; server log:"
  tail -5 "$data.log"
fi

# A Kinesis queue worked by 8 competing boto3 processes over all 420,768 Beijing readings,
# the server SIGKILLed 10 times under them; prints its own line.
queues_failed=0
qdir=$(mktemp -d)
if ! "$venv/bin/python" tests/clients/queue_workers.py target/debug/sluice "$qdir" \
  examples/data/beijing_multisite_air_quality_2013_2017.jsonl.gz 0 10; then
  queues_failed=1
  echo "queue workers failed; server log:"
  tail -20 "$qdir/server.log"
fi
rm -rf "$qdir"

# An SQS queue worked by 8 competing boto3 processes over all 420,768 Beijing readings, 1% never
# deleted (dead-lettered, then moved back by a move task), the server SIGKILLed 10 times under
# them; prints its own line.
sqs_workers_failed=0
wdir=$(mktemp -d)
if ! "$venv/bin/python" tests/clients/sqs_workers.py target/debug/sluice "$wdir" \
  examples/data/beijing_multisite_air_quality_2013_2017.jsonl.gz 0 10; then
  sqs_workers_failed=1
  echo "sqs workers failed; server log:"
  tail -20 "$wdir/server.log"
fi
rm -rf "$wdir"

# Firehose into an Iceberg table that PyIceberg made (day and bucket partitions, a column
# added half-way), the server SIGKILLed 10 times; PyIceberg reads it back; prints its own line.
iceberg_failed=0
idir=$(mktemp -d)
if ! "$venv/bin/python" tests/clients/iceberg_tables.py target/debug/sluice "$idir" \
  examples/data/beijing_multisite_air_quality_2013_2017.jsonl.gz 60000 10; then
  iceberg_failed=1
  echo "iceberg tables failed; server log:"
  tail -20 "$idir/server.log"
fi
rm -rf "$idir"

# Replay and redrive on a live server (sluice replay --endpoint, sluice redrive), the server
# SIGKILLed mid-task; pyarrow counts what landed; prints its own line.
reprocess_failed=0
rdir=$(mktemp -d)
if ! "$venv/bin/python" tests/clients/reprocessing.py target/debug/sluice "$rdir" \
  examples/data/beijing_multisite_air_quality_2013_2017.jsonl.gz 0; then
  reprocess_failed=1
  echo "reprocessing failed; server log:"
  tail -20 "$rdir/server.log"
fi
rm -rf "$rdir"

# HTTPS: --tls-self-signed makes a local authority under the data directory and prints its path.
. scripts/serve-lib.sh
tls_port=$(free_port)
start_tls_sluice "$data.toml" "$data-tls" "$tls_port"
aws_tls() { "$venv/bin/aws" --endpoint-url "https://localhost:$tls_port" --ca-bundle "$ca" "$@"; }
aws_tls kinesis create-stream --stream-name tls --shard-count 1
for _ in $(seq 50); do
  [ "$(aws_tls kinesis describe-stream-summary --stream-name tls --query StreamDescriptionSummary.StreamStatus --output text)" = ACTIVE ] && break
  sleep 0.1
done
check https-put-record "$(aws_tls kinesis put-record --stream-name tls --partition-key k --data aGk= --query ShardId --output text)" shardId-000000000000
check https-list-streams "$(aws_tls kinesis list-streams --query 'StreamNames[0]' --output text)" tls
# Without the authority the CLI refuses the certificate.
check https-untrusted "$("$venv/bin/aws" --endpoint-url "https://localhost:$tls_port" kinesis list-streams >/dev/null 2>&1 && echo trusted || echo refused)" refused

echo "awscli: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$conversion_failed" -eq 0 ] && [ "$operations_failed" -eq 0 ] && [ "$queues_failed" -eq 0 ] \
  && [ "$sqs_failed" -eq 0 ] && [ "$sqs_query_failed" -eq 0 ] && [ "$cli_operations_failed" -eq 0 ] && [ "$sns_failed" -eq 0 ] && [ "$sqs_workers_failed" -eq 0 ] && [ "$iceberg_failed" -eq 0 ] && [ "$reprocess_failed" -eq 0 ]
