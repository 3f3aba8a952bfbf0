//! Contract tests for `contracts/mpr_public_contracts_v0.schema.json` and the Avro wire format.
//!
//! They prove three things (issue 2, "Contracts"):
//! - every JSON the Rust types emit validates against the matching `$def` (real events of every
//!   event type come from the domain's own `decide`, not from hand-built values);
//! - every example (`examples/**/*.json`) and every vector command (`tests/vectors/*.json`)
//!   validates, and the example receipts carry the real bundle digest;
//! - Avro round-trips of commands and events are lossless (fixed cases plus a proptest over
//!   generated bundles).
//!
//! They also check that the schema and serde agree on a set of invalid documents, and that the
//! Avro schemas in `schemas/` carry the same fields and enum symbols as the JSON contract.
//!
//! The scenario runs in the default `signed` trust mode (MPR2 §8): every command reaches the
//! domain signed by the test gateway key unless a step says otherwise, every accepted receipt
//! is signed by a registered gate, and every event is sealed with the test registry key, so
//! the events validated here carry `signed_by`, `via`, `key` and `signature` as on the log.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use mpr::api::types::{
    Activation, ErrorResponse, PublishBundleRequest, PublishBundleResponse, PublishStatus,
    ResolveActiveResponse, ResolvedScope,
};
use mpr::codec::{self, avro};
use mpr::domain::bundle::{
    Artifact, BundleKind, Compatibility, FeatureGroupRef, GateVerdict, Provenance, sha256_hex,
};
use mpr::domain::command::{PublishBundle, RegisterKey, RevokeKey};
use mpr::domain::decide;
use mpr::domain::event::{CommandSource, ErrorInfo, LogId, ScopeRef, verify_chain};
use mpr::domain::resolve::{MatchedRule, ResolveQuery, resolve};
use mpr::domain::state::{SlotRecord, UndecodableInput, infallible};
use mpr::domain::trust::{
    self, COMMAND_AVRO_TYPE, Credential, KeyOwnerKind, KeyRecord, KeySet, RECEIPT_TYPE, Signer,
    TrustRoots,
};
use mpr::domain::{
    Actor, BundleId, BundleVersion, Catalog, CatalogEntry, CatalogState, Command, CommandEnvelope,
    CommandInput, CommandResult, CommandType, Decision, Environment, ErrorCode, GateReceipt,
    Grants, LifecycleState, ModelBundle, Outcome, PartitionState, Posture, RegistryEvent,
    RegistryEventType, Rejection, RoleGrant, ScopeKey, Slot, TenantId, Timestamp,
};
use mpr::testkit;
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// The contract and its validators
// ---------------------------------------------------------------------------------------------

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const SCHEMA_ID: &str = "https://mpr.example/contracts/mpr_public_contracts_v0.schema.json";

static SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    let path = Path::new(ROOT).join("contracts/mpr_public_contracts_v0.schema.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
});

/// One validator per `$def`: `{"$ref": "#/$defs/<Name>", "$defs": <all defs>}`.
static VALIDATORS: LazyLock<HashMap<String, jsonschema::Validator>> = LazyLock::new(|| {
    let defs = SCHEMA["$defs"].as_object().expect("the contract has $defs");
    defs.keys()
        .map(|name| {
            let schema = json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "$ref": format!("#/$defs/{name}"),
                "$defs": SCHEMA["$defs"].clone(),
            });
            let validator = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .should_validate_formats(true)
                .build(&schema)
                .unwrap_or_else(|e| panic!("$def {name} does not compile: {e}"));
            (name.clone(), validator)
        })
        .collect()
});

fn validator(def: &str) -> &'static jsonschema::Validator {
    VALIDATORS
        .get(def)
        .unwrap_or_else(|| panic!("the contract has no $def {def}"))
}

fn is_valid(def: &str, value: &Value) -> bool {
    validator(def).is_valid(value)
}

/// Panics, listing every error with its instance path, unless `value` validates against `def`.
#[track_caller]
fn assert_valid(def: &str, value: &Value, ctx: &str) {
    let errors: Vec<String> = validator(def)
        .iter_errors(value)
        .map(|e| format!("  at '{}': {e}", e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{ctx}: does not validate against $defs/{def}:\n{}\ninstance: {}",
        errors.join("\n"),
        serde_json::to_string_pretty(value).unwrap()
    );
}

#[track_caller]
fn assert_invalid(def: &str, value: &Value, ctx: &str) {
    assert!(
        !is_valid(def, value),
        "{ctx}: unexpectedly validates against $defs/{def}: {value}"
    );
}

/// Serializes `value` with serde, validates the JSON against `def` and returns it.
#[track_caller]
fn emit<T: Serialize>(def: &str, value: &T, ctx: &str) -> Value {
    let json = serde_json::to_value(value).expect("serializes");
    assert_valid(def, &json, ctx);
    json
}

/// `emit`, plus: the JSON deserializes back into an equal value.
#[track_caller]
fn emit_round_trip<T>(def: &str, value: &T, ctx: &str) -> Value
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let json = emit(def, value, ctx);
    let back: T = serde_json::from_value(json.clone())
        .unwrap_or_else(|e| panic!("{ctx}: emitted JSON does not deserialize: {e}"));
    assert_eq!(&back, value, "{ctx}: JSON round trip");
    json
}

const COMMAND_DEFS: [(CommandType, &str); 15] = [
    (CommandType::Publish, "PublishCommand"),
    (CommandType::Nominate, "NominateCommand"),
    (CommandType::Approve, "ApproveCommand"),
    (CommandType::Reject, "RejectCommand"),
    (CommandType::Promote, "PromoteCommand"),
    (CommandType::Rollback, "RollbackCommand"),
    (CommandType::Retire, "RetireCommand"),
    (CommandType::SetCatalog, "SetCatalogCommand"),
    (CommandType::RegisterKey, "RegisterKeyCommand"),
    (CommandType::RevokeKey, "RevokeKeyCommand"),
    (CommandType::SetRollbackPolicy, "SetRollbackPolicyCommand"),
    (CommandType::Observe, "ObserveCommand"),
    (CommandType::CanarySetShare, "CanarySetShareCommand"),
    (CommandType::CanaryComplete, "CanaryCompleteCommand"),
    (CommandType::CanaryAbort, "CanaryAbortCommand"),
];

fn command_def(t: CommandType) -> &'static str {
    COMMAND_DEFS.iter().find(|(ct, _)| *ct == t).unwrap().1
}

/// Validates an envelope against `CommandEnvelope` and its own command def (and no other one),
/// and checks that the JSON deserializes back into the same envelope.
#[track_caller]
fn check_envelope(env: &CommandEnvelope, ctx: &str) -> Value {
    let json = emit_round_trip("CommandEnvelope", env, ctx);
    let own = command_def(env.command.command_type());
    for (_, def) in COMMAND_DEFS {
        if def == own {
            assert_valid(def, &json, ctx);
        } else {
            assert_invalid(def, &json, &format!("{ctx} (against {def})"));
        }
    }
    let decoded = codec::decode_command(&serde_json::to_vec(&json).unwrap(), None)
        .unwrap_or_else(|e| panic!("{ctx}: codec rejects its own JSON: {e}"));
    assert_eq!(&decoded, env, "{ctx}: codec JSON round trip");
    json
}

// ---------------------------------------------------------------------------------------------
// The contract itself
// ---------------------------------------------------------------------------------------------

#[test]
fn contract_is_a_valid_2020_12_schema_with_the_required_defs() {
    let schema = &*SCHEMA;
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["$id"], SCHEMA_ID);
    if let Err(e) = jsonschema::meta::validate(schema) {
        panic!("the contract is not a valid JSON Schema: {e}");
    }
    let defs = schema["$defs"].as_object().unwrap();
    let required = [
        "BundleId",
        "BundleVersion",
        "ScopeKey",
        "ModelBundle",
        "ModelBundleRef",
        "GateReceipt",
        "PublishBundleRequest",
        "PublishBundleResponse",
        "LifecycleState",
        "RegistryEventType",
        "RegistryEvent",
        "NominateCommand",
        "ApproveCommand",
        "RejectCommand",
        "PromoteCommand",
        "RollbackCommand",
        "RetireCommand",
        "PublishCommand",
        "SetCatalogCommand",
        "RegisterKeyCommand",
        "RevokeKeyCommand",
        "CommandEnvelope",
        "CommandResult",
        "ResolveActiveRequest",
        "ResolveActiveResponse",
        "ErrorCode",
        "ErrorResponse",
        "CatalogEntry",
        "Signature",
        "KeyId",
        "PublicKey",
        "KeyOwnerKind",
        "KeyRecord",
        "RegisterKeyPayload",
        "RevokeKeyPayload",
    ];
    for name in required {
        assert!(defs.contains_key(name), "missing $def {name}");
    }
    for (name, def) in defs {
        let text = def["description"].as_str().unwrap_or("");
        assert!(!text.trim().is_empty(), "$def {name} has no description");
    }
    // Every def compiles.
    assert_eq!(VALIDATORS.len(), defs.len());
}

