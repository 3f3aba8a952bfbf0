//! Builders of realistic sample bundles, receipts and commands, shared by unit tests,
//! integration tests, benchmarks and the `examples/` generator. Not used by the service.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::domain::bundle::{
    Artifact, BundleKind, Compatibility, FeatureGroupRef, GateVerdict, Provenance, sha256_hex,
};
use crate::domain::command::{BundleTarget, Promote, PublishBundle, Rollback};
use crate::domain::trust::{COMMAND_AVRO_TYPE, Credential, KeySet, Signer};
use crate::domain::{
    Actor, BundleId, BundleVersion, Command, CommandEnvelope, Environment, GateReceipt,
    ModelBundle, TenantId, Timestamp,
};

/// The input of a command read at `offset` of commands partition 0, observed `offset` ms
/// after a fixed instant (for in-process decide loops).
pub fn input(envelope: CommandEnvelope, offset: i64) -> crate::domain::CommandInput {
    crate::domain::CommandInput {
        envelope,
        source: crate::domain::event::CommandSource {
            partition: 0,
            offset,
        },
        observed_at: Timestamp::from_millis(1_800_000_000_000 + offset),
        credential: Default::default(),
    }
}

/// The registry key of tests and benchmarks (a fixed seed: never use it elsewhere).
pub fn registry_signer() -> Signer {
    Signer::from_seed([0x52; 32])
}

/// The API gateway key of tests and benchmarks (a fixed seed).
pub fn gateway_signer() -> Signer {
    Signer::from_seed([0x47; 32])
}

/// The gate key of tests and benchmarks (a fixed seed), registered for [`GATE_NAME`].
pub fn gate_signer() -> Signer {
    Signer::from_seed([0x54; 32])
}

/// The gate name sample receipts carry.
pub const GATE_NAME: &str = "offline-eval-v3";

/// The registry keys tests accept: [`registry_signer`]'s.
pub fn registry_keys() -> KeySet {
    KeySet::of([registry_signer().verifying_key()])
}

/// `input`, signed by `signer` as an Avro command (what a signing producer sends).
pub fn signed_input(
    envelope: CommandEnvelope,
    offset: i64,
    signer: &Signer,
) -> crate::domain::CommandInput {
    let body = crate::codec::avro::encode_command(&envelope);
    crate::domain::CommandInput {
        credential: Credential::Signed {
            signature: signer.sign(COMMAND_AVRO_TYPE, &body),
            payload_type: COMMAND_AVRO_TYPE,
            body,
        },
        ..input(envelope, offset)
    }
}

/// A valid bundle for `id@version` needing feature group `features@1`.
pub fn bundle(id: &str, version: &str) -> ModelBundle {
    ModelBundle {
        bundle_id: id.parse().expect("valid id"),
        bundle_version: version.parse().expect("valid version"),
        kind: BundleKind::Model,
        artifacts: vec![Artifact {
            name: "model.onnx".into(),
            uri: format!("s3://mpr-artifacts/{id}/{version}/model.onnx"),
            sha256: sha256_hex(format!("{id}@{version}/model").as_bytes()),
            size_bytes: 48_213_776,
        }],
        config_hash: sha256_hex(format!("{id}@{version}/config").as_bytes()),
        compatibility: Compatibility {
            feature_groups: vec![FeatureGroupRef {
                name: "features".into(),
                version: "1".into(),
            }],
            schema_versions: vec!["decision-input/v1".into()],
        },
        provenance: Provenance {
            training_run_id: format!("run-{id}-{version}"),
            evaluation_report_ref: format!("s3://mpr-evals/{id}/{version}/report.json"),
            dataset_manifest_refs: vec![format!("s3://mpr-data/{id}/manifest-2026-11.json")],
        },
        metadata: BTreeMap::from([("owner".to_owned(), "risk-ml".to_owned())]),
    }
}

/// A PASS receipt for `b`, signed by `gate` (registered for [`GATE_NAME`]).
pub fn signed_receipt(b: &ModelBundle, gate: &Signer) -> GateReceipt {
    let mut r = pass_receipt(b);
    r.signature = Some(gate.sign(
        crate::domain::trust::RECEIPT_TYPE,
        &crate::domain::trust::receipt_body(&r),
    ));
    r
}

/// PUBLISH of `id@version` with a receipt signed by [`gate_signer`] (what a registry in
/// `signed` mode accepts once that gate is registered).
pub fn publish_signed(actor: &str, id: &str, version: &str) -> CommandEnvelope {
    let b = bundle(id, version);
    let r = signed_receipt(&b, &gate_signer());
    envelope(
        actor,
        Command::Publish(PublishBundle {
            bundle: b,
            gate_receipt: r,
        }),
    )
}

