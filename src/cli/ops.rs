//! Service subcommands: `serve`, `topics ensure`, `view rebuild`, `view digest`,
//! `verify-audit` and `openapi`. They read the layered config, not the HTTP API.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use super::{Cli, Cmd, TopicsCmd, ViewCmd};
use crate::cli::ClientError;
use crate::config::Config;
use crate::domain::event::verify_chain;
use crate::log::{Topics, applier, reader, topics};
use crate::view::View;

fn other(e: impl std::fmt::Display) -> ClientError {
    ClientError::Other(e.to_string())
}

fn unavailable(e: impl std::fmt::Display) -> ClientError {
    ClientError::Unavailable(e.to_string())
}

fn runtime() -> Result<tokio::runtime::Runtime, ClientError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(other)
}

/// Sets up `tracing` per the config.
pub fn init_tracing(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MPR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.log.level));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if cfg.log.json {
        b.json().try_init()
    } else {
        b.try_init()
    };
}

fn progress(label: &'static str) -> impl FnMut(u64) {
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    move |n| {
        if tty {
            let rate = n as f64 / started.elapsed().as_secs_f64().max(0.001);
            eprint!("\r{label}: {n} records ({rate:.0}/s)   ");
            let _ = std::io::stderr().flush();
        }
    }
}

/// Runs a service subcommand.
pub fn run(cli: &Cli) -> Result<(), ClientError> {
    let cfg = Config::load(cli.config.as_deref()).map_err(other)?;
    init_tracing(&cfg);
    match &cli.command {
        Cmd::Serve => {
            // Principals and the checks only `serve` needs, before anything starts.
            let mut cfg = cfg.clone();
            cfg.prepare_serve().map_err(other)?;
            let rt = runtime()?;
            rt.block_on(async {
                let listener = tokio::net::TcpListener::bind(&cfg.http.listen)
                    .await
                    .map_err(other)?;
                // SIGINT or SIGTERM: stop gracefully, so the processor's consumer leaves
                // its group and a restarted instance is assigned partitions at once.
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .map_err(other)?;
                let shutdown = async move {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {},
                        _ = term.recv() => {},
                    }
                };
                crate::app::run(cfg, listener, shutdown)
                    .await
                    .map_err(unavailable)
            })
        }
        Cmd::Topics {
            action: TopicsCmd::Ensure,
        } => {
            let created = runtime()?
                .block_on(topics::ensure(&cfg.kafka))
                .map_err(unavailable)?;
            for t in topics::plan(&cfg.kafka) {
                let state = if created.contains(&t.name) {
                    "created"
                } else {
                    "exists"
                };
                outln!("{:<32} partitions={:<4} {state}", t.name, t.partitions);
            }
            Ok(())
        }
        Cmd::View {
            action: ViewCmd::Rebuild { from, path },
        } => {
            let path = path.clone().unwrap_or_else(|| cfg.view.path.clone());
            if path.exists() && std::fs::read_dir(&path).map_err(other)?.next().is_some() {
                return Err(other(format!(
                    "{} is not empty; stop the registry and remove it first",
                    path.display()
                )));
            }
            let view = View::open(&path, cfg.kafka.partitions).map_err(other)?;
            let started = Instant::now();
            let n = match from.as_str() {
                "events" => applier::rebuild_from_events(&cfg.kafka, &view, progress("events")),
                "state" => applier::bootstrap_from_state(&cfg.kafka, &view, progress("state")),
                other_src => {
                    return Err(other(format!(
                        "--from must be events or state, not {other_src:?}"
                    )));
                }
            }
            .map_err(unavailable)?;
            view.flush().map_err(other)?;
            let secs = started.elapsed().as_secs_f64();
            eprintln!();
            outln!(
                "rebuilt {} from {from}: {n} records in {secs:.2}s ({:.0}/s); view_version {} digest {}",
                path.display(),
                n as f64 / secs.max(0.001),
                view.version().token(),
                view.content_digest().map_err(other)?
            );
            Ok(())
        }
        Cmd::View {
            action: ViewCmd::Digest { path },
        } => {
            let view = View::open(path, cfg.kafka.partitions).map_err(other)?;
            outln!(
                "{} {}",
                view.version().token(),
                view.content_digest().map_err(other)?
            );
            Ok(())
        }
        Cmd::VerifyAudit => verify_audit(&cfg, cli.json),
        Cmd::Openapi => {
            outln!(
                "{}",
                serde_json::to_string_pretty(&crate::api::openapi::document()).map_err(other)?
            );
            Ok(())
        }
        _ => Err(other("not a service command")),
    }
}

/// Reads every events partition and the catalog log and verifies their hash chains.
fn verify_audit(cfg: &Config, json_out: bool) -> Result<(), ClientError> {
    let t = Topics::new(&cfg.kafka.topic_prefix);
    let mut logs: Vec<(String, i32)> = (0..cfg.kafka.partitions)
        .map(|p| (t.events.clone(), p))
        .collect();
    logs.push((t.catalog.clone(), 0));
    let mut broken = Vec::new();
    let mut report = Vec::new();
    for (topic, p) in logs {
        let mut events = Vec::new();
        reader::read_to_end(&cfg.kafka, &topic, p, 0, |r| {
            let e = crate::codec::decode_event(r.payload.as_deref().unwrap_or_default()).map_err(
                |e| crate::log::LogError::Corrupt {
                    topic: topic.clone(),
                    partition: p,
                    offset: r.offset,
                    detail: e.to_string(),
                },
            )?;
            events.push(e);
            Ok(())
        })
        .map_err(unavailable)?;
        let records = events.len();
        match verify_chain(&events) {
            Ok(head) => report.push(serde_json::json!({"log": topic, "partition": p, "records": records, "head_seq": head, "ok": true})),
            Err(b) => {
                report.push(serde_json::json!({"log": topic, "partition": p, "records": records, "ok": false, "broken_at_seq": b.seq, "reason": b.reason}));
                broken.push(format!("{topic}/{p}: first broken link at seq {}: {}", b.seq, b.reason));
            }
        }
    }
    if json_out {
        outln!("{}", serde_json::to_string_pretty(&report).map_err(other)?);
    } else {
        for r in &report {
            let status = if r["ok"] == true {
                "ok".to_owned()
            } else {
                format!("BROKEN at seq {}", r["broken_at_seq"])
            };
            outln!(
                "{}/{}  records={}  head_seq={}  {status}",
                r["log"].as_str().unwrap_or(""),
                r["partition"],
                r["records"],
                r["head_seq"]
            );
        }
    }
    if broken.is_empty() {
        Ok(())
    } else {
        Err(ClientError::Rejected {
            code: "AUDIT_CHAIN_BROKEN".into(),
            message: broken.join("; "),
            hint: String::new(),
        })
    }
}
