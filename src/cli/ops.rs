//! Service subcommands: `serve`, `topics ensure`, `view rebuild`, `view digest`,
//! `verify-audit` and `openapi`. They read the layered config, not the HTTP API.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use super::{Cli, Cmd, TopicsCmd, ViewCmd};
use crate::cli::ClientError;
use crate::config::Config;
use crate::domain::checkpoint::{self, Checkpoint};
use crate::domain::event::{FindingKind, audit_log};
use crate::domain::trust::{KeySet, Signer, StateMac};
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
    match &cli.command {
        Cmd::Keygen { out } => return keygen(out, cli.json),
        Cmd::Sign { key, file } => {
            let signer = read_key(key)?;
            let command: serde_json::Value = read_json_file(file)?;
            outln!("{}", crate::codec::sign_json_command(&command, &signer));
            return Ok(());
        }
        Cmd::SignReceipt { key, file } => {
            let signer = read_key(key)?;
            let mut receipt: crate::domain::GateReceipt =
                serde_json::from_value(read_json_file(file)?).map_err(other)?;
            receipt.signature = None;
            receipt.signature = Some(signer.sign(
                crate::domain::trust::RECEIPT_TYPE,
                &crate::domain::trust::receipt_body(&receipt),
            ));
            outln!("{}", serde_json::to_string_pretty(&receipt).map_err(other)?);
            return Ok(());
        }
        _ => {}
    }
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
            let keys = registry_keys(&cfg)?;
            let view = View::open_for_rebuild(&path, cfg.kafka.partitions).map_err(other)?;
            let started = Instant::now();
            let n = match from.as_str() {
                "events" => {
                    applier::rebuild_from_events(&cfg.kafka, &keys, &view, progress("events"))
                }
                "state" => {
                    let registry = cfg.trust.load().map_err(other)?.registry.ok_or_else(|| {
                        other(
                            "a bootstrap from state needs trust.registry_key_file: its records carry a MAC under a key derived from it (a rebuild from events needs only public keys)",
                        )
                    })?;
                    applier::bootstrap_from_state(
                        &cfg.kafka,
                        &StateMac::of(&registry),
                        &view,
                        progress("state"),
                    )
                }
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
        Cmd::View {
            action: ViewCmd::Diff { a, b, limit },
        } => {
            let va = View::open(a, cfg.kafka.partitions).map_err(other)?;
            let vb = View::open(b, cfg.kafka.partitions).map_err(other)?;
            let (count, shown) = va.diff(&vb, *limit).map_err(other)?;
            for d in &shown {
                outln!(
                    "{} {}\n  a: {}\n  b: {}",
                    d.table.name(),
                    printable(&d.key),
                    d.ours.as_deref().map_or("(absent)".into(), printable),
                    d.theirs.as_deref().map_or("(absent)".into(), printable),
                );
            }
            if count == 0 {
                outln!("equal");
                Ok(())
            } else {
                Err(other(format!(
                    "the views differ at {count} keys ({} shown)",
                    shown.len()
                )))
            }
        }
        Cmd::VerifyAudit { checkpoint } => verify_audit(&cfg, checkpoint, cli.json),
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

/// Bytes as text: printable ASCII as is, anything else escaped (`\xNN`).
fn printable(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// Writes a new Ed25519 private key to `out` (PKCS#8 PEM, mode 0600) and prints its id and
/// public key.
fn keygen(out: &std::path::Path, json_out: bool) -> Result<(), ClientError> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(other)?;
    let signer = Signer::from_seed(seed);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(out)
        .map_err(|e| other(format!("cannot create {}: {e}", out.display())))?;
    f.write_all(signer.to_pem().as_bytes()).map_err(other)?;
    if json_out {
        outln!(
            "{}",
            serde_json::json!({"key_id": signer.key_id(), "public_key": signer.public_hex(), "file": out})
        );
    } else {
        outln!("key_id     {}", signer.key_id());
        outln!("public_key {}", signer.public_hex());
        outln!("wrote      {}", out.display());
    }
    Ok(())
}

fn read_key(path: &std::path::Path) -> Result<Signer, ClientError> {
    let pem = std::fs::read_to_string(path)
        .map_err(|e| other(format!("cannot read {}: {e}", path.display())))?;
    Signer::from_pem(&pem).map_err(|e| other(format!("{}: {e}", path.display())))
}

fn read_json_file(path: &std::path::Path) -> Result<serde_json::Value, ClientError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| other(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| other(format!("{}: {e}", path.display())))
}