#[test]
fn enums_match_the_rust_wire_names() {
    fn symbols(def: &str) -> Vec<String> {
        SCHEMA["$defs"][def]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("$def {def} is not an enum"))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    }
    fn wire<T: Serialize>(values: &[T]) -> Vec<String> {
        values
            .iter()
            .map(|v| {
                serde_json::to_value(v)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }
    let names = |v: &[String]| v.to_vec();
    assert_eq!(
        symbols("ErrorCode"),
        names(&ErrorCode::ALL.map(|c| c.as_str().to_owned()))
    );
    let event_types = [
        RegistryEventType::BundleRegistered,
        RegistryEventType::BundleNominated,
        RegistryEventType::BundleApproved,
        RegistryEventType::BundleRejected,
        RegistryEventType::BundlePromoted,
        RegistryEventType::BundleRolledBack,
        RegistryEventType::BundleRetired,
        RegistryEventType::CatalogUpdated,
        RegistryEventType::KeyRegistered,
        RegistryEventType::KeyRevoked,
        RegistryEventType::CommandNoop,
        RegistryEventType::CommandRejected,
        RegistryEventType::RollbackPolicySet,
        RegistryEventType::SignalsObserved,
        RegistryEventType::CanaryStarted,
        RegistryEventType::CanaryShareChanged,
        RegistryEventType::CanaryCompleted,
        RegistryEventType::CanaryAborted,
    ];
    assert_eq!(
        symbols("RegistryEventType"),
        names(&event_types.map(|t| t.as_str().to_owned()))
    );
    let states = [
        LifecycleState::Registered,
        LifecycleState::Candidate,
        LifecycleState::Approved,
        LifecycleState::Active,
        LifecycleState::Retired,
        LifecycleState::Rejected,
    ];
    assert_eq!(
        symbols("LifecycleState"),
        names(&states.map(|s| s.as_str().to_owned()))
    );
    assert_eq!(
        symbols("CommandType"),
        names(&COMMAND_DEFS.map(|(t, _)| t.as_str().to_owned()))
    );
    let rules = [
        MatchedRule::DegradeTenant,
        MatchedRule::DegradeGlobal,
        MatchedRule::Tenant,
        MatchedRule::Global,
    ];
    assert_eq!(
        symbols("MatchedRule"),
        names(&rules.map(|r| r.as_str().to_owned()))
    );
    // The rest through serde, so a rename in Rust shows up here.
    assert_eq!(
        symbols("Outcome"),
        wire(&[
            Outcome::Accepted,
            Outcome::Duplicate,
            Outcome::Noop,
            Outcome::Rejected
        ])
    );
    assert_eq!(symbols("LogId"), wire(&[LogId::Events, LogId::Catalog]));
    assert_eq!(
        symbols("Slot"),
        wire(&[Slot::Primary, Slot::Degrade, Slot::Canary])
    );
    assert_eq!(
        symbols("Posture"),
        wire(&[Posture::FailClosed, Posture::Warn])
    );
    assert_eq!(
        symbols("BundleKind"),
        wire(&[BundleKind::Model, BundleKind::Policy])
    );
    assert_eq!(
        symbols("KeyOwnerKind"),
        wire(&[KeyOwnerKind::Principal, KeyOwnerKind::Gate])
    );
    assert_eq!(
        symbols("GateVerdict"),
        wire(&[GateVerdict::Pass, GateVerdict::Fail])
    );
    assert_eq!(
        symbols("PublishStatus"),
        wire(&[
            PublishStatus::Accepted,
            PublishStatus::Duplicate,
            PublishStatus::Rejected
        ])
    );
    for code in ErrorCode::ALL {
        let info = ErrorInfo::from(Rejection::new(code, "x"));
        assert_valid(
            "ErrorInfo",
            &serde_json::to_value(&info).unwrap(),
            code.as_str(),
        );
        let mut wrong = serde_json::to_value(&info).unwrap();
        wrong["retryable"] = json!(!code.retryable());
        assert_invalid("ErrorInfo", &wrong, "retryable contradicting the code");
    }
}

/// The Avro schemas carry the same records (fields) and enums (symbols) as the JSON contract.
#[test]
fn avro_schemas_carry_the_contract_fields_and_symbols() {
    fn walk(t: &Value, named: &mut BTreeMap<String, Vec<String>>) {
        match t {
            Value::Array(items) => items.iter().for_each(|x| walk(x, named)),
            Value::Object(o) => match o.get("type").and_then(Value::as_str) {
                Some("record") => {
                    let fields: Vec<String> = o["fields"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|f| f["name"].as_str().unwrap().to_owned())
                        .collect();
                    named.insert(o["name"].as_str().unwrap().to_owned(), fields);
                    for f in o["fields"].as_array().unwrap() {
                        walk(&f["type"], named);
                    }
                }
                Some("enum") => {
                    let symbols = o["symbols"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| s.as_str().unwrap().to_owned())
                        .collect();
                    named.insert(o["name"].as_str().unwrap().to_owned(), symbols);
                }
                Some("array") => walk(&o["items"], named),
                Some("map") => walk(&o["values"], named),
                _ => {}
            },
            _ => {}
        }
    }
    // Avro name -> contract $def.
    let mapping: BTreeMap<&str, &str> = [
        ("PublishBundle", "PublishPayload"),
        ("Promote", "PromotePayload"),
        ("Rollback", "RollbackPayload"),
        ("RegisterKey", "RegisterKeyPayload"),
        ("RevokeKey", "RevokeKeyPayload"),
    ]
    .into();
    for file in [
        "command_envelope.avsc",
        "registry_event.avsc",
        "signal.avsc",
    ] {
        let path = Path::new(ROOT).join("schemas").join(file);
        let avsc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut named = BTreeMap::new();
        walk(&avsc, &mut named);
        for (name, members) in named {
            if file == "command_envelope.avsc" && name == "CommandEnvelope" {
                continue; // Avro carries one optional field per body instead of `payload`.
            }
            let def_name = mapping.get(name.as_str()).copied().unwrap_or(&name);
            let def = &SCHEMA["$defs"][def_name];
            assert!(
                def.is_object(),
                "{file}: Avro type {name} has no $def {def_name}"
            );
            let expected: BTreeSet<String> = if let Some(symbols) = def["enum"].as_array() {
                symbols
                    .iter()
                    .map(|s| s.as_str().unwrap().to_owned())
                    .collect()
            } else {
                def["properties"]
                    .as_object()
                    .unwrap_or_else(|| panic!("$def {def_name} has no properties"))
                    .keys()
                    .cloned()
                    .collect()
            };
            let got: BTreeSet<String> = members.into_iter().collect();
            assert_eq!(got, expected, "{file}: Avro {name} vs $defs/{def_name}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A scenario driven through the real domain: events of every type
// ---------------------------------------------------------------------------------------------

const PUBLISHER: &str = "svc-model-factory";
const APPROVER: &str = "alice@risk-ml";
const DEPLOYER: &str = "bob-deployer";
const ADMIN: &str = "carol-admin";
const DEV_DEPLOYER: &str = "dave-dev";
const OBSERVER: &str = "olly-observer";

fn grants() -> Grants {
    let g = |a: &str, roles: &[&str]| {
        (
            a.parse::<Actor>().unwrap(),
            roles
                .iter()
                .map(|r| r.parse::<RoleGrant>().unwrap())
                .collect::<Vec<_>>(),
        )
    };
    Grants::enforced([
        // The publisher may also approve, so separation of duties (not FORBIDDEN) refuses it.
        g(PUBLISHER, &["publisher", "approver"]),
        g("svc-policy-ci", &["publisher"]),
        g(APPROVER, &["approver"]),
        g(DEPLOYER, &["deployer@prod,staging"]),
        g(ADMIN, &["admin"]),
        g(DEV_DEPLOYER, &["deployer@dev"]),
        g(OBSERVER, &["observer"]),
    ])
}

/// The trust roots of the scenario: signatures required, the test gateway key.
fn signed_roots() -> TrustRoots {
    TrustRoots {
        require_signatures: true,
        gateway: KeySet::of([testkit::gateway_signer().verifying_key()]),
        registry: KeySet::of([testkit::registry_signer().verifying_key()]),
    }
}

/// How a command reaches the domain.
enum Sig<'a> {
    /// Signed by the API gateway for its actor (what the HTTP API does).
    Gateway,
    /// Signed by this key (a producer signing for itself).
    Key(&'a Signer),
    /// No `mpr-signature` header.
    Unsigned,
}

/// The credential of `envelope` sent as Avro and signed as `sig` says.
fn credential(envelope: &CommandEnvelope, sig: &Sig) -> Credential {
    let signer = match sig {
        Sig::Gateway => testkit::gateway_signer(),
        Sig::Key(s) => (*s).clone(),
        Sig::Unsigned => return Credential::Unsigned,
    };
    let json_only = envelope.command.json_only();
    let (payload_type, body) = if json_only {
        (
            mpr::domain::trust::COMMAND_JSON_TYPE,
            mpr::domain::bundle::canonical_json(envelope),
        )
    } else {
        (COMMAND_AVRO_TYPE, avro::encode_command(envelope))
    };
    Credential::Signed {
        signature: signer.sign(payload_type, &body),
        payload_type,
        body,
    }
}

/// `r` signed by the test gate (registered for [`testkit::GATE_NAME`] in every World).
fn signed(mut r: GateReceipt) -> GateReceipt {
    r.signature = Some(testkit::gate_signer().sign(RECEIPT_TYPE, &trust::receipt_body(&r)));
    r
}

/// A signed PASS receipt for `b`.
fn receipt(b: &ModelBundle) -> GateReceipt {
    signed(testkit::pass_receipt(b))
}

/// PUBLISH of the testkit bundle `id@version` with a signed PASS receipt.
fn publish(actor: &str, id: &str, version: &str) -> CommandEnvelope {
    let b = testkit::bundle(id, version);
    let r = receipt(&b);
    publish_of(actor, b, r)
}

/// REGISTER_KEY of `key` for `owner`, by `actor`.
fn register_key(actor: &str, kind: KeyOwnerKind, owner: &str, key: &Signer) -> CommandEnvelope {
    testkit::envelope(
        actor,
        Command::RegisterKey(RegisterKey {
            owner_kind: kind,
            owner: owner.to_owned(),
            public_key: key.public_hex(),
        }),
    )
}

/// REVOKE_KEY of `key_id`, by `actor`.
fn revoke_key(actor: &str, key_id: &str) -> CommandEnvelope {
    testkit::envelope(
        actor,
        Command::RevokeKey(RevokeKey {
            key_id: key_id.to_owned(),
        }),
    )
}

/// Everything a scenario produced.
struct World {
    part: PartitionState,
    cat: CatalogState,
    grants: Grants,
    events: Vec<RegistryEvent>,
    catalog_events: Vec<RegistryEvent>,
    /// Every result, repeats included.
    results: Vec<CommandResult>,
    offset: i64,
}

impl World {
    /// A signed registry whose catalog log has registered the test gate's key (the first
    /// catalog event).
    fn new() -> Self {
        let mut grants = grants();
        grants.trust = signed_roots();
        let mut w = Self {
            part: PartitionState::new(0),
            cat: CatalogState::new(),
            grants,
            events: Vec::new(),
            catalog_events: Vec::new(),
            results: Vec::new(),
            offset: 0,
        };
        let r = w.submit(testkit::register_test_gate(ADMIN));
        expect(
            &r,
            RegistryEventType::KeyRegistered,
            Outcome::Accepted,
            None,
        );
        w
    }

    fn next_input(&mut self, envelope: CommandEnvelope, sig: &Sig) -> CommandInput {
        self.offset += 1;
        CommandInput {
            credential: credential(&envelope, sig),
            envelope,
            source: CommandSource {
                partition: 0,
                offset: self.offset,
            },
            observed_at: Timestamp::from_millis(1_795_000_000_000 + self.offset * 1_001),
        }
    }

    /// Records the decision; an appended event is sealed with the registry key first, as
    /// the processor's shell does before producing it.
    fn take(&mut self, d: Decision) -> CommandResult {
        let r = match d {
            Decision::Append(mut e) => {
                e.sign(&testkit::registry_signer());
                let r = CommandResult::from_event(&e);
                if e.log == LogId::Catalog {
                    self.cat.apply(&e).unwrap();
                    self.catalog_events.push(e);
                } else {
                    self.part.apply(&e).unwrap();
                    self.events.push(e);
                }
                r
            }
            Decision::Repeat(r) => r,
        };
        self.results.push(r.clone());
        r
    }

    /// Routes like the processor: platform commands (SET_CATALOG, REGISTER_KEY, REVOKE_KEY)
    /// to the catalog log, the rest to the partition. Signed by the gateway.
    fn submit(&mut self, envelope: CommandEnvelope) -> CommandResult {
        self.submit_signed(envelope, Sig::Gateway)
    }

    /// [`World::submit`], signed as `sig` says.
    fn submit_signed(&mut self, envelope: CommandEnvelope, sig: Sig) -> CommandResult {
        let input = self.next_input(envelope, &sig);
        let d = infallible(decide::route(
            &self.part,
            &self.part.chain,
            &self.cat,
            &self.grants,
            &input,
        ));
        self.take(d)
    }

    /// Sends a command to the bundle partition whatever its type.
    fn submit_to_partition(&mut self, envelope: CommandEnvelope) -> CommandResult {
        let input = self.next_input(envelope, &Sig::Gateway);
        let d = self.part.decide(&self.cat.catalog, &self.grants, &input);
        self.take(d)
    }

    fn undecodable(&mut self, bytes: &[u8]) -> CommandResult {
        let err = codec::decode_command(bytes, Some(codec::CONTENT_TYPE_JSON))
            .expect_err("the bytes are invalid");
        self.offset += 1;
        let input = UndecodableInput {
            command_id: err.command_id.expect("the command_id is recoverable"),
            bundle_id: Some("fraud-scorer".parse().unwrap()),
            error: err.rejection(),
            source: CommandSource {
                partition: 0,
                offset: self.offset,
            },
            observed_at: Timestamp::from_millis(1_795_000_000_000 + self.offset * 1_001),
        };
        let d = self.part.decide_undecodable(&input);
        self.take(d)
    }

    /// The event that recorded `r`.
    fn event_of(&self, r: &CommandResult) -> &RegistryEvent {
        self.events
            .iter()
            .chain(&self.catalog_events)
            .find(|e| e.event_id == r.event_id)
            .expect("the result's event was recorded")
    }
}

fn env_with(actor: &str, command: Command, reason: Option<&str>) -> CommandEnvelope {
    let mut e = testkit::envelope(actor, command);
    e.reason = reason.map(str::to_owned);
    e
}

fn publish_of(actor: &str, b: ModelBundle, receipt: GateReceipt) -> CommandEnvelope {
    testkit::envelope(
        actor,
        Command::Publish(PublishBundle {
            bundle: b,
            gate_receipt: receipt,
        }),
    )
}

fn target_cmd(actor: &str, kind: CommandType, id: &str, version: &str) -> CommandEnvelope {
    let t = testkit::target(id, version);
    let command = match kind {
        CommandType::Nominate => Command::Nominate(t),
        CommandType::Approve => Command::Approve(t),
        CommandType::Reject => Command::Reject(t),
        CommandType::Retire => Command::Retire(t),
        other => panic!("{other:?} is not a target command"),
    };
    testkit::envelope(actor, command)
}

fn catalog_entry(
    env: &str,
    groups: &[(&str, &str)],
    schemas: &[&str],
    posture: Posture,
) -> CatalogEntry {
    CatalogEntry {
        environment: env.parse().unwrap(),
        feature_groups: groups
            .iter()
            .map(|(n, v)| FeatureGroupRef {
                name: (*n).into(),
                version: (*v).into(),
            })
            .collect(),
        schema_versions: schemas.iter().map(|s| (*s).to_owned()).collect(),
        posture,
        required_gates: Vec::new(),
    }
}

#[track_caller]
fn expect(
    r: &CommandResult,
    event_type: RegistryEventType,
    outcome: Outcome,
    code: Option<ErrorCode>,
) {
    assert_eq!(
        (r.event_type, r.outcome, r.error.as_ref().map(|e| e.code)),
        (event_type, outcome, code),
        "unexpected result: {r:?}"
    );
}

/// Publishes, nominates and approves `id@version` (testkit bundle).
fn approved(w: &mut World, id: &str, version: &str) {
    let r = w.submit(publish(PUBLISHER, id, version));
    expect(
        &r,
        RegistryEventType::BundleRegistered,
        Outcome::Accepted,
        None,
    );
    let r = w.submit(target_cmd(APPROVER, CommandType::Nominate, id, version));
    expect(
        &r,
        RegistryEventType::BundleNominated,
        Outcome::Accepted,
        None,
    );
    let r = w.submit(target_cmd(APPROVER, CommandType::Approve, id, version));
    expect(
        &r,
        RegistryEventType::BundleApproved,
        Outcome::Accepted,
        None,
    );
}

/// A scenario that makes the domain emit every event type, every outcome and most error codes.
fn scenario() -> World {
    use CommandType as T;
    use ErrorCode as E;
    use Outcome as O;
    use RegistryEventType as R;
    let mut w = World::new();
    let fs = "fraud-scorer";

    // Catalog: updated, no-op, forbidden.
    let prod = catalog_entry(
        "prod",
        &[("features", "1")],
        &["decision-input/v1"],
        Posture::FailClosed,
    );
    let staging = catalog_entry("staging", &[], &[], Posture::Warn);
    let r = w.submit(env_with(
        ADMIN,
        Command::SetCatalog(prod.clone()),
        Some("prod feature store 2026-11"),
    ));
    expect(&r, R::CatalogUpdated, O::Accepted, None);
    let r = w.submit(testkit::envelope(ADMIN, Command::SetCatalog(staging)));
    expect(&r, R::CatalogUpdated, O::Accepted, None);
    let r = w.submit(testkit::envelope(ADMIN, Command::SetCatalog(prod.clone())));
    expect(&r, R::CommandNoop, O::Noop, None);
    let r = w.submit(testkit::envelope(
        DEPLOYER,
        Command::SetCatalog(prod.clone()),
    ));
    expect(&r, R::CommandRejected, O::Rejected, Some(E::Forbidden));
    // SET_CATALOG that reaches a bundle partition.
    let r = w.submit_to_partition(testkit::envelope(ADMIN, Command::SetCatalog(prod)));
    expect(&r, R::CommandRejected, O::Rejected, Some(E::InvalidPayload));

    // Publish: registered (with a unicode reason), duplicate, immutable conflict.
    let mut first = publish(PUBLISHER, fs, "1.0.0");
    first.reason = Some("Erstveröffentlichung — 初版 🚀".into());
    let r = w.submit(first);
    expect(&r, R::BundleRegistered, O::Accepted, None);
    let r = w.submit(publish(PUBLISHER, fs, "1.0.0"));
    expect(&r, R::CommandNoop, O::Duplicate, None);
    let mut changed = testkit::bundle(fs, "1.0.0");
    changed
        .metadata
        .insert("owner".into(), "someone-else".into());
    let rc = receipt(&changed);
    let r = w.submit(publish_of(PUBLISHER, changed, rc));
    expect(
        &r,
        R::CommandRejected,
        O::Rejected,
        Some(E::ImmutableConflict),
    );

    // Lifecycle of 1.0.0: nominate, no-op, separation of duties, approve.
    let r = w.submit(target_cmd(APPROVER, T::Nominate, fs, "1.0.0"));
    expect(&r, R::BundleNominated, O::Accepted, None);
    let r = w.submit(target_cmd(APPROVER, T::Nominate, fs, "1.0.0"));
    expect(&r, R::CommandNoop, O::Noop, None);
    let r = w.submit(target_cmd(PUBLISHER, T::Approve, fs, "1.0.0"));
    expect(
        &r,
        R::CommandRejected,
        O::Rejected,
        Some(E::SeparationOfDuties),
    );
    let approve = target_cmd(APPROVER, T::Approve, fs, "1.0.0");
    let r = w.submit(approve.clone());
    expect(&r, R::BundleApproved, O::Accepted, None);
    // A repeated command_id answers the first result and appends nothing.
    let before = w.events.len();
    let again = w.submit(approve);
    assert_eq!(again, r, "repeat returns the first result");
    assert_eq!(w.events.len(), before);

    // Promote: accepted, no-op, forbidden.
    let r = w.submit(testkit::promote(DEPLOYER, fs, "1.0.0", "prod", "*", false));
    expect(&r, R::BundlePromoted, O::Accepted, None);
    let r = w.submit(testkit::promote(DEPLOYER, fs, "1.0.0", "prod", "*", false));
    expect(&r, R::CommandNoop, O::Noop, None);
    let r = w.submit(testkit::promote(
        DEV_DEPLOYER,
        fs,
        "1.0.0",
        "prod",
        "*",
        false,
    ));
    expect(&r, R::CommandRejected, O::Rejected, Some(E::Forbidden));

    // 1.1.0 replaces 1.0.0 in prod (1.0.0 goes back to APPROVED), and binds the degrade slot
    // of a staging tenant under the warn posture (warnings recorded).
    approved(&mut w, fs, "1.1.0");
    let r = w.submit(testkit::promote(DEPLOYER, fs, "1.1.0", "prod", "*", false));
    expect(&r, R::BundlePromoted, O::Accepted, None);
    let promoted = w.events.last().unwrap();
    assert_eq!(promoted.state_changes.len(), 2, "{promoted:?}");
    let r = w.submit(testkit::promote(
        DEPLOYER,
        fs,
        "1.1.0",
        "staging",
        "acme-bank",
        true,
    ));
    expect(&r, R::BundlePromoted, O::Accepted, None);
    assert!(!r.warnings.is_empty(), "warn posture records the gaps");
    let r = w.submit(testkit::promote(
        DEPLOYER,
        fs,
        "1.1.0",
        "prod",
        "acme-bank",
        false,
    ));
    expect(&r, R::BundlePromoted, O::Accepted, None);

    // Rollback: accepted, then nothing left.
    let mut rb = testkit::rollback(DEPLOYER, fs, "prod", "*", false);
    rb.reason = Some("p99 latency regression in 1.1.0".into());
    let r = w.submit(rb);
    expect(&r, R::BundleRolledBack, O::Accepted, None);
    assert_eq!(r.bundle_version, Some("1.0.0".parse().unwrap()));
    let r = w.submit(testkit::rollback(DEPLOYER, fs, "prod", "*", false));
    expect(
        &r,
        R::CommandRejected,
        O::Rejected,
        Some(E::NothingToRollBack),
    );

    // Reject, then an illegal transition.
    let r = w.submit(publish(PUBLISHER, fs, "1.2.0-rc.1"));
    expect(&r, R::BundleRegistered, O::Accepted, None);
    let r = w.submit(target_cmd(APPROVER, T::Nominate, fs, "1.2.0-rc.1"));
    expect(&r, R::BundleNominated, O::Accepted, None);
    let r = w.submit(target_cmd(APPROVER, T::Reject, fs, "1.2.0-rc.1"));
    expect(&r, R::BundleRejected, O::Accepted, None);
    let r = w.submit(target_cmd(APPROVER, T::Approve, fs, "1.2.0-rc.1"));
    expect(
        &r,
        R::CommandRejected,
        O::Rejected,
        Some(E::IllegalTransition),
    );

    // Retire: accepted when bound nowhere, refused while ACTIVE.
    approved(&mut w, fs, "0.9.0");
    let r = w.submit(target_cmd(ADMIN, T::Retire, fs, "0.9.0"));
    expect(&r, R::BundleRetired, O::Accepted, None);
    let r = w.submit(target_cmd(ADMIN, T::Retire, fs, "1.1.0"));
    expect(
        &r,
        R::CommandRejected,
        O::Rejected,
        Some(E::IllegalTransition),
    );

    // Gate evidence and intake errors.
    let b = testkit::bundle(fs, "1.3.0");
    let mut fail = testkit::pass_receipt(&b);
    fail.verdict = GateVerdict::Fail;
    let fail = signed(fail);
    let r = w.submit(publish_of(PUBLISHER, b.clone(), fail));
    expect(&r, R::CommandRejected, O::Rejected, Some(E::GateNotPass));
    let other = receipt(&testkit::bundle(fs, "1.3.1"));
    let r = w.submit(publish_of(PUBLISHER, b.clone(), other));
    expect(
        &r,
        R::CommandRejected,
        O::Rejected,
        Some(E::GateReceiptMismatch),
    );
    let mut empty = b;
    empty.artifacts.clear();
    let rc = receipt(&empty);
    let r = w.submit(publish_of(PUBLISHER, empty, rc));
    expect(&r, R::CommandRejected, O::Rejected, Some(E::InvalidPayload));
    let r = w.submit(target_cmd(APPROVER, T::Nominate, fs, "9.9.9"));
    expect(&r, R::CommandRejected, O::Rejected, Some(E::UnknownBundle));

    // Fail-closed compatibility.
    let mut needs_more = testkit::bundle(fs, "2.0.0");
    needs_more
        .compatibility
        .feature_groups
        .push(FeatureGroupRef {
            name: "txn_velocity".into(),
            version: "4".into(),
        });
    let rc = receipt(&needs_more);
    let r = w.submit(publish_of(PUBLISHER, needs_more, rc));
    expect(&r, R::BundleRegistered, O::Accepted, None);
    w.submit(target_cmd(APPROVER, T::Nominate, fs, "2.0.0"));
    w.submit(target_cmd(APPROVER, T::Approve, fs, "2.0.0"));
    let r = w.submit(testkit::promote(DEPLOYER, fs, "2.0.0", "prod", "*", false));
    expect(&r, R::CommandRejected, O::Rejected, Some(E::Incompatible));

    // A second family in the same partition.
    approved(&mut w, "pricing-policy", "2.0.0");
    let r = w.submit(testkit::promote(
        DEPLOYER,
        "pricing-policy",
        "2.0.0",
        "staging",
        "*",
        true,
    ));
    expect(&r, R::BundlePromoted, O::Accepted, None);

    trust_scenario(&mut w);

    // A command whose body cannot be decoded but whose command_id can.
    let r = w.undecodable(
        br#"{"command_id":"0b7c7f0e-3d0c-4a55-9d8e-5f3c2a1b0e99","actor":"x","command_type":"PROMOTE"}"#,
    );
    expect(&r, R::CommandRejected, O::Rejected, Some(E::InvalidPayload));
    assert_eq!(r.command_type, None);
    w
}

/// Keys, signed commands and signed receipts (MPR2 §8): every key-registry outcome, every
/// refusal of authentication, and receipts that do not verify or do not cover the gates an
/// environment requires. The events record who signed (`signed_by`, `via`) and the key.
fn trust_scenario(w: &mut World) {
    use ErrorCode as E;
    use KeyOwnerKind::{Gate, Principal};
    use Outcome as O;
    use RegistryEventType as R;
    let fs = "fraud-scorer";
    let approver_key = Signer::from_seed([0xA1; 32]);

    // Every command so far came through the gateway: recorded as such.
    let gateway = testkit::gateway_signer();
    assert!(w.events.iter().chain(&w.catalog_events).all(|e| {
        e.signed_by.as_deref() == Some(gateway.key_id()) && e.via.as_deref() == Some("api-gateway")
    }));

    // Key registry: registered, the same again is a no-op, another owner is refused.
    let r = w.submit(register_key(ADMIN, Principal, APPROVER, &approver_key));
    expect(&r, R::KeyRegistered, O::Accepted, None);
    let key = w
        .event_of(&r)
        .key
        .clone()
        .expect("KEY_REGISTERED records the key");
    assert_eq!(
        (key.key_id.as_str(), key.registered_seq, key.revoked_seq),
        (approver_key.key_id(), r.seq, None)
    );
    let r = w.submit(register_key(ADMIN, Principal, APPROVER, &approver_key));
    expect(&r, R::CommandNoop, O::Noop, None);
    let r = w.submit(register_key(ADMIN, Gate, "other-gate", &approver_key));
    expect(
        &r,
        R::CommandRejected,
        O::Rejected,
        Some(E::IllegalTransition),
    );
    let r = w.submit(register_key(DEPLOYER, Principal, DEPLOYER, &approver_key));
    expect(&r, R::CommandRejected, O::Rejected, Some(E::Forbidden));

    // The approver signs for itself: accepted, its key recorded, not via the gateway.
    let r = w.submit(publish(PUBLISHER, fs, "3.0.0"));
    expect(&r, R::BundleRegistered, O::Accepted, None);
    let r = w.submit_signed(
        target_cmd(APPROVER, CommandType::Nominate, fs, "3.0.0"),
        Sig::Key(&approver_key),
    );
    expect(&r, R::BundleNominated, O::Accepted, None);
    let e = w.event_of(&r);
    assert_eq!(
        (e.signed_by.as_deref(), e.via.as_deref()),
        (Some(approver_key.key_id()), None)
    );

    // Refusals: another principal's key, a gate's key, an unknown key, no signature. Each
    // records the key id it was presented (none for the unsigned one).
    let stranger = Signer::from_seed([0xEE; 32]);
    for (actor, sig, presented, says) in [
        (
            DEPLOYER,
            Sig::Key(&approver_key),
            Some(approver_key.key_id()),
            "principal alice@risk-ml",
        ),
        (
            APPROVER,
            Sig::Key(&testkit::gate_signer()),
            Some(testkit::gate_signer().key_id()),
            "not to a principal",
        ),
        (
            APPROVER,
            Sig::Key(&stranger),
            Some(stranger.key_id()),
            "not registered",
        ),
        (APPROVER, Sig::Unsigned, None, "no mpr-signature"),
    ] {
        let r = w.submit_signed(target_cmd(actor, CommandType::Approve, fs, "3.0.0"), sig);
        expect(
            &r,
            R::CommandRejected,
            O::Rejected,
            Some(E::Unauthenticated),
        );
        let message = &r.error.as_ref().unwrap().message;
        assert!(message.contains(says), "{says}: {message}");
        let e = w.event_of(&r);
        assert_eq!(
            (e.signed_by.as_deref(), e.via.as_deref()),
            (presented, None)
        );
    }

    // Revocation: final; revoking again is a no-op, an unknown key is UNKNOWN_KEY, the
    // revoked key can neither sign nor be registered again.
    let r = w.submit(revoke_key(ADMIN, approver_key.key_id()));
    expect(&r, R::KeyRevoked, O::Accepted, None);
    let revoked = w
        .event_of(&r)
        .key
        .clone()
        .expect("KEY_REVOKED records the key");
    assert_eq!(revoked.revoked_seq, Some(r.seq));
    let r = w.submit(revoke_key(ADMIN, approver_key.key_id()));
    expect(&r, R::CommandNoop, O::Noop, None);
    let r = w.submit(revoke_key(ADMIN, stranger.key_id()));
    expect(&r, R::CommandRejected, O::Rejected, Some(E::UnknownKey));
    let r = w.submit(register_key(ADMIN, Principal, APPROVER, &approver_key));
    expect(
        &r,
        R::CommandRejected,
        O::Rejected,
        Some(E::IllegalTransition),
    );
    let r = w.submit_signed(
        target_cmd(APPROVER, CommandType::Approve, fs, "3.0.0"),
        Sig::Key(&approver_key),
    );
    expect(
        &r,
        R::CommandRejected,
        O::Rejected,
        Some(E::Unauthenticated),
    );

    // Receipts: unsigned, or signed by a key no gate registered.
    let b = testkit::bundle(fs, "3.1.0");
    let r = w.submit(publish_of(PUBLISHER, b.clone(), testkit::pass_receipt(&b)));
    expect(
        &r,
        R::CommandRejected,
        O::Rejected,
        Some(E::GateReceiptUnverified),
    );
    let mut foreign = testkit::pass_receipt(&b);
    foreign.signature = Some(stranger.sign(RECEIPT_TYPE, &trust::receipt_body(&foreign)));
    let r = w.submit(publish_of(PUBLISHER, b, foreign));
    expect(
        &r,
        R::CommandRejected,
        O::Rejected,
        Some(E::GateReceiptUnverified),
    );

    // Required gates: two required, one receipt → GATE_MISSING; one required → promoted.
    let mut regulated = catalog_entry("regulated", &[], &[], Posture::Warn);
    regulated.required_gates = vec![testkit::GATE_NAME.into(), "bias-audit-v1".into()];
    let r = w.submit(testkit::envelope(
        ADMIN,
        Command::SetCatalog(regulated.clone()),
    ));
    expect(&r, R::CatalogUpdated, O::Accepted, None);
    let r = w.submit(testkit::promote(
        ADMIN,
        fs,
        "1.0.0",
        "regulated",
        "*",
        false,
    ));
    expect(&r, R::CommandRejected, O::Rejected, Some(E::GateMissing));
    assert!(r.error.unwrap().message.contains("bias-audit-v1"));
    regulated.required_gates.pop();
    let r = w.submit(testkit::envelope(ADMIN, Command::SetCatalog(regulated)));
    expect(&r, R::CatalogUpdated, O::Accepted, None);
    let r = w.submit(testkit::promote(
        ADMIN,
        fs,
        "1.0.0",
        "regulated",
        "*",
        false,
    ));
    expect(&r, R::BundlePromoted, O::Accepted, None);

    autopilot_and_canary(w);
}

/// The autopilot and canary part of the scenario (MPR2 §9): a canary started, grown,
/// completed; another aborted; a rollback policy set; signals observed and ignored; a
/// SEV1 incident rolling the PRIMARY back as `mpr-autopilot`.
fn autopilot_and_canary(w: &mut World) {
    use RegistryEventType as R;
    use mpr::domain::autopilot::{Check, RollbackPolicy, Rule};
    use mpr::domain::command::{
        CanaryShare, ForwardedSignal, Observe, ScopeTarget, SetRollbackPolicy,
    };
    let (fam, env) = ("canary-scorer", "prod");
    for v in ["1.0.0", "2.0.0"] {
        let r = w.submit(publish(PUBLISHER, fam, v));
        expect(&r, R::BundleRegistered, Outcome::Accepted, None);
        let r = w.submit(target_cmd(APPROVER, CommandType::Nominate, fam, v));
        expect(&r, R::BundleNominated, Outcome::Accepted, None);
        let r = w.submit(target_cmd(APPROVER, CommandType::Approve, fam, v));
        expect(&r, R::BundleApproved, Outcome::Accepted, None);
    }
    let r = w.submit(testkit::promote(DEPLOYER, fam, "1.0.0", env, "*", false));
    expect(&r, R::BundlePromoted, Outcome::Accepted, None);
    let scope = ScopeTarget {
        bundle_id: fam.parse().unwrap(),
        environment: env.parse().unwrap(),
        tenant_id: "*".parse().unwrap(),
    };
    let canary = |v: &str, share: u32| {
        let mut e = testkit::promote(DEPLOYER, fam, v, env, "*", false);
        if let Command::Promote(p) = &mut e.command {
            p.canary_share_bp = Some(share);
        }
        e
    };
    let r = w.submit(canary("2.0.0", 500));
    expect(&r, R::CanaryStarted, Outcome::Accepted, None);
    let r = w.submit(testkit::envelope(
        DEPLOYER,
        Command::CanarySetShare(CanaryShare {
            scope: scope.clone(),
            share_bp: 2_000,
        }),
    ));
    expect(&r, R::CanaryShareChanged, Outcome::Accepted, None);
    let r = w.submit(testkit::envelope(
        DEPLOYER,
        Command::CanaryComplete(scope.clone()),
    ));
    expect(&r, R::CanaryCompleted, Outcome::Accepted, None);
    let r = w.submit(testkit::envelope(
        DEPLOYER,
        Command::CanaryAbort(scope.clone()),
    ));
    expect(
        &r,
        R::CommandRejected,
        Outcome::Rejected,
        Some(ErrorCode::NoCanary),
    );
    let r = w.submit(canary("1.0.0", 100));
    expect(&r, R::CanaryStarted, Outcome::Accepted, None);
    let r = w.submit(testkit::envelope(
        DEPLOYER,
        Command::CanaryAbort(scope.clone()),
    ));
    expect(&r, R::CanaryAborted, Outcome::Accepted, None);

    // A policy: any SEV1 incident about a bound version rolls it back.
    let r = w.submit(testkit::envelope(
        DEPLOYER,
        Command::SetRollbackPolicy(SetRollbackPolicy {
            scope: scope.clone(),
            policy: Some(RollbackPolicy {
                rules: vec![Rule {
                    rule_id: "sev1".into(),
                    check: Check::Incident { max_severity: 1 },
                }],
                cooldown_ms: 60_000,
                max_actions: 3,
                period_ms: 3_600_000,
                dry_run: false,
            }),
        }),
    ));
    expect(&r, R::RollbackPolicySet, Outcome::Accepted, None);

    // The observer's key, registered on the catalog log.
    let observer = Signer::from_seed([0x0b; 32]);
    let r = w.submit(register_key(
        ADMIN,
        KeyOwnerKind::Principal,
        OBSERVER,
        &observer,
    ));
    expect(&r, R::KeyRegistered, Outcome::Accepted, None);
    let digest = |v: &str| testkit::bundle(fam, v).digest();
    let signal = |offset: i64, kind: &str, name: &str, value: f64| {
        let s = json!({
            "signal_id": Uuid::from_u128(0x5151_0000 + offset as u128).to_string(),
            "actor": OBSERVER,
            "source": "pagerduty",
            "environment": env,
            "tenant_id": "*",
            "bundle_id": fam,
            "bundle_version": "2.0.0",
            "bundle_digest": digest("2.0.0"),
            "kind": kind,
            "name": name,
            "value": value,
            "window_start_utc": "2026-11-20T09:00:00.000Z",
            "window_end_utc": "2026-11-20T09:01:00.000Z",
            "observed_at_utc": "2026-11-20T09:01:00.000Z",
        });
        assert_valid("Signal", &s, "scenario signal");
        testkit::forwarded_signal(&s, offset, Some(&observer))
    };
    let observe = |signals: Vec<ForwardedSignal>| {
        testkit::envelope(
            mpr::domain::autopilot::AUTOPILOT_ACTOR,
            Command::Observe(Observe {
                scope: scope.clone(),
                signals,
            }),
        )
    };
    let registry = testkit::registry_signer();
    // The same signal as Avro (schemas/signal.avsc), signed over its Avro bytes.
    let avro_signal = |offset: i64| {
        let json = signal(offset, "METRIC", "latency_ms", 12.5);
        let bytes =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &json.payload)
                .unwrap();
        let s: mpr::domain::autopilot::Signal = serde_json::from_slice(&bytes).unwrap();
        let (bytes, sig) = codec::sign_avro_signal(&s, &observer);
        let (back, _) = codec::decode_signal(&bytes, None, Some(&sig)).unwrap();
        assert_eq!(back, s, "Avro signal round trip");
        ForwardedSignal {
            partition: 0,
            offset,
            content_type: codec::CONTENT_TYPE_AVRO.into(),
            payload: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes),
            signature: Some(sig),
        }
    };
    // A metric no rule reads, once as JSON and once as Avro: recorded and ignored; both
    // authenticate (none is refused).
    let r = w.submit_signed(
        observe(vec![
            signal(1, "METRIC", "latency_ms", 12.5),
            avro_signal(2),
        ]),
        Sig::Key(&registry),
    );
    expect(&r, R::SignalsObserved, Outcome::Accepted, None);
    let o = w
        .event_of(&r)
        .autopilot
        .as_ref()
        .unwrap()
        .observation
        .clone()
        .unwrap();
    assert_eq!((o.ignored, o.refused), (2, 0), "{o:?}");
    // A SEV1 incident about the PRIMARY: the autopilot rolls it back.
    let r = w.submit_signed(
        observe(vec![signal(3, "INCIDENT", "checkout-errors", 1.0)]),
        Sig::Key(&registry),
    );
    expect(&r, R::BundleRolledBack, Outcome::Accepted, None);
    let e = w.event_of(&r);
    assert_eq!(
        e.actor.as_ref().map(|a| a.as_str()),
        Some(mpr::domain::autopilot::AUTOPILOT_ACTOR)
    );
    let trigger = e
        .autopilot
        .as_ref()
        .and_then(|a| a.trigger.as_ref())
        .expect("the trigger is recorded");
    assert_eq!(trigger.rule_id, "sev1");
    // OBSERVE signed by any key but a registry key (here the gateway's) is refused.
    let r = w.submit(observe(vec![signal(4, "INCIDENT", "x", 1.0)]));
    expect(
        &r,
        R::CommandRejected,
        Outcome::Rejected,
        Some(ErrorCode::Unauthenticated),
    );
}

static WORLD: LazyLock<World> = LazyLock::new(scenario);

#[test]
fn scenario_covers_every_event_type_and_outcome() {
    let w = &*WORLD;
    let seen: BTreeSet<&str> = w
        .events
        .iter()
        .chain(&w.catalog_events)
        .map(|e| e.event_type.as_str())
        .collect();
    let all: BTreeSet<String> = SCHEMA["$defs"]["RegistryEventType"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        seen,
        all.iter().map(String::as_str).collect::<BTreeSet<_>>()
    );
    let outcomes: BTreeSet<String> = w
        .results
        .iter()
        .map(|r| {
            serde_json::to_value(r.outcome)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(outcomes.len(), 4, "{outcomes:?}");
    // Every code the domain raises for trust (MPR2 §8) is among them.
    let codes: BTreeSet<ErrorCode> = w
        .results
        .iter()
        .filter_map(|r| r.error.as_ref().map(|e| e.code))
        .collect();
    for code in [
        ErrorCode::Unauthenticated,
        ErrorCode::GateReceiptUnverified,
        ErrorCode::GateMissing,
        ErrorCode::UnknownKey,
    ] {
        assert!(codes.contains(&code), "{code} not raised: {codes:?}");
    }
    // Both logs form verified chains, and replay rebuilds the partition exactly.
    verify_chain(&w.events).unwrap();
    verify_chain(&w.catalog_events).unwrap();
    let mut replay = PartitionState::new(0);
    for e in &w.events {
        replay.apply(e).unwrap();
    }
    assert_eq!(replay, w.part);
}

#[test]
fn registry_events_and_command_results_validate() {
    let w = &*WORLD;
    for e in w.events.iter().chain(&w.catalog_events) {
        let ctx = format!("{:?} seq {} {}", e.log, e.seq, e.event_type.as_str());
        emit_round_trip("RegistryEvent", e, &ctx);
        if let Some(d) = &e.autopilot {
            // The `autopilot` string's content is an AutopilotDetail.
            assert_valid("AutopilotDetail", &serde_json::to_value(d).unwrap(), &ctx);
        }
        emit_round_trip("CommandResult", &CommandResult::from_event(e), &ctx);
        if e.command_type == Some(CommandType::Promote) {
            emit("PromoteResponse", &CommandResult::from_event(e), &ctx);
        }
        // The JSON hash is what the chain covers: recompute it from the emitted JSON
        // without `hash` and `signature` (and the autopilot's fields at their defaults);
        // the registry's signature covers that hash.
        let mut json = serde_json::to_value(e).unwrap();
        let obj = json.as_object_mut().unwrap();
        obj.remove("hash");
        obj.remove("signature");
        if obj["autopilot"].is_null() {
            obj.remove("autopilot");
        }
        if let Some(b) = obj.get_mut("binding").and_then(Value::as_object_mut)
            && b["cleared"] == false
        {
            b.remove("cleared");
        }
        assert_eq!(
            sha256_hex(&serde_jcs::to_vec(&json).unwrap()),
            e.hash,
            "{ctx}: hash over the canonical JSON"
        );
        e.authenticate(&testkit::registry_keys())
            .unwrap_or_else(|f| panic!("{ctx}: {f}"));
        let sig = e.signature.as_ref().unwrap();
        assert!(
            sig.verifies(
                &testkit::registry_signer().verifying_key(),
                trust::EVENT_TYPE,
                e.hash.as_bytes()
            ),
            "{ctx}: the signature covers the hash as 64 ASCII hex bytes"
        );
    }
    for r in &w.results {
        emit_round_trip("CommandResult", r, "result");
    }
}

#[test]
fn registry_events_that_break_the_rules_do_not_validate() {
    let w = &*WORLD;
    let registered = w
        .events
        .iter()
        .find(|e| e.event_type == RegistryEventType::BundleRegistered)
        .unwrap();
    let rejected = w
        .events
        .iter()
        .find(|e| e.event_type == RegistryEventType::CommandRejected)
        .unwrap();
    let base = serde_json::to_value(registered).unwrap();
    let mutate = |f: &dyn Fn(&mut Value)| {
        let mut v = base.clone();
        f(&mut v);
        v
    };
    let cases: Vec<(&str, Value)> = vec![
        ("no bundle", mutate(&|v| v["bundle"] = Value::Null)),
        ("outcome", mutate(&|v| v["outcome"] = json!("NOOP"))),
        (
            "missing field",
            mutate(&|v| {
                v.as_object_mut().unwrap().remove("reason");
            }),
        ),
        ("unknown field", mutate(&|v| v["extra"] = json!(1))),
        (
            "error on success",
            mutate(&|v| {
                v["error"] = json!({"code": "INTERNAL", "message": "x", "retryable": true})
            }),
        ),
        ("seq 0", mutate(&|v| v["seq"] = json!(0))),
        ("hash", mutate(&|v| v["hash"] = json!("ABC"))),
        (
            "missing signed_by",
            mutate(&|v| {
                v.as_object_mut().unwrap().remove("signed_by");
            }),
        ),
        ("via another party", mutate(&|v| v["via"] = json!("cli"))),
        (
            "signature not base64 of 64 bytes",
            mutate(&|v| v["signature"]["sig"] = json!("c2lnbmF0dXJl")),
        ),
        (
            "signature with another field",
            mutate(&|v| v["signature"]["alg"] = json!("ed25519")),
        ),
    ];
    for (what, v) in cases {
        assert_invalid("RegistryEvent", &v, what);
    }
    // A key belongs on KEY_REGISTERED and KEY_REVOKED only, and says whether it is revoked.
    let key_event = |t: RegistryEventType| {
        let e = w.catalog_events.iter().find(|e| e.event_type == t).unwrap();
        serde_json::to_value(e).unwrap()
    };
    let registered_key = key_event(RegistryEventType::KeyRegistered);
    let revoked_key = key_event(RegistryEventType::KeyRevoked);
    assert_valid("RegistryEvent", &registered_key, "KEY_REGISTERED");
    assert_valid("RegistryEvent", &revoked_key, "KEY_REVOKED");
    let key_cases: Vec<(&str, Value)> = vec![
        ("KEY_REGISTERED without key", {
            let mut v = registered_key.clone();
            v["key"] = Value::Null;
            v
        }),
        ("KEY_REGISTERED already revoked", {
            let mut v = registered_key.clone();
            v["key"]["revoked_seq"] = json!(9);
            v
        }),
        ("KEY_REVOKED not revoked", {
            let mut v = revoked_key.clone();
            v["key"]["revoked_seq"] = Value::Null;
            v
        }),
        ("KEY_REGISTERED on the events log", {
            let mut v = registered_key.clone();
            v["log"] = json!("EVENTS");
            v
        }),
        ("a key on a bundle event", {
            let mut v = base.clone();
            v["key"] = registered_key["key"].clone();
            v
        }),
    ];
    for (what, v) in key_cases {
        assert_invalid("RegistryEvent", &v, what);
    }
    let mut no_error = serde_json::to_value(rejected).unwrap();
    no_error["error"] = Value::Null;
    assert_invalid("RegistryEvent", &no_error, "COMMAND_REJECTED without error");
}

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

/// A rich bundle: several artifacts, unicode strings, a metadata map, an empty string value.
fn rich_bundle(version: &str) -> ModelBundle {
    let mut b = testkit::bundle("fraud-scorer", version);
    b.kind = BundleKind::Policy;
    b.artifacts.push(Artifact {
        name: "calibración.json".into(),
        uri: "s3://acme-ml-artifacts/fraud-scorer/calibración.json".into(),
        sha256: sha256_hex(b"calibration"),
        size_bytes: 0,
    });
    b.artifacts.push(Artifact {
        name: "weights.bin".into(),
        uri: "gs://bucket/weights.bin?generation=1".into(),
        sha256: sha256_hex(b"weights"),
        size_bytes: (1 << 53) - 1,
    });
    b.compatibility.feature_groups.push(FeatureGroupRef {
        name: "txn_velocity".into(),
        version: "3".into(),
    });
    b.compatibility.schema_versions.clear();
    b.provenance
        .dataset_manifest_refs
        .push("s3://acme/データ/manifest.json".into());
    b.metadata = BTreeMap::from([
        ("owner".into(), "risk-ml".into()),
        ("note".into(), "naïve — ünïcödé ✓ 🚀".into()),
        ("empty".into(), String::new()),
        ("ключ".into(), "значение".into()),
    ]);
    b
}

/// Every command type, with optional fields set and unset.
fn all_commands() -> Vec<CommandEnvelope> {
    let fs = "fraud-scorer";
    let mut out = Vec::new();
    let b = rich_bundle("3.1.4-beta.2+exp.sha.5114f85");
    let mut receipt = testkit::pass_receipt(&b);
    out.push(publish_of(PUBLISHER, b.clone(), receipt.clone()));
    receipt.evidence_refs.clear();
    let mut p = publish_of(PUBLISHER, b.clone(), receipt);
    p.reason = Some("Zweite Fassung: größere Kalibrierung 📈".into());
    out.push(p);
    out.push(publish_of(PUBLISHER, b.clone(), self::receipt(&b)));
    out.push(testkit::publish(PUBLISHER, fs, "1.0.0"));
    for t in [
        CommandType::Nominate,
        CommandType::Approve,
        CommandType::Reject,
        CommandType::Retire,
    ] {
        out.push(target_cmd(APPROVER, t, fs, "1.0.0"));
        let mut e = target_cmd(ADMIN, t, fs, "1.0.0-alpha.1");
        e.reason = Some(format!("{} because of ticket RISK-42", t.as_str()));
        out.push(e);
    }
    out.push(testkit::promote(DEPLOYER, fs, "1.0.0", "prod", "*", false));
    out.push(testkit::promote(
        DEPLOYER,
        fs,
        "1.0.0",
        "staging",
        "acme-bank",
        true,
    ));
    out.push(testkit::rollback(DEPLOYER, fs, "prod", "*", false));
    let mut rb = testkit::rollback(DEPLOYER, fs, "prod", "Tenant_7.eu", true);
    rb.reason = Some("rollback".into());
    out.push(rb);
    out.push(testkit::envelope(
        ADMIN,
        Command::SetCatalog(catalog_entry("prod", &[], &[], Posture::FailClosed)),
    ));
    out.push(env_with(
        ADMIN,
        Command::SetCatalog(catalog_entry(
            "staging",
            &[("txn_velocity", "3"), ("txn_velocity", "4"), ("géo", "1")],
            &["decision-input/v2"],
            Posture::Warn,
        )),
        Some("catalog sync"),
    ));
    let mut gated = catalog_entry("prod", &[], &[], Posture::FailClosed);
    gated.required_gates = vec![testkit::GATE_NAME.into(), "bias-audit-v1".into()];
    out.push(testkit::envelope(ADMIN, Command::SetCatalog(gated)));
    let key = Signer::from_seed([7; 32]);
    out.push(register_key(ADMIN, KeyOwnerKind::Principal, APPROVER, &key));
    out.push(env_with(
        ADMIN,
        Command::RegisterKey(RegisterKey {
            owner_kind: KeyOwnerKind::Gate,
            owner: "Fairness Audit (v2)".into(),
            public_key: key.public_hex().to_uppercase(),
        }),
        Some("gate key rotation, ticket SEC-7"),
    ));
    out.push(revoke_key(ADMIN, key.key_id()));
    out.extend(autopilot_commands());
    out
}

/// The autopilot and canary commands (JSON only; MPR2 §9), with optional fields set and
/// unset.
fn autopilot_commands() -> Vec<CommandEnvelope> {
    use mpr::domain::autopilot::{Check, Fixed, RollbackPolicy, Rule};
    use mpr::domain::command::{
        CanaryShare, ForwardedSignal, Observe, ScopeTarget, SetRollbackPolicy,
    };
    let scope = |tenant: &str| ScopeTarget {
        bundle_id: "fraud-scorer".parse().unwrap(),
        environment: "prod".parse().unwrap(),
        tenant_id: tenant.parse().unwrap(),
    };
    let mut out = Vec::new();
    let mut canary = testkit::promote(DEPLOYER, "fraud-scorer", "1.1.0", "prod", "*", false);
    if let Command::Promote(p) = &mut canary.command {
        p.canary_share_bp = Some(500);
    }
    out.push(canary);
    let rules = vec![
        Rule {
            rule_id: "error-rate".into(),
            check: Check::Threshold {
                metric: "error_rate".into(),
                above: Fixed(50_000),
                windows: 3,
            },
        },
        Rule {
            rule_id: "p99-vs-baseline".into(),
            check: Check::Baseline {
                metric: "latency_p99_ms".into(),
                factor: Fixed(1_500_000),
            },
        },
        Rule {
            rule_id: "sev2".into(),
            check: Check::Incident { max_severity: 2 },
        },
        Rule {
            rule_id: "canary-errors".into(),
            check: Check::CanaryWorse {
                metric: "error_rate".into(),
                factor: Fixed::ONE,
                windows: 2,
            },
        },
    ];
    out.push(testkit::envelope(
        DEPLOYER,
        Command::SetRollbackPolicy(SetRollbackPolicy {
            scope: scope("*"),
            policy: Some(RollbackPolicy {
                rules,
                cooldown_ms: 600_000,
                max_actions: 2,
                period_ms: 86_400_000,
                dry_run: true,
            }),
        }),
    ));
    out.push(env_with(
        DEPLOYER,
        Command::SetRollbackPolicy(SetRollbackPolicy {
            scope: scope("acme-bank"),
            policy: None,
        }),
        Some("policy retired with the incident review"),
    ));
    out.push(testkit::envelope(
        mpr::domain::autopilot::AUTOPILOT_ACTOR,
        Command::Observe(Observe {
            scope: scope("*"),
            signals: vec![
                ForwardedSignal {
                    partition: 3,
                    offset: 17,
                    content_type: codec::CONTENT_TYPE_JSON.into(),
                    payload: "eyJzaWduYWxfaWQiOiAiLi4uIn0=".into(),
                    signature: Some(r#"{"keyid":"00","sig":"AA=="}"#.into()),
                },
                ForwardedSignal {
                    partition: 3,
                    offset: 18,
                    content_type: codec::CONTENT_TYPE_AVRO.into(),
                    payload: "wwE=".into(),
                    signature: None,
                },
            ],
        }),
    ));
    out.push(testkit::envelope(
        DEPLOYER,
        Command::CanarySetShare(CanaryShare {
            scope: scope("*"),
            share_bp: 2_000,
        }),
    ));
    out.push(testkit::envelope(
        DEPLOYER,
        Command::CanaryComplete(scope("acme-bank")),
    ));
    out.push(env_with(
        DEPLOYER,
        Command::CanaryAbort(scope("*")),
        Some("canary p99 regressed"),
    ));
    out
}

#[test]
fn command_envelopes_of_every_type_validate() {
    let commands = all_commands();
    let types: BTreeSet<&str> = commands
        .iter()
        .map(|c| c.command.command_type().as_str())
        .collect();
    assert_eq!(
        types.len(),
        COMMAND_DEFS.len(),
        "every command type is covered"
    );
    for (i, env) in commands.iter().enumerate() {
        let ctx = format!("command {i} {}", env.command.command_type().as_str());
        let json = check_envelope(env, &ctx);
        assert_eq!(json["command_type"], env.command.command_type().as_str());
        assert_eq!(json.get("reason").is_some(), env.reason.is_some(), "{ctx}");
        if env.command.command_type() == CommandType::Promote {
            assert_valid("PromoteRequest", &json, &ctx);
        }
        // The payload alone validates against its payload def.
        let payload_def = match &env.command {
            Command::Publish(_) => "PublishPayload",
            Command::Promote(_) => "PromotePayload",
            Command::Rollback(_) => "RollbackPayload",
            Command::SetCatalog(_) => "CatalogEntry",
            Command::RegisterKey(_) => "RegisterKeyPayload",
            Command::RevokeKey(_) => "RevokeKeyPayload",
            Command::SetRollbackPolicy(_) => "SetRollbackPolicyPayload",
            Command::Observe(_) => "ObservePayload",
            Command::CanarySetShare(_) => "CanarySharePayload",
            Command::CanaryComplete(_) | Command::CanaryAbort(_) => "ScopeTargetPayload",
            _ => "BundleTarget",
        };
        assert_valid(payload_def, &json["payload"], &ctx);
    }
}

#[test]
fn command_defaults_are_what_serde_assumes() {
    // PROMOTE/ROLLBACK without tenant_id/degrade, SET_CATALOG without posture and
    // required_gates, a bundle without metadata and a receipt without evidence_refs and
    // signature: valid for both.
    let mut publish =
        serde_json::to_value(testkit::publish(PUBLISHER, "fraud-scorer", "1.0.0")).unwrap();
    publish["payload"]["bundle"]
        .as_object_mut()
        .unwrap()
        .remove("metadata");
    publish["payload"]["gate_receipt"]
        .as_object_mut()
        .unwrap()
        .remove("evidence_refs");
    publish["payload"]["gate_receipt"]
        .as_object_mut()
        .unwrap()
        .remove("signature");
    let head = json!({
        "command_id": "1b4e28ba-2fa1-4d3b-a3f5-ef19b5a7633b",
        "actor": DEPLOYER,
        "submitted_at_utc": "2026-11-20T09:15:00.000Z",
    });
    let with = |t: &str, payload: Value| {
        let mut v = head.clone();
        v["command_type"] = json!(t);
        v["payload"] = payload;
        v
    };
    let docs = [
        publish,
        with(
            "PROMOTE",
            json!({"bundle_id": "fraud-scorer", "bundle_version": "1.0.0", "environment": "prod"}),
        ),
        with(
            "ROLLBACK",
            json!({"bundle_id": "fraud-scorer", "environment": "prod"}),
        ),
        with(
            "SET_CATALOG",
            json!({"environment": "prod", "feature_groups": [], "schema_versions": []}),
        ),
    ];
    for doc in docs {
        assert_valid("CommandEnvelope", &doc, "defaults");
        let env: CommandEnvelope = serde_json::from_value(doc.clone()).unwrap();
        match env.command {
            Command::Promote(p) => assert!(p.tenant_id.is_any() && !p.degrade),
            Command::Rollback(r) => assert!(r.tenant_id.is_any() && !r.degrade),
            Command::SetCatalog(c) => {
                assert_eq!(c.posture, Posture::FailClosed);
                assert!(c.required_gates.is_empty());
            }
            Command::Publish(p) => {
                assert!(p.bundle.metadata.is_empty() && p.gate_receipt.evidence_refs.is_empty());
                assert_eq!(p.gate_receipt.signature, None);
            }
            _ => unreachable!(),
        }
    }
}

/// Documents that both the contract and serde refuse (the contract never admits what the
/// registry refuses at deserialization, and vice versa for these shapes).
#[test]
fn contract_and_serde_agree_on_invalid_documents() {
    let base = serde_json::to_value(testkit::promote(
        DEPLOYER,
        "fraud-scorer",
        "1.0.0",
        "prod",
        "*",
        false,
    ))
    .unwrap();
    let publish = serde_json::to_value(self::publish(PUBLISHER, "fraud-scorer", "1.0.0")).unwrap();
    let key = Signer::from_seed([7; 32]);
    let register = serde_json::to_value(register_key(
        ADMIN,
        KeyOwnerKind::Gate,
        "offline-eval-v3",
        &key,
    ))
    .unwrap();
    let revoke = serde_json::to_value(revoke_key(ADMIN, key.key_id())).unwrap();
    let m = |base: &Value, f: &dyn Fn(&mut Value)| {
        let mut v = base.clone();
        f(&mut v);
        v
    };
    let cases: Vec<(&str, Value)> = vec![
        (
            "unknown envelope field",
            m(&base, &|v| v["priority"] = json!(1)),
        ),
        (
            "a signature inside the envelope (it travels in the mpr-signature header)",
            m(&base, &|v| {
                v["signature"] = json!({"keyid": key.key_id(), "sig": "x"})
            }),
        ),
        (
            "receipt signature with another field",
            m(&publish, &|v| {
                v["payload"]["gate_receipt"]["signature"]["alg"] = json!("ed25519")
            }),
        ),
        (
            "receipt signature without keyid",
            m(&publish, &|v| {
                v["payload"]["gate_receipt"]["signature"]
                    .as_object_mut()
                    .unwrap()
                    .remove("keyid");
            }),
        ),
        (
            "unknown owner_kind",
            m(&register, &|v| v["payload"]["owner_kind"] = json!("ROBOT")),
        ),
        (
            "register_key without public_key",
            m(&register, &|v| {
                v["payload"].as_object_mut().unwrap().remove("public_key");
            }),
        ),
        (
            "revoke_key with a key",
            m(&revoke, &|v| {
                v["payload"]["public_key"] = json!(key.public_hex())
            }),
        ),
        (
            "revoke_key without key_id",
            m(&revoke, &|v| v["payload"] = json!({})),
        ),
        (
            "unknown payload field",
            m(&base, &|v| v["payload"]["slot"] = json!("PRIMARY")),
        ),
        (
            "unknown command type",
            m(&base, &|v| v["command_type"] = json!("DEPLOY")),
        ),
        (
            "payload of another type",
            m(
                &base,
                &|v| v["payload"] = json!({"bundle_id": "fraud-scorer", "environment": "prod"}),
            ),
        ),
        (
            "missing payload",
            m(&base, &|v| {
                v.as_object_mut().unwrap().remove("payload");
            }),
        ),
        (
            "missing actor",
            m(&base, &|v| {
                v.as_object_mut().unwrap().remove("actor");
            }),
        ),
        (
            "actor with a space",
            m(&base, &|v| v["actor"] = json!("bob deployer")),
        ),
        ("empty actor", m(&base, &|v| v["actor"] = json!(""))),
        (
            "uppercase bundle_id",
            m(&base, &|v| v["payload"]["bundle_id"] = json!("Fraud")),
        ),
        (
            "bundle_id starting with -",
            m(&base, &|v| v["payload"]["bundle_id"] = json!("-fraud")),
        ),
        (
            "bundle_id too long",
            m(&base, &|v| {
                v["payload"]["bundle_id"] = json!("a".repeat(129))
            }),
        ),
        (
            "v-prefixed version",
            m(&base, &|v| v["payload"]["bundle_version"] = json!("v1.0.0")),
        ),
        (
            "two-part version",
            m(&base, &|v| v["payload"]["bundle_version"] = json!("1.0")),
        ),
        (
            "leading zero",
            m(&base, &|v| v["payload"]["bundle_version"] = json!("01.0.0")),
        ),
        (
            "leading zero pre-release",
            m(&base, &|v| {
                v["payload"]["bundle_version"] = json!("1.0.0-01")
            }),
        ),
        (
            "empty pre-release",
            m(&base, &|v| v["payload"]["bundle_version"] = json!("1.0.0-")),
        ),
        (
            "uppercase environment",
            m(&base, &|v| v["payload"]["environment"] = json!("Prod")),
        ),
        (
            "empty tenant",
            m(&base, &|v| v["payload"]["tenant_id"] = json!("")),
        ),
        (
            "tenant with a slash",
            m(&base, &|v| v["payload"]["tenant_id"] = json!("acme/eu")),
        ),
        (
            "degrade as string",
            m(&base, &|v| v["payload"]["degrade"] = json!("true")),
        ),
        (
            "command_id not a uuid",
            m(&base, &|v| v["command_id"] = json!("cmd-1")),
        ),
        (
            "timestamp without offset",
            m(&base, &|v| {
                v["submitted_at_utc"] = json!("2026-11-20T09:15:00")
            }),
        ),
        (
            "timestamp with a zone name",
            m(&base, &|v| {
                v["submitted_at_utc"] = json!("2026-11-20T09:15:00 UTC")
            }),
        ),
        (
            "date only",
            m(&base, &|v| v["submitted_at_utc"] = json!("2026-11-20")),
        ),
        (
            "reason not a string",
            m(&base, &|v| v["reason"] = json!(12)),
        ),
        (
            "unknown bundle field",
            m(&publish, &|v| v["payload"]["bundle"]["owner"] = json!("x")),
        ),
        (
            "unknown artifact field",
            m(&publish, &|v| {
                v["payload"]["bundle"]["artifacts"][0]["md5"] = json!("x")
            }),
        ),
        (
            "bad kind",
            m(&publish, &|v| {
                v["payload"]["bundle"]["kind"] = json!("model")
            }),
        ),
        (
            "negative size",
            m(&publish, &|v| {
                v["payload"]["bundle"]["artifacts"][0]["size_bytes"] = json!(-1)
            }),
        ),
        (
            "fractional size",
            m(&publish, &|v| {
                v["payload"]["bundle"]["artifacts"][0]["size_bytes"] = json!(1.5)
            }),
        ),
        (
            "missing compatibility list",
            m(&publish, &|v| {
                v["payload"]["bundle"]["compatibility"]
                    .as_object_mut()
                    .unwrap()
                    .remove("schema_versions");
            }),
        ),
        (
            "metadata value not a string",
            m(&publish, &|v| {
                v["payload"]["bundle"]["metadata"]["n"] = json!(1)
            }),
        ),
        (
            "bad verdict",
            m(&publish, &|v| {
                v["payload"]["gate_receipt"]["verdict"] = json!("OK")
            }),
        ),
        (
            "missing receipt",
            m(&publish, &|v| {
                v["payload"].as_object_mut().unwrap().remove("gate_receipt");
            }),
        ),
    ];
    for (what, doc) in cases {
        assert_invalid("CommandEnvelope", &doc, what);
        assert!(
            serde_json::from_value::<CommandEnvelope>(doc.clone()).is_err(),
            "{what}: serde accepts what the contract refuses: {doc}"
        );
    }
}

/// Intake rules serde cannot express (`ModelBundle::validate`) are in the contract too.
#[test]
fn contract_carries_the_intake_limits() {
    let good = serde_json::to_value(testkit::bundle("fraud-scorer", "1.0.0")).unwrap();
    let m = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        v
    };
    let artifact = good["artifacts"][0].clone();
    let cases: Vec<(&str, Value)> = vec![
        ("no artifacts", m(&|v| v["artifacts"] = json!([]))),
        (
            "65 artifacts",
            m(&|v| {
                v["artifacts"] = Value::Array(
                    (0..65)
                        .map(|i| {
                            let mut a = artifact.clone();
                            a["name"] = json!(format!("a{i}"));
                            a
                        })
                        .collect(),
                )
            }),
        ),
        (
            "uppercase sha256",
            m(&|v| v["artifacts"][0]["sha256"] = json!("A".repeat(64))),
        ),
        ("short config_hash", m(&|v| v["config_hash"] = json!("abc"))),
        ("empty uri", m(&|v| v["artifacts"][0]["uri"] = json!(""))),
        (
            "long uri",
            m(&|v| v["artifacts"][0]["uri"] = json!("u".repeat(2049))),
        ),
        (
            "no dataset manifests",
            m(&|v| v["provenance"]["dataset_manifest_refs"] = json!([])),
        ),
        (
            "257 schema versions",
            m(&|v| {
                v["compatibility"]["schema_versions"] =
                    Value::Array((0..257).map(|i| json!(format!("s/v{i}"))).collect())
            }),
        ),
        (
            "65 metadata entries",
            m(&|v| {
                v["metadata"] =
                    Value::Object((0..65).map(|i| (format!("k{i}"), json!("v"))).collect())
            }),
        ),
        ("empty metadata key", m(&|v| v["metadata"][""] = json!("v"))),
        (
            "long metadata key",
            m(&|v| v["metadata"]["k".repeat(129)] = json!("v")),
        ),
        (
            "long metadata value",
            m(&|v| v["metadata"]["k"] = json!("v".repeat(1025))),
        ),
    ];
    for (what, doc) in cases {
        assert_invalid("ModelBundle", &doc, what);
        let b: ModelBundle = serde_json::from_value(doc.clone())
            .unwrap_or_else(|e| panic!("{what}: serde refuses it already: {e}"));
        let err = b.validate().expect_err(what);
        assert_eq!(err.code, ErrorCode::InvalidPayload, "{what}");
    }
    // And the limits themselves are admitted.
    let at_limits = m(&|v| {
        v["artifacts"][0]["uri"] = json!("u".repeat(2048));
        v["metadata"] = Value::Object(
            (0..64)
                .map(|i| (format!("{i:0>128}"), json!("v".repeat(1024))))
                .collect(),
        );
        v["compatibility"]["schema_versions"] =
            Value::Array((0..256).map(|i| json!(format!("s/v{i}"))).collect());
    });
    assert_valid("ModelBundle", &at_limits, "at the limits");
    let b: ModelBundle = serde_json::from_value(at_limits).unwrap();
    b.validate().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Domain values and API types
// ---------------------------------------------------------------------------------------------

#[test]
fn domain_values_validate() {
    let b = rich_bundle("2.0.0");
    emit_round_trip("ModelBundle", &b, "rich bundle");
    emit_round_trip(
        "ModelBundle",
        &testkit::bundle("fraud-scorer", "1.0.0"),
        "testkit bundle",
    );
    emit_round_trip("ModelBundleRef", &b.to_ref(), "ref");
    emit_round_trip("GateReceipt", &testkit::pass_receipt(&b), "receipt");
    let signed_receipt = receipt(&b);
    emit_round_trip("GateReceipt", &signed_receipt, "signed receipt");
    let sig = signed_receipt.signature.clone().unwrap();
    emit_round_trip("Signature", &sig, "receipt signature");
    emit_round_trip("KeyId", &sig.keyid, "key id");
    // Every 64-byte signature has the shape the contract gives (88 base64 characters).
    for n in 0..=255u8 {
        let s = Signer::from_seed([n; 32]).sign(RECEIPT_TYPE, &[n]);
        assert_valid("Signature", &serde_json::to_value(&s).unwrap(), "generated");
    }
    for bad in [
        json!({"keyid": sig.keyid, "sig": "c2ln"}),
        json!({"keyid": "ABC", "sig": sig.sig}),
        json!({"keyid": sig.keyid}),
    ] {
        assert_invalid("Signature", &bad, "malformed signature");
    }
    let key = Signer::from_seed([9; 32]);
    emit_round_trip("PublicKey", &key.public_hex(), "public key");
    assert_valid(
        "PublicKey",
        &json!(key.public_hex().to_uppercase()),
        "either case",
    );
    assert_invalid("PublicKey", &json!(&key.public_hex()[2..]), "31 bytes");
    for revoked_seq in [None, Some(12)] {
        emit_round_trip(
            "KeyRecord",
            &KeyRecord {
                key_id: key.key_id().to_owned(),
                owner_kind: KeyOwnerKind::Gate,
                owner: "offline-eval-v3".into(),
                public_key: key.public_hex(),
                registered_seq: 3,
                revoked_seq,
            },
            "key record",
        );
    }
    emit(
        "GateReceiptRefOrEmbed",
        &testkit::pass_receipt(&b),
        "receipt (seed name)",
    );
    emit_round_trip(
        "BundleId",
        &"pricing-policy.v2_x".parse::<BundleId>().unwrap(),
        "id",
    );
    for v in [
        "0.0.0",
        "1.2.3",
        "10.20.30-rc.1+build.5",
        "1.0.0-0.3.7",
        "1.0.0-x.7.z.92",
        "1.0.0+21AF26D3----117B344092BD",
    ] {
        emit_round_trip("BundleVersion", &v.parse::<BundleVersion>().unwrap(), v);
    }
    emit_round_trip(
        "Environment",
        &"prod-eu-1".parse::<Environment>().unwrap(),
        "env",
    );
    emit_round_trip("TenantId", &TenantId::any(), "tenant *");
    emit_round_trip(
        "TenantId",
        &"Acme.Bank_EU-1".parse::<TenantId>().unwrap(),
        "tenant",
    );
    emit_round_trip("Actor", &"alice@risk-ml".parse::<Actor>().unwrap(), "actor");
    for ms in [0, 1_795_000_000_123, 253_402_300_799_999] {
        emit_round_trip("Timestamp", &Timestamp::from_millis(ms), &ms.to_string());
    }
    let scope = ScopeKey {
        environment: "prod".parse().unwrap(),
        tenant_id: TenantId::any(),
        bundle_id: "fraud-scorer".parse().unwrap(),
    };
    emit_round_trip("ScopeKey", &scope, "scope");
    emit_round_trip(
        "CatalogEntry",
        &catalog_entry(
            "prod",
            &[("txn_velocity", "3")],
            &["decision-input/v2"],
            Posture::Warn,
        ),
        "catalog entry",
    );
    let mut gated = catalog_entry("prod", &[], &[], Posture::FailClosed);
    gated.required_gates = vec!["offline-eval-v3".into(), "bias-audit-v1".into()];
    emit_round_trip("CatalogEntry", &gated, "catalog entry with required gates");
    for code in ErrorCode::ALL {
        emit_round_trip("ErrorCode", &code, code.as_str());
    }
    // Timestamps: any RFC 3339 offset is accepted by both, and normalized to UTC millis.
    for t in [
        "2026-11-26T03:02:01.5+02:00",
        "2026-11-26T01:02:03Z",
        "2026-11-26t01:02:03.456789z",
    ] {
        assert_valid("Timestamp", &json!(t), t);
        let parsed: Timestamp = serde_json::from_value(json!(t)).unwrap();
        assert_valid("Timestamp", &serde_json::to_value(parsed).unwrap(), t);
    }
}

#[test]
fn resolve_requests_validate() {
    let queries = [
        ResolveQuery {
            environment: "prod".parse().unwrap(),
            bundle_id: "fraud-scorer".parse().unwrap(),
            tenant_id: None,
            degrade: false,
            routing_key: None,
        },
        ResolveQuery {
            environment: "staging".parse().unwrap(),
            bundle_id: "fraud-scorer".parse().unwrap(),
            tenant_id: Some("acme-bank".parse().unwrap()),
            degrade: true,
            routing_key: Some("account-42".into()),
        },
    ];
    for q in &queries {
        emit_round_trip("ResolveActiveRequest", q, "ResolveQuery");
    }
    for doc in [
        json!({"environment": "prod", "bundle_id": "fraud-scorer"}),
        json!({"environment": "prod", "bundle_id": "fraud-scorer", "tenant_id": "*", "degrade": true}),
        json!({"environment": "prod", "bundle_id": "fraud-scorer", "as_of_seq": 42}),
        json!({"environment": "prod", "bundle_id": "fraud-scorer", "as_of": "2026-11-20T09:15:00.000Z"}),
        json!({"environment": "prod", "bundle_id": "fraud-scorer", "min_view_version": "e0:17"}),
    ] {
        assert_valid("ResolveActiveRequest", &doc, "request");
    }
    for doc in [
        json!({"environment": "prod"}),
        json!({"environment": "prod", "bundle_id": "fraud-scorer", "as_of_seq": -1}),
        json!({"environment": "prod", "bundle_id": "fraud-scorer", "as_of": "yesterday"}),
        json!({"environment": "prod", "bundle_id": "fraud-scorer", "scope": {}}),
    ] {
        assert_invalid("ResolveActiveRequest", &doc, "bad request");
    }
}

/// Publish responses, resolve answers and error bodies, built from the scenario's real state.
#[test]
fn api_types_validate() {
    let w = &*WORLD;
    // PublishBundleResponse from every publish result.
    let mut statuses = BTreeSet::new();
    for r in w
        .results
        .iter()
        .filter(|r| r.command_type == Some(CommandType::Publish))
    {
        let status = match r.outcome {
            Outcome::Accepted => PublishStatus::Accepted,
            Outcome::Duplicate => PublishStatus::Duplicate,
            Outcome::Rejected => PublishStatus::Rejected,
            Outcome::Noop => unreachable!("publish is never a plain no-op"),
        };
        statuses.insert(format!("{status:?}"));
        let resp = PublishBundleResponse {
            command_id: r.command_id,
            bundle_id: r.bundle_id.clone().unwrap(),
            bundle_version: r.bundle_version.as_ref().unwrap().to_string(),
            bundle_digest: r.bundle_digest.clone(),
            status,
            lifecycle_state: r.lifecycle_state,
            event_id: r.event_id,
            seq: r.seq,
            error: r.error.clone(),
        };
        emit_round_trip("PublishBundleResponse", &resp, &format!("{status:?}"));
    }
    assert_eq!(statuses.len(), 3, "{statuses:?}");

    // ResolveActiveResponse for every rule that the scenario's bindings can match.
    let mut rules = BTreeSet::new();
    for (family, env, tenant, degrade) in [
        ("fraud-scorer", "prod", None, false),
        ("fraud-scorer", "prod", Some("acme-bank"), false),
        ("fraud-scorer", "staging", Some("acme-bank"), true),
        ("fraud-scorer", "staging", Some("other"), true),
        ("pricing-policy", "staging", Some("acme-bank"), true),
    ] {
        let q = ResolveQuery {
            environment: env.parse().unwrap(),
            bundle_id: family.parse().unwrap(),
            tenant_id: tenant.map(|t| t.parse().unwrap()),
            degrade,
            routing_key: None,
        };
        emit_round_trip("ResolveActiveRequest", &q, "query");
        let fam = &w.part.families[&q.bundle_id];
        let hit = resolve::<(ScopeRef, SlotRecord), ()>(&q, |tenant, slot| {
            let key = ScopeRef {
                environment: q.environment.clone(),
                tenant_id: tenant.clone(),
                slot,
            };
            Ok(fam
                .slots
                .get(&key)
                .filter(|s| s.bound().is_some())
                .map(|s| (key.clone(), s.clone())))
        })
        .unwrap();
        let Ok((rule, _, slot, (key, rec))) = hit else {
            let err = hit.unwrap_err();
            emit_round_trip(
                "ErrorResponse",
                &ErrorResponse::from(ErrorInfo::from(err)),
                "miss",
            );
            continue;
        };
        rules.insert(rule.as_str());
        let version = rec.bound().unwrap();
        let bundle = &fam.bundles[version];
        let resp = ResolveActiveResponse {
            scope: ResolvedScope {
                environment: key.environment.clone(),
                tenant_id: key.tenant_id.clone(),
                bundle_id: q.bundle_id.clone(),
                slot,
            },
            matched_rule: rule,
            active_bundle_ref: bundle.bundle.to_ref(),
            kind: bundle.bundle.kind,
            artifacts: bundle.bundle.artifacts.clone(),
            compatibility: bundle.bundle.compatibility.clone(),
            lifecycle_state: bundle.state,
            activation: Activation {
                event_id: rec.changed_event_id.unwrap(),
                partition: 0,
                seq: rec.changed_seq,
                activated_at_utc: rec.changed_at_utc.unwrap(),
            },
            view_version: format!("e0:{};c0:{}", w.part.chain.last_seq, w.cat.chain.last_seq),
            resolved_at_utc: rec.changed_at_utc.unwrap(),
            as_of_seq: (rules.len() % 2 == 0).then_some(rec.changed_seq),
            canary: None,
        };
        emit_round_trip("ResolveActiveResponse", &resp, rule.as_str());
    }
    assert_eq!(rules.len(), 4, "every rule matched once: {rules:?}");

    // ErrorResponse for every code, with and without details.
    for code in ErrorCode::ALL {
        let mut resp = ErrorResponse::from(ErrorInfo::from(Rejection::new(
            code,
            format!("{code} happened"),
        )));
        emit_round_trip("ErrorResponse", &resp, code.as_str());
        resp.details =
            Some(json!({"command_id": Uuid::new_v4(), "missing": ["feature_group a@1"]}));
        emit_round_trip("ErrorResponse", &resp, code.as_str());
    }

    // PublishBundleRequest, with and without its optional fields.
    let b = rich_bundle("4.0.0");
    let mut req = PublishBundleRequest {
        command_id: Uuid::new_v4(),
        submitted_by: None,
        submitted_at_utc: Timestamp::from_millis(1_795_000_000_000),
        gate_receipt: testkit::pass_receipt(&b),
        bundle: b,
        reason: None,
    };
    emit_round_trip("PublishBundleRequest", &req, "minimal request");
    req.submitted_by = Some(PUBLISHER.parse().unwrap());
    req.reason = Some("nächste Version".into());
    emit_round_trip("PublishBundleRequest", &req, "full request");
}

// ---------------------------------------------------------------------------------------------
// Examples and vectors
// ---------------------------------------------------------------------------------------------

fn json_files(dir: &Path, recursive: bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if recursive {
                out.extend(json_files(&path, true));
            }
        } else if path.extension().is_some_and(|x| x == "json") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

/// The `$def` an example file is an instance of, by where it lives.
fn example_def(path: &Path) -> &'static str {
    let name = path.file_name().unwrap().to_str().unwrap();
    let dir = path
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    match (dir, name) {
        ("bundles", n) if n.ends_with(".publish.json") => "PublishBundleRequest",
        ("catalog", _) => "CatalogEntry",
        ("policies", _) => "RollbackPolicy",
        _ => panic!(
            "{}: no $def known for this example; add it to example_def",
            path.display()
        ),
    }
}

#[test]
fn every_example_validates() {
    let files = json_files(&Path::new(ROOT).join("examples"), true);
    assert!(
        files.len() >= 5,
        "expected the example files, found {files:?}"
    );
    for path in &files {
        assert_valid(
            example_def(path),
            &read_json(path),
            &path.display().to_string(),
        );
    }
}

fn publish_examples() -> Vec<(PathBuf, PublishBundleRequest)> {
    json_files(&Path::new(ROOT).join("examples/bundles"), false)
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let req = serde_json::from_str::<PublishBundleRequest>(&text)
                .unwrap_or_else(|e| panic!("{}: not a PublishBundleRequest: {e}", p.display()));
            (p, req)
        })
        .collect()
}

fn catalog_examples() -> Vec<CatalogEntry> {
    json_files(&Path::new(ROOT).join("examples/catalog"), false)
        .iter()
        .map(|p| {
            serde_json::from_value(read_json(p))
                .unwrap_or_else(|e| panic!("{}: not a CatalogEntry: {e}", p.display()))
        })
        .collect()
}

#[test]
fn example_publish_requests_carry_real_digests_and_are_accepted() {
    let examples = publish_examples();
    assert_eq!(examples.len(), 3);
    let kinds: BTreeSet<String> = examples
        .iter()
        .map(|(_, r)| format!("{:?}", r.bundle.kind))
        .collect();
    assert_eq!(kinds.len(), 2, "a MODEL and a POLICY");
    let catalogs = catalog_examples();
    assert_eq!(catalogs.len(), 2);

    let mut w = World::new();
    for entry in &catalogs {
        entry.validate().unwrap();
        let r = w.submit(testkit::envelope(ADMIN, Command::SetCatalog(entry.clone())));
        expect(
            &r,
            RegistryEventType::CatalogUpdated,
            Outcome::Accepted,
            None,
        );
    }
    // The example gates' keys (examples/keys/gate-<gate_name>.pem), registered as an admin
    // would (examples/keys/README.md).
    let keys_dir = Path::new(ROOT).join("examples/keys");
    let mut gates = BTreeMap::new();
    for entry in std::fs::read_dir(&keys_dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let Some(gate) = name
            .strip_prefix("gate-")
            .and_then(|n| n.strip_suffix(".pem"))
        else {
            continue;
        };
        let key = Signer::from_pem(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let readme = std::fs::read_to_string(keys_dir.join("README.md")).unwrap();
        assert!(
            readme.contains(&key.public_hex()),
            "examples/keys/README.md gives the public key of {gate}"
        );
        let r = w.submit(register_key(ADMIN, KeyOwnerKind::Gate, gate, &key));
        expect(
            &r,
            RegistryEventType::KeyRegistered,
            Outcome::Accepted,
            None,
        );
        gates.insert(gate.to_owned(), key.key_id().to_owned());
    }
    assert_eq!(gates.len(), 2, "{gates:?}");
    for (path, req) in &examples {
        let ctx = path.display().to_string();
        let digest = req.bundle.digest();
        assert_eq!(
            req.gate_receipt.bundle_digest, digest,
            "{ctx}: receipt digest"
        );
        req.bundle.validate().unwrap();
        req.gate_receipt.check_for(&req.bundle, &digest).unwrap();
        // The receipt is signed by its own gate's key, over its in-toto Statement; any edit
        // breaks the signature.
        let verified =
            trust::verify_receipt(&signed_roots(), &w.cat.catalog.trust, &req.gate_receipt)
                .unwrap_or_else(|r| panic!("{ctx}: {r}"));
        assert_eq!(
            verified.as_ref(),
            gates.get(&req.gate_receipt.gate_name),
            "{ctx}: signed by the key of gate {}",
            req.gate_receipt.gate_name
        );
        let mut edited = req.gate_receipt.clone();
        edited.evidence_refs.pop();
        let err = trust::verify_receipt(&signed_roots(), &w.cat.catalog.trust, &edited)
            .expect_err("an edited receipt does not verify");
        assert_eq!(err.code, ErrorCode::GateReceiptUnverified, "{ctx}");
        // The file re-serializes to the same JSON (no field is lost or defaulted).
        assert_eq!(serde_json::to_value(req).unwrap(), read_json(path), "{ctx}");
        // Every environment offers what the bundle needs.
        let catalog = Catalog {
            version: 1,
            entries: catalogs
                .iter()
                .map(|c| (c.environment.clone(), c.clone()))
                .collect(),
            trust: Default::default(),
        };
        for entry in &catalogs {
            let report = catalog.check(&entry.environment, &req.bundle.compatibility);
            assert!(
                report.missing.is_empty(),
                "{ctx}: {} lacks {:?}",
                entry.environment,
                report.missing
            );
        }
        // Published as the API would: registered, then promotable to every environment.
        let env = CommandEnvelope {
            command_id: req.command_id,
            actor: req
                .submitted_by
                .clone()
                .unwrap_or_else(|| PUBLISHER.parse().unwrap()),
            submitted_at_utc: req.submitted_at_utc,
            reason: req.reason.clone(),
            command: Command::Publish(PublishBundle {
                bundle: req.bundle.clone(),
                gate_receipt: req.gate_receipt.clone(),
            }),
        };
        check_envelope(&env, &ctx);
        let r = w.submit(env);
        expect(
            &r,
            RegistryEventType::BundleRegistered,
            Outcome::Accepted,
            None,
        );
        assert_eq!(r.bundle_digest.as_deref(), Some(digest.as_str()));
        let id = req.bundle.bundle_id.as_str();
        let v = req.bundle.bundle_version.to_string();
        w.submit(target_cmd(APPROVER, CommandType::Nominate, id, &v));
        let r = w.submit(target_cmd(APPROVER, CommandType::Approve, id, &v));
        expect(
            &r,
            RegistryEventType::BundleApproved,
            Outcome::Accepted,
            None,
        );
        for entry in &catalogs {
            let r = w.submit(testkit::promote(
                DEPLOYER,
                id,
                &v,
                entry.environment.as_str(),
                "*",
                false,
            ));
            expect(
                &r,
                RegistryEventType::BundlePromoted,
                Outcome::Accepted,
                None,
            );
            assert!(r.warnings.is_empty(), "{ctx}: {:?}", r.warnings);
        }
    }
    for e in w.events.iter().chain(&w.catalog_events) {
        emit("RegistryEvent", e, "example event");
        let back = codec::decode_event(&codec::encode_event(e)).unwrap();
        assert_eq!(&back, e);
    }
}

/// Replaces `"$DIGEST"` in a publish command's receipt with the bundle's real digest.
fn fill_digest(cmd: &mut Value) {
    let Some(bundle) = cmd.pointer("/payload/bundle") else {
        return;
    };
    let Ok(b) = serde_json::from_value::<ModelBundle>(bundle.clone()) else {
        return;
    };
    let digest = b.digest();
    if let Some(r) = cmd.pointer_mut("/payload/gate_receipt/bundle_digest")
        && r == "$DIGEST"
    {
        *r = Value::String(digest);
    }
}

#[test]
fn every_vector_command_validates() {
    let files = json_files(&Path::new(ROOT).join("tests/vectors"), false);
    let (mut checked, mut skipped, mut resolves) = (0, 0, 0);
    for path in &files {
        let v = read_json(path);
        let steps = v["steps"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: no steps", path.display()));
        for (i, step) in steps.iter().enumerate() {
            let ctx = format!("{} step {}", path.display(), i + 1);
            if let Some(cmd) = step.get("command") {
                if step.pointer("/expect/error_code") == Some(&json!("INVALID_PAYLOAD")) {
                    skipped += 1; // deliberately invalid
                    continue;
                }
                let mut cmd = cmd.clone();
                fill_digest(&mut cmd);
                assert_valid("CommandEnvelope", &cmd, &ctx);
                checked += 1;
            }
            if let Some(q) = step.get("resolve") {
                assert_valid("ResolveActiveRequest", q, &ctx);
                resolves += 1;
            }
        }
    }
    eprintln!(
        "{} vector files: {checked} commands validated, {skipped} INVALID_PAYLOAD commands skipped, {resolves} resolve requests validated",
        files.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Avro
// ---------------------------------------------------------------------------------------------

#[track_caller]
fn avro_command_round_trip(env: &CommandEnvelope, ctx: &str) {
    let bytes = avro::encode_command(env);
    assert!(avro::is_framed(&bytes), "{ctx}: single-object framing");
    let back = avro::decode_command(&bytes).unwrap_or_else(|e| panic!("{ctx}: {e}"));
    assert_eq!(&back, env, "{ctx}: Avro round trip");
    // The dispatching decoder picks Avro for framed bytes.
    let back = codec::decode_command(&bytes, None).unwrap_or_else(|e| panic!("{ctx}: {e}"));
    assert_eq!(&back, env, "{ctx}: codec::decode_command");
}

#[test]
fn avro_command_round_trips_are_lossless() {
    for (i, env) in all_commands().iter().enumerate() {
        let t = env.command.command_type();
        if env.command.json_only() {
            // JSON only: the Avro envelope has no body for it, and decoding says so.
            let err = avro::decode_command(&avro::encode_command(env)).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidPayload, "{}", t.as_str());
            assert!(err.message.contains("JSON"), "{}", err.message);
            continue;
        }
        avro_command_round_trip(
            env,
            &format!("command {i} {}", env.command.command_type().as_str()),
        );
    }
}

#[test]
fn avro_event_round_trips_are_lossless() {
    let w = &*WORLD;
    for e in w.events.iter().chain(&w.catalog_events) {
        let bytes = codec::encode_event(e);
        let back = codec::decode_event(&bytes)
            .unwrap_or_else(|err| panic!("seq {} {}: {err}", e.seq, e.event_type.as_str()));
        assert_eq!(&back, e, "seq {} {}", e.seq, e.event_type.as_str());
        assert!(back.verify_link(&e.prev_hash));
    }
}

/// The codec encodes with schemas resolved once; its bytes must be those of apache-avro's
/// reference path (resolve the value against the schema, then encode the datum).
#[test]
fn avro_bytes_match_the_library_reference_path() {
    use apache_avro::headers::{HeaderBuilder, RabinFingerprintHeader};
    fn reference<T: serde::Serialize>(schema_json: &str, value: &T) -> Vec<u8> {
        let schema = apache_avro::Schema::parse_str(schema_json).unwrap();
        let v = apache_avro::to_value(value)
            .unwrap()
            .resolve(&schema)
            .unwrap();
        let mut out = RabinFingerprintHeader::from_schema(&schema).build_header();
        out.extend(apache_avro::to_avro_datum(&schema, v).unwrap());
        out
    }
    let w = &*WORLD;
    for e in w.events.iter().chain(&w.catalog_events) {
        assert_eq!(
            codec::encode_event(e),
            reference(avro::EVENT_SCHEMA_JSON, e),
            "seq {} {}",
            e.seq,
            e.event_type.as_str()
        );
    }
}

/// A map of several entries (a bundle's `metadata`) is written in key order, so the same
/// event or command always has the same bytes: apache-avro's own `Value` holds maps in a
/// `HashMap` and wrote them in a different order on each call. The library's reader
/// (against the bundled schema) reads them back to the same value.
#[test]
fn avro_maps_are_written_in_key_order_every_time() {
    let keys = ["zeta", "alpha", "mid", "beta", "omega", "kappa", "delta"];
    let metadata: BTreeMap<String, String> = keys
        .iter()
        .map(|k| (k.to_string(), format!("value-of-{k}")))
        .collect();
    let w = &*WORLD;
    let mut e = w
        .events
        .iter()
        .find(|e| e.bundle.is_some())
        .expect("a registration")
        .clone();
    e.bundle.as_mut().unwrap().metadata = metadata.clone();
    let mut env = testkit::publish(PUBLISHER, "fraud-scorer", "9.9.9");
    let Command::Publish(p) = &mut env.command else {
        panic!("a publish");
    };
    p.bundle.metadata = metadata;
    let event_bytes = codec::encode_event(&e);
    let command_bytes = avro::encode_command(&env);
    for _ in 0..20 {
        assert_eq!(codec::encode_event(&e), event_bytes);
        assert_eq!(avro::encode_command(&env), command_bytes);
    }
    for bytes in [&event_bytes, &command_bytes] {
        let mut sorted = keys;
        sorted.sort_unstable();
        let at: Vec<usize> = sorted
            .iter()
            .map(|k| {
                let needle = format!("value-of-{k}");
                bytes
                    .windows(needle.len())
                    .position(|w| w == needle.as_bytes())
                    .expect("entry written")
            })
            .collect();
        assert!(at.windows(2).all(|p| p[0] < p[1]), "entries in key order");
    }
    assert_eq!(codec::decode_event(&event_bytes).unwrap(), e);
    assert_eq!(avro::decode_command(&command_bytes).unwrap(), env);
    let schema = apache_avro::Schema::parse_str(avro::EVENT_SCHEMA_JSON).unwrap();
    let mut body = &event_bytes[10..];
    let value = apache_avro::from_avro_datum(&schema, &mut body, None).unwrap();
    assert!(body.is_empty());
    assert_eq!(apache_avro::from_value::<RegistryEvent>(&value).unwrap(), e);
}

#[test]
fn avro_rejects_foreign_and_truncated_bytes() {
    let env = testkit::promote(DEPLOYER, "fraud-scorer", "1.0.0", "prod", "*", false);
    let bytes = avro::encode_command(&env);
    let mut foreign = bytes.clone();
    foreign[4] ^= 0xff; // another schema fingerprint
    assert_eq!(
        avro::decode_command(&foreign).unwrap_err().code,
        ErrorCode::UnsupportedSchemaVersion
    );
    // Cut anywhere before its last five bytes, the frame is refused. Those five bytes are
    // the null branches of promote's last field (canary_share_bp) and of the bodies after
    // `promote` (rollback, catalog, register_key, revoke_key): apache-avro reads a union
    // at the end of its input as null, so a frame cut there decodes to the same command.
    // It cannot pass for another command, and a signature covers the exact bytes (MPR2
    // §8.1), so such a copy does not verify.
    let header = 10;
    assert_eq!(&bytes[bytes.len() - 5..], &[0, 0, 0, 0, 0]);
    for cut in header..bytes.len() - 5 {
        assert_eq!(
            avro::decode_command(&bytes[..cut]).unwrap_err().code,
            ErrorCode::InvalidPayload,
            "cut at {cut} of {}",
            bytes.len()
        );
    }
    for cut in bytes.len() - 5..bytes.len() {
        assert_eq!(avro::decode_command(&bytes[..cut]).unwrap(), env);
    }
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(
        avro::decode_command(&trailing).unwrap_err().code,
        ErrorCode::InvalidPayload
    );
}

/// `size_bytes` is a u64 in Rust but an Avro `long` on the wire, and the contract caps it at
/// 2^53-1 (exact in every JSON reader). Intake must refuse what the contract refuses instead
/// of panicking in the codec.
#[test]
fn oversized_artifacts_are_refused_at_intake() {
    let mut b = testkit::bundle("fraud-scorer", "1.0.0");
    b.artifacts[0].size_bytes = 1u64 << 53;
    assert_invalid(
        "ModelBundle",
        &serde_json::to_value(&b).unwrap(),
        "size_bytes > 2^53-1",
    );
    let err = b.validate().expect_err("size_bytes beyond an Avro long");
    assert_eq!(err.code, ErrorCode::InvalidPayload);
}

// ---------------------------------------------------------------------------------------------
// Property: generated bundles round-trip through Avro and validate
// ---------------------------------------------------------------------------------------------

fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("\\PC{{1,{max}}}")).unwrap()
}

fn version() -> impl Strategy<Value = BundleVersion> {
    let ident = prop_oneof![
        (0u32..1000).prop_map(|n| n.to_string()),
        "[a-zA-Z][0-9a-zA-Z-]{0,7}",
        "[0-9]{0,3}[a-zA-Z-][0-9a-zA-Z-]{0,4}",
    ];
    let pre = proptest::collection::vec(ident, 0..3);
    let build = proptest::collection::vec("[0-9a-zA-Z-]{1,6}", 0..3);
    (0u64..100_000, 0u64..1000, 0u64..1000, pre, build).prop_map(|(a, b, c, pre, build)| {
        let mut s = format!("{a}.{b}.{c}");
        if !pre.is_empty() {
            s = format!("{s}-{}", pre.join("."));
        }
        if !build.is_empty() {
            s = format!("{s}+{}", build.join("."));
        }
        s.parse()
            .unwrap_or_else(|e| panic!("generated version {s}: {e}"))
    })
}

fn sha() -> impl Strategy<Value = String> {
    "[0-9a-f]{64}"
}

fn bundle_strategy() -> impl Strategy<Value = ModelBundle> {
    let artifact = (text(40), text(120), sha(), 0..=(1u64 << 53) - 1);
    let artifacts = proptest::collection::vec(artifact, 1..6);
    let groups = proptest::collection::vec((text(30), text(8)), 0..6);
    let schemas = proptest::collection::vec(text(30), 0..4);
    let provenance = (
        text(60),
        text(120),
        proptest::collection::vec(text(120), 1..4),
    );
    let metadata = proptest::collection::btree_map(
        proptest::string::string_regex("\\PC{1,30}").unwrap(),
        proptest::string::string_regex("\\PC{0,60}").unwrap(),
        0..8,
    );
    (
        "[a-z0-9][a-z0-9._-]{0,40}",
        version(),
        prop_oneof![Just(BundleKind::Model), Just(BundleKind::Policy)],
        artifacts,
        sha(),
        groups,
        schemas,
        provenance,
        metadata,
    )
        .prop_map(
            |(
                id,
                bundle_version,
                kind,
                artifacts,
                config_hash,
                groups,
                schemas,
                prov,
                metadata,
            )| {
                ModelBundle {
                    bundle_id: id.parse().unwrap(),
                    bundle_version,
                    kind,
                    artifacts: artifacts
                        .into_iter()
                        .enumerate()
                        .map(|(i, (name, uri, sha256, size_bytes))| Artifact {
                            name: format!("{i}-{name}"),
                            uri,
                            sha256,
                            size_bytes,
                        })
                        .collect(),
                    config_hash,
                    compatibility: Compatibility {
                        feature_groups: groups
                            .into_iter()
                            .map(|(name, version)| FeatureGroupRef { name, version })
                            .collect(),
                        schema_versions: schemas,
                    },
                    provenance: Provenance {
                        training_run_id: prov.0,
                        evaluation_report_ref: prov.1,
                        dataset_manifest_refs: prov.2,
                    },
                    metadata,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn generated_bundles_round_trip_through_avro(
        b in bundle_strategy(),
        reason in proptest::option::of(text(80)),
        evidence in proptest::collection::vec(text(60), 0..4),
    ) {
        prop_assert!(b.validate().is_ok(), "{:?}", b.validate());
        let json = serde_json::to_value(&b).unwrap();
        prop_assert!(is_valid("ModelBundle", &json), "{}", json);

        let mut receipt = testkit::pass_receipt(&b);
        receipt.evidence_refs = evidence;
        let mut env = publish_of(PUBLISHER, b.clone(), signed(receipt));
        env.reason = reason;
        let back = avro::decode_command(&avro::encode_command(&env)).unwrap();
        prop_assert_eq!(&back, &env);
        let Command::Publish(p) = &back.command else { unreachable!() };
        prop_assert_eq!(p.bundle.digest(), b.digest());
        prop_assert!(is_valid("CommandEnvelope", &serde_json::to_value(&env).unwrap()));

        // The registration event carries the bundle: it round-trips and validates as well.
        let mut w = World::new();
        let r = w.submit(env);
        prop_assert_eq!(r.event_type, RegistryEventType::BundleRegistered, "{:?}", r.error);
        let e = &w.events[0];
        let back = codec::decode_event(&codec::encode_event(e)).unwrap();
        prop_assert_eq!(&back, e);
        prop_assert!(is_valid("RegistryEvent", &serde_json::to_value(e).unwrap()));
    }
}

/// The OpenAPI document (whose checked-in copy `tests/api.rs` keeps from drifting) takes
/// every command type as the body of `POST /v1/commands`, the key commands included, and
/// lists every error code.
#[test]
fn openapi_command_body_admits_every_command_type() {
    let doc = mpr::api::openapi::document();
    let body = &doc["paths"]["/v1/commands"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"];
    assert_eq!(body["$ref"], "#/components/schemas/CommandEnvelope");
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": body["$ref"],
        "components": doc["components"],
    });
    let v = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema)
        .expect("the OpenAPI body schema compiles");
    let commands = all_commands();
    for env in &commands {
        let json = serde_json::to_value(env).unwrap();
        assert!(
            v.is_valid(&json),
            "{} is not a valid body",
            env.command.command_type().as_str()
        );
    }
    let mut unknown = serde_json::to_value(&commands[0]).unwrap();
    unknown["command_type"] = json!("ROTATE_KEY");
    assert!(!v.is_valid(&unknown));
    let codes: Vec<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(codes, ErrorCode::ALL.map(ErrorCode::as_str));
}

/// `mpr openapi | head -c 16`: a reader that goes away ends the CLI quietly (status 0, no
/// panic), as Unix tools do.
#[test]
fn cli_output_into_a_closed_pipe_exits_quietly() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_mpr"))
        .arg("openapi")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut head = [0u8; 16];
    out.read_exact(&mut head).unwrap();
    drop(out);
    let done = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "{:?} {stderr}", done.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A log written by the version before the autopilot (event and command schemas v2;
/// `tests/fixtures/log_v2.txt`, written by that version's own code) still reads after the
/// upgrade: every command decodes (an older producer keeps working), every event decodes
/// through schema resolution, keeps its hash and registry signature, chains, replays, and
/// the view built from it resolves as it did.
#[test]
fn a_log_written_before_the_autopilot_still_reads_and_verifies() {
    let text = std::fs::read_to_string(Path::new(ROOT).join("tests/fixtures/log_v2.txt")).unwrap();
    let keys = KeySet::of([testkit::registry_signer().verifying_key()]);
    let (mut events, mut catalog, mut commands) = (Vec::new(), Vec::new(), 0);
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (kind, hexed) = line.split_once(' ').unwrap();
        let bytes = hex::decode(hexed).unwrap();
        if kind == "command" {
            let env = avro::decode_command(&bytes).expect("a v2 command decodes");
            if let Command::Promote(p) = &env.command {
                assert_eq!(p.canary_share_bp, None);
            }
            commands += 1;
            continue;
        }
        let e = codec::decode_event(&bytes).expect("a v2 event decodes");
        assert!(e.autopilot.is_none());
        e.authenticate(&keys)
            .unwrap_or_else(|f| panic!("seq {} {}: {f}", e.seq, e.event_type.as_str()));
        let encoded = bytes.clone();
        if kind == "catalog" {
            catalog.push((e, encoded));
        } else {
            events.push((e, encoded));
        }
    }
    assert_eq!((commands, catalog.len(), events.len()), (12, 2, 10));
    let mut part = PartitionState::new(0);
    let mut prev = "0".repeat(64);
    for (e, _) in &events {
        assert!(e.verify_link(&prev), "seq {} does not chain", e.seq);
        prev = e.hash.clone();
        part.apply(e).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let view = mpr::view::View::open(&dir.path().join("view"), 1).unwrap();
    let all: Vec<(&RegistryEvent, &[u8], i64)> = catalog
        .iter()
        .chain(&events)
        .enumerate()
        .map(|(i, (e, b))| (e, b.as_slice(), i as i64))
        .collect();
    view.apply_batch(&all).unwrap();
    let q = |tenant: Option<&str>| ResolveQuery {
        environment: "prod".parse().unwrap(),
        bundle_id: "fraud".parse().unwrap(),
        tenant_id: tenant.map(|t| t.parse().unwrap()),
        degrade: false,
        routing_key: None,
    };
    let at = |q: &ResolveQuery| {
        view.resolve(q, mpr::view::ResolveAt::Now)
            .unwrap()
            .unwrap()
            .record
            .bundle
            .bundle_version
            .to_string()
    };
    // 1.1.0 was promoted, rolled back to 1.0.0, then bound for tenant acme.
    assert_eq!(at(&q(None)), "1.0.0");
    assert_eq!(at(&q(Some("acme"))), "1.1.0");
}