/// REGISTER_KEY of [`gate_signer`] for [`GATE_NAME`], by `actor`.
pub fn register_test_gate(actor: &str) -> CommandEnvelope {
    let g = gate_signer();
    envelope(
        actor,
        Command::RegisterKey(crate::domain::command::RegisterKey {
            owner_kind: crate::domain::trust::KeyOwnerKind::Gate,
            owner: GATE_NAME.to_owned(),
            public_key: g.public_hex(),
        }),
    )
}

/// An unsigned PASS receipt for `b` (accepted only in `unsigned-dev` mode).
pub fn pass_receipt(b: &ModelBundle) -> GateReceipt {
    GateReceipt {
        receipt_id: format!("gr-{}-{}", b.bundle_id, b.bundle_version),
        bundle_id: b.bundle_id.clone(),
        bundle_version: b.bundle_version.clone(),
        bundle_digest: b.digest(),
        verdict: GateVerdict::Pass,
        gate_name: GATE_NAME.into(),
        evaluated_at_utc: Timestamp::from_millis(1_790_000_000_000),
        evidence_refs: vec![format!(
            "s3://mpr-evals/{}/{}/gates.json",
            b.bundle_id, b.bundle_version
        )],
        signature: None,
    }
}

/// An envelope for `command` by `actor`, with a fresh command_id.
pub fn envelope(actor: &str, command: Command) -> CommandEnvelope {
    CommandEnvelope {
        command_id: Uuid::new_v4(),
        actor: actor.parse::<Actor>().expect("valid actor"),
        submitted_at_utc: Timestamp::from_millis(1_790_000_000_000),
        reason: None,
        command,
    }
}

/// PUBLISH of a sample bundle with its PASS receipt.
pub fn publish(actor: &str, id: &str, version: &str) -> CommandEnvelope {
    let b = bundle(id, version);
    let gate_receipt = pass_receipt(&b);
    envelope(
        actor,
        Command::Publish(PublishBundle {
            bundle: b,
            gate_receipt,
        }),
    )
}

/// A target naming `id@version`.
pub fn target(id: &str, version: &str) -> BundleTarget {
    BundleTarget {
        bundle_id: id.parse::<BundleId>().expect("valid id"),
        bundle_version: version.parse::<BundleVersion>().expect("valid version"),
    }
}

/// PROMOTE of `id@version` to `env`/`tenant`.
pub fn promote(
    actor: &str,
    id: &str,
    version: &str,
    env: &str,
    tenant: &str,
    degrade: bool,
) -> CommandEnvelope {
    envelope(
        actor,
        Command::Promote(Promote {
            bundle_id: id.parse().expect("valid id"),
            bundle_version: version.parse().expect("valid version"),
            environment: env.parse::<Environment>().expect("valid env"),
            tenant_id: tenant.parse::<TenantId>().expect("valid tenant"),
            degrade,
            canary_share_bp: None,
        }),
    )
}

/// ROLLBACK of `env`/`tenant`/`id`.
pub fn rollback(actor: &str, id: &str, env: &str, tenant: &str, degrade: bool) -> CommandEnvelope {
    envelope(
        actor,
        Command::Rollback(Rollback {
            bundle_id: id.parse().expect("valid id"),
            environment: env.parse().expect("valid env"),
            tenant_id: tenant.parse().expect("valid tenant"),
            degrade,
        }),
    )
}

/// SET_CATALOG of `env`, serving no feature group and schema `decision-input/v1`.
pub fn set_catalog(actor: &str, env: &str) -> CommandEnvelope {
    envelope(
        actor,
        Command::SetCatalog(crate::domain::CatalogEntry {
            environment: env.parse::<Environment>().expect("valid env"),
            feature_groups: Vec::new(),
            schema_versions: vec!["decision-input/v1".into()],
            posture: crate::domain::Posture::FailClosed,
            required_gates: Vec::new(),
        }),
    )
}

/// A JSON signal as the signal intake forwards it inside OBSERVE: from partition 0 of
/// `signals` at `offset`, signed by `signer` when given.
pub fn forwarded_signal(
    signal: &serde_json::Value,
    offset: i64,
    signer: Option<&Signer>,
) -> crate::domain::command::ForwardedSignal {
    use base64::Engine;
    crate::domain::command::ForwardedSignal {
        partition: 0,
        offset,
        content_type: crate::codec::CONTENT_TYPE_JSON.into(),
        payload: base64::engine::general_purpose::STANDARD
            .encode(serde_json::to_vec(signal).expect("JSON serializes")),
        signature: signer.map(|k| crate::codec::sign_json_signal(signal, k)),
    }
}