/// The registry keys whose signatures a rebuild or an audit accepts.
fn registry_keys(cfg: &Config) -> Result<KeySet, ClientError> {
    let keys = cfg.trust.load().map_err(other)?.registry_accepted;
    if keys.is_empty() {
        return Err(other(
            "no registry key to verify with: set trust.registry_key_file or trust.registry_public_keys",
        ));
    }
    Ok(keys)
}

/// Reads every events partition and the catalog log and audits them: the hash chain, and
/// the registry's signature on every record. Reports every record that is not on the
/// chain; fails when one is forged or a seq is missing.
fn verify_audit(
    cfg: &Config,
    checkpoint_files: &[std::path::PathBuf],
    json_out: bool,
) -> Result<(), ClientError> {
    let keys = registry_keys(cfg)?;
    let mut pins = Vec::new();
    for f in checkpoint_files {
        let note = std::fs::read_to_string(f)
            .map_err(|e| other(format!("cannot read {}: {e}", f.display())))?;
        let cp = Checkpoint::open(&note, &keys)
            .map_err(|e| other(format!("checkpoint {}: {e}", f.display())))?;
        pins.push(cp);
    }
    let t = Topics::new(&cfg.kafka.topic_prefix);
    let mut logs: Vec<(String, i32)> = (0..cfg.kafka.partitions)
        .map(|p| (t.events.clone(), p))
        .collect();
    logs.push((t.catalog.clone(), 0));
    let mut failed = Vec::new();
    let mut report = Vec::new();
    for (topic, p) in logs {
        let mut records = Vec::new();
        reader::read_to_end(&cfg.kafka, &topic, p, 0, |r| {
            let bytes = r.payload.as_deref().unwrap_or_default();
            records.push((
                r.offset,
                crate::codec::decode_event(bytes).map_err(|e| e.to_string()),
            ));
            Ok(())
        })
        .map_err(unavailable)?;
        let audit = audit_log(records.iter().map(|(o, r)| (*o, r.clone())), &keys);
        let here = checkpoint::origin(&topic, p);
        let mut pinned = Vec::new();
        for cp in pins.iter().filter(|c| c.origin == here) {
            let held = cp.holds_in(
                &audit,
                records
                    .iter()
                    .filter_map(|(o, r)| r.as_ref().ok().map(|e| (*o, e))),
            );
            if let Err(why) = &held {
                failed.push(format!("{here}: checkpoint at seq {}: {why}", cp.seq));
            }
            pinned.push(serde_json::json!({"seq": cp.seq, "head_hash": cp.head_hash,
                "ok": held.is_ok(), "reason": held.err()}));
        }
        if !audit.ok() {
            failed.push(format!(
                "{topic}/{p}: {}",
                audit
                    .findings
                    .iter()
                    .filter(|f| f.kind != FindingKind::Fork)
                    .map(|f| format!("offset {} {:?}: {}", f.offset, f.kind, f.reason))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        report.push((topic, p, audit, pinned));
    }
    if let Some(cp) = pins.iter().find(|c| {
        !report
            .iter()
            .any(|(t, p, ..)| checkpoint::origin(t, *p) == c.origin)
    }) {
        failed.push(format!(
            "checkpoint of {} names no log this registry has",
            cp.origin
        ));
    }
    if json_out {
        let v: Vec<_> = report
            .iter()
            .map(|(topic, p, a, pinned)| {
                serde_json::json!({"log": topic, "partition": p, "ok": a.ok(), "records": a.records,
                    "head_seq": a.head_seq, "head_hash": a.head_hash, "findings": a.findings,
                    "checkpoints": pinned})
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v).map_err(other)?);
    } else {
        for (topic, p, a, pinned) in &report {
            let status = if a.ok() { "ok" } else { "FAILED" };
            outln!(
                "{topic}/{p}  records={}  head_seq={}  {status}",
                a.records,
                a.head_seq
            );
            for f in &a.findings {
                let seq = f.seq.map_or("-".to_owned(), |s| s.to_string());
                outln!(
                    "  offset {} seq {seq}  {:?}: {}",
                    f.offset,
                    f.kind,
                    f.reason
                );
            }
            for c in pinned {
                let status = if c["ok"] == true { "held" } else { "NOT HELD" };
                outln!("  checkpoint seq {}  {status}", c["seq"]);
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(ClientError::Rejected {
            code: "AUDIT_FAILED".into(),
            message: failed.join("; "),
            hint: String::new(),
        })
    }
}
