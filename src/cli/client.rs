//! Client subcommands: HTTP calls to a running registry, rendered as tables or JSON.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use serde_json::{Value, json};

use super::{
    CanaryCmd, CatalogCmd, Cli, Cmd, EXIT_REJECTED, EXIT_UNAVAILABLE, FamilyScopeArgs, KeyCmd,
    PolicyCmd, SignalCmd,
};

/// A failed client call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The registry refused the request.
    #[error("{code}: {message}{hint}")]
    Rejected {
        /// Stable code.
        code: String,
        /// Message.
        message: String,
        /// Extra guidance.
        hint: String,
    },
    /// The registry could not be reached or is not ready.
    #[error("registry unavailable: {0}")]
    Unavailable(String),
    /// Anything else (bad arguments, unreadable files).
    #[error("{0}")]
    Other(String),
}

impl ClientError {
    /// Process exit code.
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Rejected { code, .. }
                if matches!(code.as_str(), "UNAVAILABLE" | "TIMEOUT" | "INTERNAL") =>
            {
                EXIT_UNAVAILABLE
            }
            ClientError::Rejected { .. } => EXIT_REJECTED,
            ClientError::Unavailable(_) => EXIT_UNAVAILABLE,
            ClientError::Other(_) => 1,
        }
    }
}

struct Client<'a> {
    url: &'a str,
    token: Option<&'a str>,
    agent: ureq::Agent,
}

fn hint_for(code: &str) -> &'static str {
    match code {
        "INCOMPATIBLE" => {
            "\n  the target environment's catalog lacks the items listed; update it with `mpr catalog set` or promote elsewhere"
        }
        "SEPARATION_OF_DUTIES" => {
            "\n  a bundle must be approved by someone other than its submitter"
        }
        "FORBIDDEN" => "\n  the token's actor lacks the role for this command",
        "UNAUTHENTICATED" => "\n  pass a valid token with --token or MPR_TOKEN",
        "NOTHING_TO_ROLL_BACK" => "\n  the scope has no earlier usable activation",
        "GATE_NOT_PASS" | "GATE_RECEIPT_MISMATCH" => {
            "\n  only bundles with a PASS receipt for exactly this digest are accepted"
        }
        _ => "",
    }
}

impl Client<'_> {
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), ClientError> {
        let mut req = self
            .agent
            .request(method, &format!("{}{path}", self.url.trim_end_matches('/')));
        if let Some(t) = self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        let resp = match body {
            Some(b) => req.send_json(b.clone()),
            None => req.call(),
        };
        match resp {
            Ok(r) => {
                let status = r.status();
                let v = r.into_json::<Value>().unwrap_or(Value::Null);
                Ok((status, v))
            }
            Err(ureq::Error::Status(_, r)) => {
                let v: Value = r.into_json().unwrap_or(Value::Null);
                let code = v["code"].as_str().unwrap_or("INTERNAL").to_owned();
                Err(ClientError::Rejected {
                    hint: hint_for(&code).to_owned(),
                    message: v["message"].as_str().unwrap_or("").to_owned(),
                    code,
                })
            }
            Err(e) => Err(ClientError::Unavailable(e.to_string())),
        }
    }

    fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.call("GET", path, None).map(|(_, v)| v)
    }

    /// Posts a command and, on 202, polls its result with progress on a terminal.
    fn command(&self, method: &str, path: &str, body: &Value) -> Result<Value, ClientError> {
        let (status, v) = self.call(method, path, Some(body))?;
        if status != 202 {
            return Ok(v);
        }
        let id = v["command_id"].as_str().unwrap_or_default().to_owned();
        let tty = std::io::stderr().is_terminal();
        for _ in 0..120 {
            if tty {
                eprint!("\rwaiting for the result of {id} ...");
                let _ = std::io::stderr().flush();
            }
            std::thread::sleep(Duration::from_millis(500));
            match self.call("GET", &format!("/v1/commands/{id}"), None) {
                Ok((_, r)) => {
                    if tty {
                        eprintln!();
                    }
                    if let Some(err) = r.get("error").filter(|e| !e.is_null()) {
                        let code = err["code"].as_str().unwrap_or("INTERNAL").to_owned();
                        return Err(ClientError::Rejected {
                            hint: hint_for(&code).to_owned(),
                            message: err["message"].as_str().unwrap_or("").to_owned(),
                            code,
                        });
                    }
                    return Ok(r);
                }
                Err(ClientError::Rejected { code, .. }) if code == "UNAVAILABLE" => {}
                Err(e) => return Err(e),
            }
        }
        Err(ClientError::Unavailable(format!(
            "no result for {id} after 60 s"
        )))
    }
}

