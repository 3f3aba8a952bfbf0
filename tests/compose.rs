//! No Docker engine runs here, so this checks that `docker-compose.yml` parses and names the
//! services, ports, volumes and settings the README promises: Apache Kafka in KRaft mode, a
//! one-shot topic initialiser, and the registry built from the repository's Dockerfile;
//! that neither the image nor compose ships a token or key (secrets are mounted files); and
//! that `mpr serve` with the image's config refuses to start without them.

use serde_yaml::Value;

fn compose() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml"))
        .unwrap();
    serde_yaml::from_str(&text).expect("docker-compose.yml is YAML")
}

#[test]
fn compose_names_the_production_shape() {
    let c = compose();
    let services = c["services"].as_mapping().expect("services");
    for name in ["kafka", "topics-init", "registry"] {
        assert!(services.contains_key(name), "service {name} missing");
    }
    let kafka = &c["services"]["kafka"];
    assert!(kafka["image"].as_str().unwrap().starts_with("apache/kafka"));
    assert_eq!(
        kafka["environment"]["KAFKA_PROCESS_ROLES"], "broker,controller",
        "KRaft mode"
    );
    assert!(
        kafka["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|p| p == "127.0.0.1:9092:9092")
    );
    let init = &c["services"]["topics-init"];
    assert_eq!(init["build"], ".");
    let cmd: Vec<&str> = init["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(cmd, ["topics", "ensure"]);
    assert_eq!(init["restart"], "no");
    let reg = &c["services"]["registry"];
    assert_eq!(reg["build"], ".");
    assert!(
        reg["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|p| p == "127.0.0.1:8080:8080")
    );
    assert_eq!(
        reg["depends_on"]["topics-init"]["condition"],
        "service_completed_successfully"
    );
    assert_eq!(reg["environment"]["MPR_BROKERS"], "kafka:9092");
    let volumes = c["volumes"].as_mapping().unwrap();
    assert!(volumes.contains_key("kafka-data") && volumes.contains_key("registry-view"));
    assert!(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).exists());
}

#[test]
fn compose_environment_is_valid_registry_config() {
    // The registry's MPR_ variables must be keys the config accepts.
    let c = compose();
    let env = c["services"]["registry"]["environment"]
        .as_mapping()
        .unwrap();
    for (k, _) in env {
        let k = k.as_str().unwrap();
        let known = [
            "MPR_CONFIG",
            "MPR_BROKERS",
            "MPR_KAFKA__PARTITIONS",
            "MPR_KAFKA__REPLICATION_FACTOR",
            "MPR_HTTP__LISTEN",
            "MPR_VIEW__PATH",
            "MPR_PROCESSOR__STATE_PATH",
            "MPR_LOG__JSON",
            "MPR_AUTH__PRINCIPALS_FILE",
            "MPR_TRUST__REGISTRY_KEY_FILE",
            "MPR_TRUST__GATEWAY_KEY_FILE",
        ];
        assert!(known.contains(&k), "unexpected variable {k}");
    }
}

fn repo_text(rel: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

#[test]
fn no_token_or_key_ships_and_secrets_are_mounted() {
    let dockerfile = repo_text("Dockerfile");
    assert!(
        !dockerfile.contains("local.toml"),
        "the dev config stays out of the image"
    );
    assert!(dockerfile.contains("COPY config/production.toml /etc/mpr/mpr.toml"));
    assert!(dockerfile.lines().any(|l| l == "USER mpr"), "not root");
    let production = repo_text("config/production.toml");
    assert!(
        !production.contains("token_sha256 ="),
        "no token in the image's config"
    );
    let ignored = repo_text(".dockerignore");
    assert!(
        ignored.lines().any(|l| l == "secrets"),
        "secrets never reach the build"
    );

    let text = repo_text("docker-compose.yml");
    assert!(!text.contains("local.toml") && !text.contains("token_sha256"));
    let c = compose();
    // Every published port is on the loopback interface only.
    for (name, svc) in c["services"].as_mapping().unwrap() {
        for p in svc["ports"].as_sequence().into_iter().flatten() {
            assert!(
                p.as_str().unwrap().starts_with("127.0.0.1:"),
                "{name:?}: {p:?}"
            );
        }
    }
    let reg = &c["services"]["registry"];
    let mounted: Vec<&str> = reg["secrets"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(
        mounted,
        ["mpr_principals", "mpr_registry_key", "mpr_gateway_key"]
    );
    for name in mounted {
        let file = c["secrets"][name]["file"].as_str().unwrap();
        assert!(file.starts_with("./secrets/"), "{name}: {file}");
    }
    assert_eq!(
        reg["environment"]["MPR_AUTH__PRINCIPALS_FILE"],
        "/run/secrets/mpr_principals"
    );
    let volumes: Vec<&str> = reg["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        volumes,
        ["registry-view:/var/lib/mpr"],
        "no config file is mounted"
    );
}

/// `mpr serve` with the image's config and compose's environment, but without the mounted
/// principals, exits at once with a config error naming the key; likewise with a principals
/// file that holds no token.
#[test]
fn serve_refuses_to_start_without_principal_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |principals: &std::path::Path| serve_with_secrets(dir.path(), principals, &[]);
    let missing = dir.path().join("mpr_principals");
    let err = serve(&missing);
    assert!(
        err.contains("auth.principals_file") && err.contains("mpr_principals"),
        "{err}"
    );
    std::fs::write(&missing, "# nothing yet\n").unwrap();
    let err = serve(&missing);
    assert!(
        err.contains("auth.principals: no principal has a token_sha256"),
        "{err}"
    );
}

/// `mpr serve` with the production config refuses to start without the registry's and the
/// gateway's key files (README "Who can change what"), and names the missing one.
#[test]
fn serve_refuses_to_start_without_both_key_files() {
    let dir = tempfile::tempdir().unwrap();
    let principals = reader_principals(dir.path());
    let key = dir.path().join("a_key.pem");
    std::fs::write(
        &key,
        mpr::domain::trust::Signer::from_seed([7; 32]).to_pem(),
    )
    .unwrap();
    let absent = dir.path().join("absent_key.pem");
    let serve = |registry: &std::path::Path, gateway: &std::path::Path| {
        serve_with_secrets(
            dir.path(),
            &principals,
            &[
                ("MPR_TRUST__REGISTRY_KEY_FILE", registry),
                ("MPR_TRUST__GATEWAY_KEY_FILE", gateway),
            ],
        )
    };
    let err = serve(&absent, &key);
    assert!(
        err.contains("trust.registry_key_file") && err.contains("absent_key.pem"),
        "{err}"
    );
    let err = serve(&key, &absent);
    assert!(
        err.contains("trust.gateway_key_file") && err.contains("absent_key.pem"),
        "{err}"
    );
}

/// The scripts' own `MPR_TOOLS` and `MPR_ARTIFACTS` are not config keys
/// (`NOT_CONFIG_KEYS`): with them set, `serve` gets past loading its config to the check
/// of its key files. A cold `test.sh` with `MPR_TOOLS` exported once failed on "unknown
/// field `tools`". Any other `MPR_` name still fails, named. A child process, so the
/// test's own environment is left alone.
#[test]
fn the_scripts_knobs_are_not_config_keys() {
    let dir = tempfile::tempdir().unwrap();
    let principals = reader_principals(dir.path());
    let absent = dir.path().join("absent_key.pem");
    let err = serve_with_secrets(
        dir.path(),
        &principals,
        &[
            ("MPR_TOOLS", dir.path()),
            ("MPR_ARTIFACTS", dir.path()),
            ("MPR_TRUST__REGISTRY_KEY_FILE", &absent),
            ("MPR_TRUST__GATEWAY_KEY_FILE", &absent),
        ],
    );
    assert!(!err.contains("unknown field"), "{err}");
    assert!(err.contains("trust.registry_key_file"), "{err}");
    // Any other `MPR_` name is refused at start-up, named.
    let err = serve_with_secrets(dir.path(), &principals, &[("MPR_HTTP__LISTN", dir.path())]);
    assert!(
        err.contains("unknown field") && err.contains("listn"),
        "{err}"
    );
}

/// A principals file under `dir` with one reader, `df`, whose token is `a-token`.
fn reader_principals(dir: &std::path::Path) -> std::path::PathBuf {
    let principals = dir.join("mpr_principals");
    std::fs::write(
        &principals,
        format!(
            "[[principals]]\nactor = \"df\"\nroles = [\"reader\"]\ntoken_sha256 = \"{}\"\n",
            mpr::domain::bundle::sha256_hex(b"a-token")
        ),
    )
    .unwrap();
    principals
}

/// Runs `mpr serve` with the production config, the principals file `principals`, state
/// under `dir` and the extra environment `env`, against a broker address where nothing
/// listens; it must fail before needing one. Returns its stderr.
fn serve_with_secrets(
    dir: &std::path::Path,
    principals: &std::path::Path,
    env: &[(&str, &std::path::Path)],
) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mpr"))
        .arg("--config")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/production.toml"
        ))
        .arg("serve")
        .env("MPR_AUTH__PRINCIPALS_FILE", principals)
        .env("MPR_HTTP__LISTEN", "127.0.0.1:0")
        .env("MPR_VIEW__PATH", dir.join("view"))
        .env("MPR_PROCESSOR__STATE_PATH", dir.join("processor"))
        // Nothing listens here: the check must come before any broker is needed.
        .env("MPR_BROKERS", "127.0.0.1:9")
        .env("MPR_LOG", "off")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The production config signs: `signed` mode, both keys read from mounted secrets, and
/// compose mounts those secrets where the config names them.
#[test]
fn production_signs_with_mounted_keys() {
    let cfg = mpr::config::Config::load(Some(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/production.toml"
    ))))
    .expect("config/production.toml loads");
    assert_eq!(cfg.trust.mode, mpr::config::TrustMode::Signed);
    for (file, secret) in [
        (&cfg.trust.registry_key_file, "mpr_registry_key"),
        (&cfg.trust.gateway_key_file, "mpr_gateway_key"),
    ] {
        let path = format!("/run/secrets/{secret}");
        assert_eq!(file.as_deref(), Some(std::path::Path::new(&path)));
        let c = compose();
        let mounted = c["services"]["registry"]["secrets"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|s| s.as_str() == Some(secret));
        assert!(mounted, "compose mounts {secret}");
        assert!(
            cfg.trust.clone().load().is_err(),
            "without the mounted files the keys cannot be read"
        );
    }
}
