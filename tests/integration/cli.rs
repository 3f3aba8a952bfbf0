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
    let mut reg = InProcess::start(cfg.clone());
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
    // A dry run first: what the promotion would record, and nothing written.
    let dry = cli.json(
        dep,
        &[
            "promote",
            "fraud-scorer@1.0.0",
            "--env",
            "prod",
            "--dry-run",
        ],
    );
    assert_eq!(dry["outcome"], "ACCEPTED", "{dry}");
    assert!(dry["binding"]["previous_version"].is_null(), "{dry}");
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
        &[
            "promote",
            "pricing-policy@2.0.0",
            "--env",
            "stage",
            "--dry-run",
        ],
        2,
        "INCOMPATIBLE",
    );
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

    // The offline view tools, once the registry has stopped and released its view: a
    // rebuild from `events` and a bootstrap from `state` each equal the live view, and a
    // view that lacks it all differs (exit 1), with the keys named.
    reg.stop();
    let live = cfg.view.path.to_str().unwrap().to_owned();
    for src in ["events", "state"] {
        let path = dir.path().join(format!("rebuilt-{src}"));
        let path = path.to_str().unwrap();
        cli.ok(read, &["view", "rebuild", "--from", src, "--path", path]);
        let same = cli.ok(read, &["view", "diff", &live, path]);
        assert_eq!(same.trim(), "equal", "rebuild from {src}: {same}");
    }
    let empty = dir.path().join("empty-view");
    let out = cli.run(
        read,
        &[
            "view",
            "diff",
            &live,
            empty.to_str().unwrap(),
            "--limit",
            "2",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let (shown, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        err.contains("the views differ at") && err.contains("(2 shown)"),
        "{err}"
    );
    assert!(
        shown.starts_with("bundles ") && shown.contains("b: (absent)"),
        "{shown}"
    );

    // An unreachable registry exits with 3.
    let down = Cli {
        url: format!("http://127.0.0.1:{}", free_port()),
        config: cli.config.clone(),
    };
    down.fails(read, &["bundles"], 3, "unavailable");
}

/// The offline key tools: `mpr keygen` writes a PKCS#8 key readable as the registry reads
/// its keys, `mpr sign-receipt` signs a receipt that verifies against the registered gate
/// key, and `mpr sign` prints a header that verifies over the command's RFC 8785 form.
#[test]
fn keygen_sign_and_sign_receipt() {
    use mpr::domain::trust::{self, KeyOwnerKind, KeyRecord, Signature, TrustRegistry};
    let dir = tempfile::tempdir().unwrap();
    let mpr = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mpr"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let key_path = dir.path().join("gate.pem");
    let k = key_path.to_str().unwrap();
    let printed: serde_json::Value =
        serde_json::from_str(&mpr(&["--json", "keygen", "--out", k])).unwrap();
    let signer = trust::Signer::from_pem(&std::fs::read_to_string(&key_path).unwrap()).unwrap();
    assert_eq!(printed["key_id"], signer.key_id());
    assert_eq!(printed["public_key"], signer.public_hex());
    // keygen never overwrites a key.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_mpr"))
        .args(["keygen", "--out", k])
        .output()
        .unwrap();
    assert!(!again.status.success());

    let b = mpr::testkit::bundle("fam", "1.0.0");
    let receipt_path = dir.path().join("receipt.json");
    std::fs::write(
        &receipt_path,
        serde_json::to_vec(&mpr::testkit::pass_receipt(&b)).unwrap(),
    )
    .unwrap();
    let signed: mpr::domain::GateReceipt = serde_json::from_str(&mpr(&[
        "sign-receipt",
        "--key",
        k,
        receipt_path.to_str().unwrap(),
    ]))
    .unwrap();
    let mut registry = TrustRegistry::default();
    registry.apply(&KeyRecord {
        key_id: signer.key_id().to_owned(),
        owner_kind: KeyOwnerKind::Gate,
        owner: mpr::testkit::GATE_NAME.to_owned(),
        public_key: signer.public_hex(),
        registered_seq: 1,
        revoked_seq: None,
    });
    let roots = trust::TrustRoots {
        require_signatures: true,
        gateway: Default::default(),
        registry: Default::default(),
    };
    assert_eq!(
        trust::verify_receipt(&roots, &registry, &signed)
            .unwrap()
            .as_deref(),
        Some(signer.key_id())
    );

    let command = serde_json::to_value(mpr::testkit::publish("mf", "fam", "1.0.0")).unwrap();
    let command_path = dir.path().join("command.json");
    std::fs::write(&command_path, serde_json::to_vec_pretty(&command).unwrap()).unwrap();
    let header = mpr(&["sign", "--key", k, command_path.to_str().unwrap()]);
    let sig: Signature = serde_json::from_str(header.trim()).unwrap();
    assert!(sig.verifies(
        &signer.verifying_key(),
        trust::COMMAND_JSON_TYPE,
        &mpr::domain::bundle::canonical_json(&command)
    ));
}
