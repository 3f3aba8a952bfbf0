//! No Docker engine runs here, so this checks that `docker-compose.yml` parses and names the
//! services, ports, volumes and settings the README promises: Apache Kafka in KRaft mode, a
//! one-shot topic initialiser, and the registry built from the repository's Dockerfile.

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
            .any(|p| p == "9092:9092")
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
            .any(|p| p == "8080:8080")
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
            "MPR_HTTP__LISTEN",
            "MPR_VIEW__PATH",
            "MPR_PROCESSOR__STATE_PATH",
            "MPR_LOG__JSON",
        ];
        assert!(known.contains(&k), "unexpected variable {k}");
    }
}
