//! The `mpr` CLI end to end through the real broker: publish from `examples/`, approve as a
//! second actor, promote, resolve, roll back, resolve again; time travel, 304, the read
//! barrier, 401/403, separation of duties, exit codes and the audit chain check.

use std::process::{Command, Output};

use serde_json::Value;

use crate::harness::*;

struct Cli {
    url: String,
    config: std::path::PathBuf,
}

impl Cli {
    fn run(&self, token: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_mpr"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["--url", &self.url, "--token", token, "--config"])
            .arg(&self.config)
            .args(args)
            .env_remove("MPR_URL")
            .env_remove("MPR_TOKEN")
            .output()
            .unwrap()
    }

    fn ok(&self, token: &str, args: &[&str]) -> String {
        let out = self.run(token, args);
        assert!(
            out.status.success(),
            "mpr {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, token: &str, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.ok(token, &a)).unwrap()
    }

    fn fails(&self, token: &str, args: &[&str], exit: i32, needle: &str) {
        let out = self.run(token, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(exit), "mpr {args:?}: {err}");
        assert!(err.contains(needle), "mpr {args:?}: {err:?} lacks {needle}");
    }
}

#[test]
fn cli_walkthrough_against_the_real_broker() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&broker.addr(), dir.path(), "cli.");
    let reg = InProcess::start(cfg.clone());
    let config = dir.path().join("mpr.toml");
    std::fs::write(&config, toml_of(&cfg)).unwrap();
    let cli = Cli {
        url: reg.url.clone(),
        config,
    };
    let (pub_, appr, dep, admin, read) = (
        "tok-publisher",
        "tok-approver",
        "tok-deployer",
        "tok-admin",
        "tok-reader",
    );

    // The example receipts are signed by the example gates' keys (examples/keys): an admin
    // registers those gates first, as a real deployment registers its gates.
    for (gate, key) in [
        (
            "fraud-offline-eval-v4",
            "43ebc75c39cd5692b3589c901242096f0247cfe84a46b7596f4e384d482a0a5d",
        ),
        (
            "pricing-policy-backtest-v2",
            "a397e719065892705c2d26ad54e53307e7e175d959f0e5ef99589e1d20a55b66",
        ),
    ] {
        let out = cli.ok(
            admin,
            &[
                "key",
                "register",
                "--kind",
                "gate",
                "--owner",
                gate,
                "--public-key",
                key,
            ],
        );
        assert!(out.contains("ACCEPTED"), "{out}");
    }
    cli.ok(admin, &["catalog", "set", "examples/catalog/prod.json"]);
    assert!(
        cli.ok(read, &["catalog", "list"])
            .contains("txn_velocity@3")
    );
    let r = cli.json(
        pub_,
        &[
            "publish",
            "examples/bundles/fraud-scorer-1.0.0.publish.json",
        ],
    );
    assert_eq!(r["status"], "ACCEPTED", "{r}");
    // The publisher cannot approve (403), nor can a wrong token (401); exit code 2 is a refusal.
    cli.fails(pub_, &["approve", "fraud-scorer@1.0.0"], 2, "FORBIDDEN");
    cli.fails(
        "wrong-token",
        &["approve", "fraud-scorer@1.0.0"],
        2,
        "UNAUTHENTICATED",
    );
    cli.ok(appr, &["nominate", "fraud-scorer@1.0.0"]);
    cli.ok(
        appr,
        &[
            "approve",
            "fraud-scorer@1.0.0",
            "--reason",
            "eval report reviewed",
        ],
    );
    let promoted = cli.json(dep, &["promote", "fraud-scorer@1.0.0", "--env", "prod"]);
    assert_eq!(promoted["lifecycle_state"], "ACTIVE");
    let v = cli.json(
        read,
        &[
            "resolve",
            "--env",
            "prod",
            "--bundle-id",
            "fraud-scorer",
            "--tenant",
            "acme",
        ],
    );
    assert_eq!(
        (
            v["active_bundle_ref"]["bundle_version"].as_str(),
            v["matched_rule"].as_str()
        ),
        (Some("1.0.0"), Some("GLOBAL"))
    );
    let first_seq = v["activation"]["seq"].as_u64().unwrap();
    let table = cli.ok(
        read,
        &["resolve", "--env", "prod", "--bundle-id", "fraud-scorer"],
    );
    assert!(
        table.contains("fraud-scorer@1.0.0") && table.contains("GLOBAL"),
        "{table}"
    );

    // 304 on an unchanged view; the read barrier honours a promote's view_version.
    let url = format!(
        "{}/v1/resolve?environment=prod&bundle_id=fraud-scorer",
        reg.url
    );
    let resp = ureq::get(&url)
        .set("Authorization", &format!("Bearer {read}"))
        .call()
        .unwrap();
    let etag = resp.header("etag").unwrap().to_owned();
    let again = ureq::get(&url)
        .set("Authorization", &format!("Bearer {read}"))
        .set("If-None-Match", &etag)
        .call()
        .unwrap();
    assert_eq!(again.status(), 304);

    // Version 1.1.0 goes live, then is rolled back.
    cli.ok(
        pub_,
        &[
            "publish",
            "examples/bundles/fraud-scorer-1.1.0.publish.json",
        ],
    );
    cli.ok(appr, &["nominate", "fraud-scorer@1.1.0"]);
    cli.ok(appr, &["approve", "fraud-scorer@1.1.0"]);
    let promoted = cli.json(dep, &["promote", "fraud-scorer@1.1.0", "--env", "prod"]);
    let token = promoted["view_version"].as_str().unwrap();
    let (s, v) = get(&format!("{url}&min_view_version={token}"), Some(read));
    assert_eq!(
        (s, v["active_bundle_ref"]["bundle_version"].as_str()),
        (200, Some("1.1.0"))
    );
    let second_seq = v["activation"]["seq"].as_u64().unwrap();
    let (s, _) = get(&format!("{url}&min_view_version=v1.0.0.0.9999"), Some(read));
    assert_eq!(s, 503);
    let rb = cli.json(
        dep,
        &[
            "rollback",
            "--env",
            "prod",
            "--bundle-id",
            "fraud-scorer",
            "--reason",
            "p99 regression",
        ],
    );
    assert_eq!(rb["event_type"], "BUNDLE_ROLLED_BACK");
    let v = cli.json(
        read,
        &["resolve", "--env", "prod", "--bundle-id", "fraud-scorer"],
    );
    assert_eq!(v["active_bundle_ref"]["bundle_version"], "1.0.0");
    // Time travel: at the second activation 1.1.0 was live, at the first 1.0.0.
    let v = cli.json(
        read,
        &[
            "resolve",
            "--env",
            "prod",
            "--bundle-id",
            "fraud-scorer",
            "--as-of-seq",
            &second_seq.to_string(),
        ],
    );
    assert_eq!(v["active_bundle_ref"]["bundle_version"], "1.1.0");
    let v = cli.json(
        read,
        &[
            "resolve",
            "--env",
            "prod",
            "--bundle-id",
            "fraud-scorer",
            "--as-of-seq",
            &first_seq.to_string(),
        ],
    );
    assert_eq!(v["active_bundle_ref"]["bundle_version"], "1.0.0");
    cli.fails(
        dep,
        &["rollback", "--env", "prod", "--bundle-id", "fraud-scorer"],
        2,
        "NOTHING_TO_ROLL_BACK",
    );

    // Separation of duties: carol publishes and nominates, but cannot approve her own bundle.
    let carol = "tok-pub-approver";
    cli.ok(
        carol,
        &[
            "publish",
            "examples/bundles/pricing-policy-2.0.0.publish.json",
        ],
    );
    cli.ok(carol, &["nominate", "pricing-policy@2.0.0"]);
    cli.fails(
        carol,
        &["approve", "pricing-policy@2.0.0"],
        2,
        "SEPARATION_OF_DUTIES",
    );
    // INCOMPATIBLE names what is missing (no catalog for stage).
    cli.ok(appr, &["approve", "pricing-policy@2.0.0"]);
    cli.fails(
        dep,
        &["promote", "pricing-policy@2.0.0", "--env", "stage"],
        2,
        "INCOMPATIBLE",
    );

    // Audit history and the chain check.
    let hist = cli.ok(
        read,
        &["history", "--env", "prod", "--bundle-id", "fraud-scorer"],
    );
    assert!(
        hist.contains("BUNDLE_PROMOTED") && hist.contains("BUNDLE_ROLLED_BACK"),
        "{hist}"
    );
    let events = cli.ok(read, &["events", "--bundle-id", "fraud-scorer"]);
    assert!(events.lines().count() >= 9, "{events}");
    assert!(cli.ok(read, &["bundles"]).contains("pricing-policy@2.0.0"));
    let audit = cli.ok(read, &["verify-audit"]);
    assert!(audit.contains("ok") && !audit.contains("BROKEN"), "{audit}");

    // An unreachable registry exits with 3.
    let down = Cli {
        url: format!("http://127.0.0.1:{}", free_port()),
        config: cli.config.clone(),
    };
    down.fails(read, &["bundles"], 3, "unavailable");
}