fn split_target(s: &str) -> Result<(&str, &str), ClientError> {
    s.split_once('@')
        .ok_or_else(|| ClientError::Other(format!("expected bundle_id@version, got {s:?}")))
}

fn read_json(path: &std::path::Path) -> Result<Value, ClientError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ClientError::Other(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| ClientError::Other(format!("{}: not JSON: {e}", path.display())))
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn table(rows: &[Vec<String>]) -> String {
    let mut widths = vec![0; rows.iter().map(Vec::len).max().unwrap_or(0)];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    rows.iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print_result(v: &Value, json_out: bool) {
    if json_out {
        outln!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        return;
    }
    let rows = vec![
        vec![
            "outcome".into(),
            s(&v["outcome"]).replace('-', &s(&v["status"])),
        ],
        vec![
            "event".into(),
            format!("{} seq {}", s(&v["event_type"]), s(&v["seq"])),
        ],
        vec![
            "bundle".into(),
            format!("{}@{}", s(&v["bundle_id"]), s(&v["bundle_version"])),
        ],
        vec!["state".into(), s(&v["lifecycle_state"])],
        vec!["command_id".into(), s(&v["command_id"])],
        vec!["view_version".into(), s(&v["view_version"])],
    ];
    outln!("{}", table(&rows));
    if let Some(w) = v["warnings"].as_array().filter(|w| !w.is_empty()) {
        for x in w {
            outln!("warning: {}", s(x));
        }
    }
}

/// Runs a client subcommand.
pub fn run(cli: &Cli) -> Result<(), ClientError> {
    let c = Client {
        url: &cli.url,
        token: cli.token.as_deref(),
        agent: ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(30))
            .build(),
    };
    let j = cli.json;
    match &cli.command {
        Cmd::Publish { file } => {
            let v = c.command("POST", "/v1/bundles", &read_json(file)?)?;
            print_result(&v, j);
        }
        Cmd::Nominate(t) | Cmd::Approve(t) | Cmd::Reject(t) | Cmd::Retire(t) => {
            let action = match &cli.command {
                Cmd::Nominate(_) => "nominate",
                Cmd::Approve(_) => "approve",
                Cmd::Reject(_) => "reject",
                _ => "retire",
            };
            let (id, ver) = split_target(&t.bundle)?;
            let body = json!({"reason": t.reason});
            let v = c.command(
                "POST",
                &format!("/v1/bundles/{}/versions/{}/{action}", enc(id), enc(ver)),
                &body,
            )?;
            print_result(&v, j);
        }
        Cmd::Promote {
            bundle,
            scope,
            reason,
            dry_run,
        } => {
            let (id, ver) = split_target(bundle)?;
            let body = json!({"bundle_id": id, "bundle_version": ver, "environment": scope.env,
                "tenant_id": scope.tenant, "degrade": scope.degrade, "reason": reason});
            if *dry_run {
                let (_, v) = c.call("POST", "/v1/promotions/dry-run", Some(&body))?;
                if j {
                    outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                }
                if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
                    let code = err["code"].as_str().unwrap_or("INTERNAL").to_owned();
                    return Err(ClientError::Rejected {
                        hint: hint_for(&code).to_owned(),
                        message: format!(
                            "dry run: the promotion would be refused: {}",
                            err["message"].as_str().unwrap_or("")
                        ),
                        code,
                    });
                }
                if !j {
                    let rows = vec![
                        vec!["dry run".into(), format!("would be {}", s(&v["outcome"]))],
                        vec![
                            "replaces".into(),
                            v["binding"]["previous_version"]
                                .as_str()
                                .unwrap_or("nothing")
                                .to_owned(),
                        ],
                        vec!["view_version".into(), s(&v["view_version"])],
                    ];
                    outln!("{}", table(&rows));
                    if let Some(w) = v["warnings"].as_array().filter(|w| !w.is_empty()) {
                        for x in w {
                            outln!("warning: {}", s(x));
                        }
                    }
                }
                return Ok(());
            }
            print_result(&c.command("POST", "/v1/promotions", &body)?, j);
        }
        Cmd::Rollback {
            bundle_id,
            scope,
            reason,
        } => {
            let body = json!({"bundle_id": bundle_id, "environment": scope.env,
                "tenant_id": scope.tenant, "degrade": scope.degrade, "reason": reason});
            print_result(&c.command("POST", "/v1/rollbacks", &body)?, j);
        }
        Cmd::Key { action } => {
            let (command_type, payload, reason) = match action {
                KeyCmd::Register {
                    kind,
                    owner,
                    public_key,
                    reason,
                } => (
                    "REGISTER_KEY",
                    json!({"owner_kind": kind.to_uppercase(), "owner": owner, "public_key": public_key}),
                    reason,
                ),
                KeyCmd::Revoke { key_id, reason } => {
                    ("REVOKE_KEY", json!({"key_id": key_id}), reason)
                }
            };
            let body = json!({"command_type": command_type, "payload": payload, "reason": reason});
            print_result(&c.command("POST", "/v1/commands", &body)?, j);
        }
        Cmd::Signal {
            action:
                SignalCmd::Send {
                    file,
                    bundle,
                    env,
                    tenant,
                    kind,
                    name,
                    value,
                    window_start,
                    window_end,
                    source,
                },
        } => {
            let body = match (file, bundle) {
                (Some(f), _) => read_json(f)?,
                (None, Some(b)) => {
                    let (id, ver) = split_target(b)?;
                    let rec = c.get(&format!("/v1/bundles/{}/versions/{}", enc(id), enc(ver)))?;
                    let now = crate::domain::Timestamp::from_millis(
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis() as i64),
                    );
                    let start = window_start.clone().unwrap_or_else(|| {
                        crate::domain::Timestamp::from_millis(now.millis() - 60_000).to_string()
                    });
                    json!({"bundle_id": id, "bundle_version": ver,
                        "bundle_digest": rec["bundle_digest"], "environment": env,
                        "tenant_id": tenant, "kind": kind.to_uppercase(), "name": name,
                        "value": value, "source": source, "window_start_utc": start,
                        "window_end_utc": window_end.clone().unwrap_or_else(|| now.to_string()),
                        "observed_at_utc": now.to_string()})
                }
                (None, None) => {
                    return Err(ClientError::Other(
                        "give --file, or --bundle ID@VER with --name".into(),
                    ));
                }
            };
            // 202 once the signal is on `signals`: there is no command result to wait for.
            let (_, v) = c.call("POST", "/v1/signals", Some(&body))?;
            if j {
                outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                outln!("signal {} {}", s(&v["signal_id"]), s(&v["status"]));
            }
        }
        Cmd::Policy {
            action:
                PolicyCmd::Set {
                    scope:
                        FamilyScopeArgs {
                            bundle_id,
                            env,
                            tenant,
                        },
                    file,
                    clear,
                    reason,
                },
        } => {
            let policy = match (file, clear) {
                (_, true) => Value::Null,
                (Some(f), false) => read_json(f)?,
                (None, false) => return Err(ClientError::Other("give --file or --clear".into())),
            };
            let body = json!({"tenant_id": tenant, "policy": policy, "reason": reason});
            print_result(
                &c.command(
                    "PUT",
                    &format!("/v1/policies/{}/{}", enc(bundle_id), enc(env)),
                    &body,
                )?,
                j,
            );
        }
        Cmd::Policy {
            action:
                PolicyCmd::Show {
                    scope:
                        FamilyScopeArgs {
                            bundle_id,
                            env,
                            tenant,
                        },
                },
        } => {
            let scope = c.get(&format!(
                "/v1/scopes/{}/{}/{}",
                enc(env),
                enc(tenant),
                enc(bundle_id)
            ))?;
            let decisions = c.get(&format!(
                "/v1/events?bundle_id={}&environment={}&tenant_id={}&automated=true",
                enc(bundle_id),
                enc(env),
                enc(tenant)
            ))?;
            if j {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(
                        &json!({"scope": scope, "decisions": decisions["items"]})
                    )
                    .unwrap_or_default()
                );
            } else {
                for b in scope["bindings"].as_array().into_iter().flatten() {
                    outln!("{} {}", s(&b["slot"]), s(&b["bundle_version"]));
                    if !b["canary"].is_null() {
                        outln!("  canary share {} bp", s(&b["canary"]["share_bp"]));
                    }
                    if !b["autopilot"].is_null() {
                        outln!(
                            "  policy {}",
                            serde_json::to_string(&b["autopilot"]["policy"]).unwrap_or_default()
                        );
                        for ser in b["autopilot"]["series"].as_array().into_iter().flatten() {
                            let ws: Vec<String> = ser["windows"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .map(|w| {
                                    format!(
                                        "{}:{}/{}",
                                        s(&w["window_start_utc"]),
                                        s(&w["sum"]),
                                        s(&w["count"])
                                    )
                                })
                                .collect();
                            outln!(
                                "  {}@{} {}",
                                s(&ser["metric"]),
                                s(&ser["bundle_version"]),
                                ws.join(" ")
                            );
                        }
                    }
                }
                for e in decisions["items"].as_array().into_iter().flatten() {
                    let d: Value = e["autopilot"]
                        .as_str()
                        .and_then(|t| serde_json::from_str(t).ok())
                        .unwrap_or_default();
                    let t = &d["trigger"];
                    outln!(
                        "seq {} {} {} rule {} {}: {}",
                        s(&e["seq"]),
                        s(&e["observed_at_utc"]),
                        s(&e["event_type"]),
                        s(&t["rule_id"]),
                        s(&t["outcome"]),
                        s(&t["evidence"])
                    );
                }
            }
        }
        Cmd::Canary { action } => {
            let bp = |p: f64| (p * 100.0).round() as i64;
            let (path, body) = match action {
                CanaryCmd::Start {
                    bundle,
                    env,
                    tenant,
                    percent,
                    reason,
                } => {
                    let (id, ver) = split_target(bundle)?;
                    (
                        "/v1/promotions".to_owned(),
                        json!({"bundle_id": id, "bundle_version": ver, "environment": env,
                            "tenant_id": tenant, "canary_share_bp": bp(*percent), "reason": reason}),
                    )
                }
                CanaryCmd::Set {
                    scope:
                        FamilyScopeArgs {
                            bundle_id,
                            env,
                            tenant,
                        },
                    percent,
                    reason,
                } => (
                    format!("/v1/canaries/{}/{}/share", enc(bundle_id), enc(env)),
                    json!({"tenant_id": tenant, "share_bp": bp(*percent), "reason": reason}),
                ),
                CanaryCmd::Complete {
                    scope:
                        FamilyScopeArgs {
                            bundle_id,
                            env,
                            tenant,
                        },
                    reason,
                }
                | CanaryCmd::Abort {
                    scope:
                        FamilyScopeArgs {
                            bundle_id,
                            env,
                            tenant,
                        },
                    reason,
                } => {
                    let verb = if matches!(action, CanaryCmd::Complete { .. }) {
                        "complete"
                    } else {
                        "abort"
                    };
                    (
                        format!("/v1/canaries/{}/{}/{verb}", enc(bundle_id), enc(env)),
                        json!({"tenant_id": tenant, "reason": reason}),
                    )
                }
            };
            print_result(&c.command("POST", &path, &body)?, j);
        }
        Cmd::Catalog {
            action: CatalogCmd::Set { file },
        } => {
            let body = read_json(file)?;
            let env = body["environment"]
                .as_str()
                .ok_or_else(|| ClientError::Other("catalog file needs environment".into()))?
                .to_owned();
            print_result(
                &c.command("PUT", &format!("/v1/catalog/{}", enc(&env)), &body)?,
                j,
            );
        }
        Cmd::Catalog {
            action: CatalogCmd::List,
        } => {
            let v = c.get("/v1/catalog")?;
            if j {
                outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                let mut rows = vec![vec![
                    "ENVIRONMENT".into(),
                    "POSTURE".into(),
                    "FEATURE GROUPS".into(),
                    "SCHEMAS".into(),
                ]];
                for e in v["entries"].as_array().into_iter().flatten() {
                    let fgs: Vec<String> = e["feature_groups"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|f| format!("{}@{}", s(&f["name"]), s(&f["version"])))
                        .collect();
                    let sv: Vec<String> = e["schema_versions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(s)
                        .collect();
                    rows.push(vec![
                        s(&e["environment"]),
                        s(&e["posture"]),
                        fgs.join(","),
                        sv.join(","),
                    ]);
                }
                outln!(
                    "catalog version {}\n{}",
                    s(&v["catalog_version"]),
                    table(&rows)
                );
            }
        }
        Cmd::Resolve {
            bundle_id,
            env,
            tenant,
            degrade,
            as_of_seq,
            as_of,
            routing_key,
        } => {
            let mut q = format!(
                "/v1/resolve?environment={}&bundle_id={}&degrade={degrade}",
                enc(env),
                enc(bundle_id)
            );
            if let Some(t) = tenant {
                q.push_str(&format!("&tenant_id={}", enc(t)));
            }
            if let Some(n) = as_of_seq {
                q.push_str(&format!("&as_of_seq={n}"));
            }
            if let Some(t) = as_of {
                q.push_str(&format!("&as_of={}", enc(t)));
            }
            if let Some(k) = routing_key {
                q.push_str(&format!("&routing_key={}", enc(k)));
            }
            let v = c.get(&q)?;
            if j {
                outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                let r = &v["active_bundle_ref"];
                let rows = vec![
                    vec![
                        "bundle".into(),
                        format!("{}@{}", s(&r["bundle_id"]), s(&r["bundle_version"])),
                    ],
                    vec!["digest".into(), s(&r["bundle_digest"])],
                    vec!["rule".into(), s(&v["matched_rule"])],
                    vec![
                        "scope".into(),
                        format!(
                            "{}/{}/{} {}",
                            s(&v["scope"]["environment"]),
                            s(&v["scope"]["tenant_id"]),
                            s(&v["scope"]["bundle_id"]),
                            s(&v["scope"]["slot"])
                        ),
                    ],
                    vec![
                        "activated".into(),
                        format!(
                            "seq {} at {}",
                            s(&v["activation"]["seq"]),
                            s(&v["activation"]["activated_at_utc"])
                        ),
                    ],
                    vec!["view_version".into(), s(&v["view_version"])],
                ];
                let mut rows = rows;
                if let Some(k) = v.get("canary") {
                    rows.push(vec![
                        "canary".into(),
                        format!(
                            "{} at {} bp ({})",
                            s(&k["bundle_version"]),
                            s(&k["share_bp"]),
                            if k["served"] == true {
                                "this answer"
                            } else {
                                "not this key"
                            }
                        ),
                    ]);
                }
                outln!("{}", table(&rows));
            }
        }
        Cmd::History { bundle_id, scope } => {
            let slot = if scope.degrade { "DEGRADE" } else { "PRIMARY" };
            let v = c.get(&format!(
                "/v1/scopes/{}/{}/{}/history?slot={slot}&limit=1000",
                enc(&scope.env),
                enc(&scope.tenant),
                enc(bundle_id)
            ))?;
            if j {
                outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                let mut rows = vec![vec![
                    "SEQ".into(),
                    "EVENT".into(),
                    "BOUND".into(),
                    "PREVIOUS".into(),
                    "ACTOR".into(),
                    "AT".into(),
                ]];
                for h in v["items"].as_array().into_iter().flatten() {
                    rows.push(vec![
                        s(&h["seq"]),
                        s(&h["event_type"]),
                        s(&h["bundle_version"]),
                        s(&h["previous_version"]),
                        s(&h["actor"]),
                        s(&h["observed_at_utc"]),
                    ]);
                }
                outln!("{}", table(&rows));
            }
        }
        Cmd::Events {
            bundle_id,
            follow,
            automated,
        } => {
            let mut cursor: Option<String> = None;
            let mut header = !j;
            loop {
                let mut q = "/v1/events?limit=500".to_owned();
                if let Some(b) = bundle_id {
                    q.push_str(&format!("&bundle_id={}", enc(b)));
                }
                if *automated {
                    q.push_str("&automated=true");
                }
                if let Some(cur) = &cursor {
                    q.push_str(&format!("&cursor={cur}"));
                }
                let v = c.get(&q)?;
                let items = v["items"].as_array().cloned().unwrap_or_default();
                let mut rows = Vec::new();
                if header {
                    rows.push(vec![
                        "LOG".into(),
                        "P".into(),
                        "SEQ".into(),
                        "EVENT".into(),
                        "BUNDLE".into(),
                        "ACTOR".into(),
                        "CODE".into(),
                        "AT".into(),
                    ]);
                    header = false;
                }
                for e in &items {
                    if j {
                        outln!("{}", serde_json::to_string(e).unwrap_or_default());
                    } else {
                        rows.push(vec![
                            s(&e["log"]),
                            s(&e["partition"]),
                            s(&e["seq"]),
                            s(&e["event_type"]),
                            format!("{}@{}", s(&e["bundle_id"]), s(&e["bundle_version"])),
                            s(&e["actor"]),
                            s(&e["error"]["code"]),
                            s(&e["observed_at_utc"]),
                        ]);
                    }
                }
                if !rows.is_empty() && !j {
                    outln!("{}", table(&rows));
                }
                if let Some(n) = v["next_cursor"].as_str() {
                    cursor = Some(n.to_owned());
                }
                if items.len() < 500 {
                    if !*follow {
                        break;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
        Cmd::Bundles { bundle_id } => {
            let mut q = "/v1/bundles?limit=1000".to_owned();
            if let Some(b) = bundle_id {
                q.push_str(&format!("&bundle_id={}", enc(b)));
            }
            let v = c.get(&q)?;
            if j {
                outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                let mut rows = vec![vec![
                    "BUNDLE".into(),
                    "KIND".into(),
                    "STATE".into(),
                    "BINDINGS".into(),
                    "SUBMITTED BY".into(),
                    "DIGEST".into(),
                ]];
                for b in v["items"].as_array().into_iter().flatten() {
                    rows.push(vec![
                        format!(
                            "{}@{}",
                            s(&b["bundle"]["bundle_id"]),
                            s(&b["bundle"]["bundle_version"])
                        ),
                        s(&b["bundle"]["kind"]),
                        s(&b["state"]),
                        s(&b["active_bindings"]),
                        s(&b["submitted_by"]),
                        s(&b["bundle_digest"])[..12.min(s(&b["bundle_digest"]).len())].to_owned(),
                    ]);
                }
                outln!("{}", table(&rows));
            }
        }
        _ => return Err(ClientError::Other("not a client command".into())),
    }
    Ok(())
}
