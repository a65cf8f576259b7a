//! `sluice replay --endpoint …` and `sluice redrive`: start, list, watch and cancel the
//! reprocessing tasks of a running server ([`crate::api::reprocessing`]) over its API,
//! signed like any client.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};

use crate::api::reprocessing::TARGET_PREFIX;
use crate::client::KinesisClient;

/// The region and key pair a command signs with (the AWS CLI's environment variables).
#[derive(Debug, Clone, clap::Args)]
pub struct Signing {
    /// Region to sign for.
    #[arg(long, env = "AWS_DEFAULT_REGION", default_value = "us-east-1")]
    pub region: String,
    /// Access key id.
    #[arg(long, env = "AWS_ACCESS_KEY_ID", default_value = "sluice")]
    pub access_key_id: String,
    /// Secret access key.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", default_value = "sluice-secret", hide_env_values = true)]
    pub secret_access_key: String,
}

impl Signing {
    /// A client of `endpoint` signing with these.
    pub fn client(&self, endpoint: &str) -> KinesisClient {
        KinesisClient::new(endpoint, &self.region, &self.access_key_id, &self.secret_access_key)
    }
}

/// Where the server is and the key pair to sign with.
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// The server (`http://host:port`).
    #[arg(long, default_value = "http://127.0.0.1:4567")]
    pub endpoint: String,
    /// The region and key pair.
    #[command(flatten)]
    pub signing: Signing,
}

impl Connection {
    fn client(&self) -> KinesisClient {
        self.signing.client(&self.endpoint)
    }
}

/// What to do with tasks already started.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TaskAction {
    /// The server's replays and redrives, newest first: id, status, progress.
    List {
        /// The server and the key pair.
        #[command(flatten)]
        connection: Connection,
        /// Only the tasks of this delivery stream.
        #[arg(long)]
        delivery_stream: Option<String>,
        /// The tasks as JSON (ListTasks' answer) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Follows a task with a progress bar until it ends (Ctrl-C detaches; the task goes on).
    Watch {
        /// The task's id (`replay-…` or `redrive-…`).
        task_id: String,
        /// The server and the key pair.
        #[command(flatten)]
        connection: Connection,
    },
    /// Cancels a task: it stops after the buffer or error object it is landing.
    Cancel {
        /// The task's id.
        task_id: String,
        /// The server and the key pair.
        #[command(flatten)]
        connection: Connection,
    },
}

async fn call(connection: &Connection, operation: &str, body: Value) -> Result<Value, String> {
    connection
        .client()
        .call(&format!("{TARGET_PREFIX}.{operation}"), "firehose", &body)
        .await
        .map_err(|e| e.to_string())
}

/// Starts a task with `operation` and `body`, prints its id, and unless `detach` watches it.
pub async fn start(connection: &Connection, operation: &str, body: Value, detach: bool) -> ExitCode {
    match call(connection, operation, body).await {
        Ok(answer) => {
            let id = answer["Task"]["TaskId"].as_str().unwrap_or_default().to_owned();
            println!("{id}");
            if detach {
                eprintln!("started; follow it with: sluice replay watch {id} --endpoint {}", connection.endpoint);
                return ExitCode::SUCCESS;
            }
            watch(connection, &id).await
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a [`TaskAction`].
pub async fn act(action: &TaskAction) -> ExitCode {
    match action {
        TaskAction::List { connection, delivery_stream, json: as_json } => {
            let body = match delivery_stream {
                Some(d) => json!({ "DeliveryStreamName": d }),
                None => json!({}),
            };
            match call(connection, "ListTasks", body).await {
                Ok(answer) if *as_json => {
                    println!("{answer}");
                    ExitCode::SUCCESS
                }
                Ok(answer) => {
                    println!(
                        "{:<25} {:<10} {:<24} {:>12} {:>12}",
                        "TASK", "STATUS", "DELIVERY STREAM", "DONE", "TOTAL"
                    );
                    for t in answer["Tasks"].as_array().into_iter().flatten() {
                        let total = t["Total"].as_u64().unwrap_or(0);
                        println!(
                            "{:<25} {:<10} {:<24} {:>12} {:>12}",
                            t["TaskId"].as_str().unwrap_or(""),
                            t["Status"].as_str().unwrap_or(""),
                            t["DeliveryStreamName"].as_str().unwrap_or(""),
                            total - t["Remaining"].as_u64().unwrap_or(0).min(total),
                            total
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        TaskAction::Watch { task_id, connection } => watch(connection, task_id).await,
        TaskAction::Cancel { task_id, connection } => {
            match call(connection, "CancelTask", json!({ "TaskId": task_id })).await {
                Ok(_) => {
                    println!("{task_id}: cancelling (it stops after what it is landing)");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// One line on what a finished task did.
fn summary(task: &Value) -> String {
    let id = task["TaskId"].as_str().unwrap_or("");
    let status = task["Status"].as_str().unwrap_or("");
    let mut line = match (&task["Replay"]["Report"], &task["Redrive"]["Report"]) {
        (r, _) if r.is_object() => format!(
            "{id} {status}: {} records ({} bytes) read, {} objects, {} delivered, {} dropped, {} failed, {} no longer retained",
            r["Records"], r["Bytes"], r["Objects"], r["Delivered"], r["Dropped"], r["Failed"], r["Skipped"]
        ),
        (_, r) => format!(
            "{id} {status}: {} error objects redriven ({} taken before), {} records, {} delivered, {} failed again, {} unreadable",
            r["Objects"], r["Skipped"], r["Records"], r["Delivered"], r["Failed"], r["Unreadable"]
        ),
    };
    if let Some(f) = task["Failure"].as_str() {
        line.push_str(&format!(" ({f})"));
    }
    line
}

/// Follows task `id` until it ends; exits with failure when it failed.
pub async fn watch(connection: &Connection, id: &str) -> ExitCode {
    let bar = indicatif::ProgressBar::new(0);
    let replay = id.starts_with("replay-");
    let template = if replay {
        "{prefix} [{bar:40}] {pos}/{len} records {msg} ETA {eta}"
    } else {
        "{prefix} [{bar:40}] {pos}/{len} error objects {msg} ETA {eta}"
    };
    bar.set_style(indicatif::ProgressStyle::with_template(template).expect("a template"));
    bar.set_prefix(id.to_owned());
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let task = match call(connection, "DescribeTask", json!({ "TaskId": id })).await {
            Ok(answer) => answer["Task"].clone(),
            Err(e) => {
                bar.abandon();
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        let total = task["Total"].as_u64().unwrap_or(0);
        bar.set_length(total);
        bar.set_position(total - task["Remaining"].as_u64().unwrap_or(0).min(total));
        let bytes = task["Replay"]["Report"]["Bytes"].as_u64().or(task["Redrive"]["Report"]["Bytes"].as_u64());
        bar.set_message(format!("{:.1} MB", bytes.unwrap_or(0) as f64 / 1e6));
        match task["Status"].as_str() {
            Some("RUNNING") => {}
            Some(status) => {
                bar.finish();
                println!("{}", summary(&task));
                return if status == "FAILED" { ExitCode::FAILURE } else { ExitCode::SUCCESS };
            }
            None => {
                bar.abandon();
                eprintln!("the server answered no task");
                return ExitCode::FAILURE;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = &mut interrupted => {
                bar.abandon();
                eprintln!("detached; {id} goes on (sluice replay watch {id}, or cancel {id})");
                return ExitCode::SUCCESS;
            }
        }
    }
}
