//! The documented example configuration parses, and bad configurations are refused.

use sluice::config::{Auth, Config, ConfigError, Fsync};

fn repo_file(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn the_example_config_parses_and_states_the_defaults() {
    let c = Config::load(&repo_file("deploy/sluice.toml")).unwrap();
    let d = Config::default();
    assert_eq!(
        (c.bind, &c.data_dir, c.shard_limit, c.fsync, c.auth),
        (d.bind, &d.data_dir, d.shard_limit, d.fsync, d.auth)
    );
    assert_eq!(c.access_keys, d.access_keys);
    assert_eq!(c.fsync_interval_ms, d.fsync_interval_ms);
    assert_eq!(c.stream_transition_ms, d.stream_transition_ms);
    assert_eq!((c.throttle, c.throttle_rates), (d.throttle, d.throttle_rates));
    assert_eq!((&c.lake, &c.schema_dir, &c.delivery_streams), (&d.lake, &d.schema_dir, &d.delivery_streams));
    assert_eq!(c.server, d.server);
    assert_eq!(c.tables, d.tables);
}

#[test]
fn delivery_streams_declared_in_the_config_become_create_requests() {
    let c = load(
        r#"
[[delivery_streams]]
name = "telemetry-lake"
kinesis_stream = "telemetry"
bucket = "lake"
prefix = "t/!{partitionKeyFromQuery:station}/"
error_output_prefix = "e/!{firehose:error-output-type}/"
format = "parquet"
schema = "beijing/air_quality"
partition_query = "{station: .station}"
"#,
    )
    .unwrap();
    let r = c.delivery_streams[0].create_request("us-east-1", "000000000000");
    assert_eq!(r["DeliveryStreamType"], "KinesisStreamAsSource");
    assert_eq!(
        r["KinesisStreamSourceConfiguration"]["KinesisStreamARN"],
        "arn:aws:kinesis:us-east-1:000000000000:stream/telemetry"
    );
    let d = &r["ExtendedS3DestinationConfiguration"];
    assert_eq!(d["BucketARN"], "arn:aws:s3:::lake");
    assert_eq!(d["BufferingHints"]["IntervalInSeconds"], 60);
    assert_eq!(d["DynamicPartitioningConfiguration"]["Enabled"], true);
    assert_eq!(d["DataFormatConversionConfiguration"]["SchemaConfiguration"]["TableName"], "air_quality");
    let twice =
        load("[[delivery_streams]]\nname = \"a\"\nbucket = \"b\"\n[[delivery_streams]]\nname = \"a\"\nbucket = \"c\"");
    assert!(twice.unwrap_err().to_string().contains("declared twice"));
    let typo = load("[[delivery_streams]]\nname = \"a\"\nbucket = \"b\"\nbufer_size_mb = 3").unwrap_err().to_string();
    assert!(typo.contains("unknown field `bufer_size_mb`"), "{typo}");
    assert!(load("[lake]\nurl = \"ftp://x\"").unwrap_err().to_string().contains("file:// or s3://"));
}

fn load(text: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path)
}

#[test]
fn bad_configs_are_refused_with_the_reason() {
    let unknown = load("bnid = \"127.0.0.1:1\"").unwrap_err().to_string();
    assert!(unknown.contains("unknown field `bnid`"), "{unknown}");
    let open = load("bind = \"0.0.0.0:4567\"\nauth = \"none\"").unwrap_err().to_string();
    assert!(open.contains("only allowed on a loopback address"), "{open}");
    let keyless = load("access_keys = []").unwrap_err().to_string();
    assert!(keyless.contains("needs at least one [[access_keys]]"), "{keyless}");
    assert!(load("fsync = \"sometimes\"").is_err());
    let ok = load("fsync = \"always\"\nauth = \"none\"").unwrap();
    assert_eq!((ok.fsync, ok.auth), (Fsync::Always, Auth::None));
}

#[test]
fn every_example_config_in_the_repository_parses() {
    let mut checked = Vec::new();
    for dir in ["deploy", "examples"] {
        for entry in std::fs::read_dir(repo_file(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
                    .arg("check-config")
                    .arg(&path)
                    // The container configs listen on every interface: their keys come from
                    // the environment, as compose and Kubernetes give them.
                    .env("SLUICE_ACCESS_KEY_ID", "container-key")
                    .env("SLUICE_SECRET_ACCESS_KEY", "a-secret-from-the-environment")
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
                checked.push(path.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
    }
    // The configurations the Kubernetes manifests carry in their ConfigMaps (`sluice.toml: |`
    // and the lines indented under it).
    for name in ["sluice.yaml", "sluice-cluster.yaml"] {
        let yaml = std::fs::read_to_string(repo_file(&format!("deploy/kubernetes/{name}"))).unwrap();
        let mut lines = yaml.lines().skip_while(|l| l.trim() != "sluice.toml: |").skip(1);
        let toml: Vec<&str> = lines.by_ref().take_while(|l| l.starts_with("    ")).map(|l| &l[4..]).collect();
        assert!(!toml.is_empty(), "{name} carries a sluice.toml");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, toml.join("\n")).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("check-config")
            .arg(&path)
            .env("SLUICE_ACCESS_KEY_ID", "container-key")
            .env("SLUICE_SECRET_ACCESS_KEY", "a-secret-from-the-environment")
            .env("SLUICE_NODE_ID", "sluice-1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    }
    checked.sort();
    assert_eq!(checked, ["sluice-cluster.toml", "sluice-container.toml", "sluice-minio.toml", "sluice.toml"]);
    // Without keys from the environment, a container config would serve the public default
    // pair on every interface: refused.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("check-config")
        .arg(repo_file("deploy/sluice-container.toml"))
        .env_remove("SLUICE_ACCESS_KEY_ID")
        .env_remove("SLUICE_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("default key pair"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
