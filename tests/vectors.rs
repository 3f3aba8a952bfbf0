//! Conformance vectors: each file in `tests/vectors/` is a scenario of commands, resolves
//! and state checks against the pure domain, with the expected outcome of every step.
//! After the steps, the runner also checks the hash chain and that replaying the events
//! rebuilds the same state. Any difference fails the run, naming the file and the step.
//!
//! A vector with a `trust` section runs with its trust roots (MPR2 §8): keys defined by
//! their 32-byte seeds, the gateway and registry keys among them, and a mode. Its command
//! steps may carry a credential (`sign_with`, `signed_payload`, `credential`) and have
//! their receipt signed (`receipt_signed_by`, `receipt_signed_over`); the runner builds the
//! `mpr-signature` header and hands it to the codec as the processor does.

use std::collections::BTreeMap;
use std::path::Path;

use mpr::codec;
use mpr::domain::bundle::canonical_json;
use mpr::domain::decide;
use mpr::domain::event::{CommandSource, verify_chain};
use mpr::domain::resolve::{MatchedRule, ResolveQuery, resolve};
use mpr::domain::state::{SlotRecord, UndecodableInput, infallible};
use mpr::domain::trust::{
    COMMAND_JSON_TYPE, KeyOwnerKind, KeyRecord, KeySet, RECEIPT_TYPE, Signer, TrustRoots,
    receipt_body,
};
use mpr::domain::{
    Actor, BundleId, BundleVersion, CatalogState, CommandInput, Decision, ErrorCode, Grants,
    LifecycleState, Outcome, PartitionState, RegistryEvent, RegistryEventType, RoleGrant, Slot,
    Timestamp,
};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Vector {
    name: String,
    description: String,
    /// Spec rule ids this scenario covers.
    rules: Vec<String>,
    /// actor -> grants like "deployer@prod". Roles are enforced unless `enforce` is false.
    #[serde(default)]
    principals: BTreeMap<String, Vec<String>>,
    #[serde(default = "yes")]
    enforce: bool,
    /// Trust roots and keys; absent: the unsigned-dev mode with no keys.
    #[serde(default)]
    trust: Option<TrustSpec>,
    steps: Vec<Step>,
}

fn yes() -> bool {
    true
}

/// A field whose explicit `null` differs from its absence.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustSpec {
    /// `signed` (the default) or `unsigned-dev`.
    #[serde(default = "signed_mode")]
    mode: String,
    /// name -> 32-byte Ed25519 seed, 64 hex characters.
    keys: BTreeMap<String, String>,
    /// Names of the keys configured as API gateway keys.
    #[serde(default)]
    gateway: Vec<String>,
    /// Name of the registry key: every appended event is sealed with it, and every event
    /// must verify against it after the run.
    #[serde(default)]
    registry: Option<String>,
}

fn signed_mode() -> String {
    "signed".into()
}

/// What the `credential` field asks for.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum CredentialSpec {
    /// No `mpr-signature` header.
    None,
    /// A header that is not a signature object.
    Malformed,
}

/// How a command step is signed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Signing {
    /// The key that signs the command (its JCS form, as a JSON command).
    #[serde(default)]
    sign_with: Option<String>,
    /// What `sign_with` signs instead of the command sent (a signature over other bytes).
    #[serde(default)]
    signed_payload: Option<serde_json::Value>,
    /// `none` or `malformed` instead of a signature.
    #[serde(default)]
    credential: Option<CredentialSpec>,
    /// The key that signs the publish's receipt (its in-toto Statement).
    #[serde(default)]
    receipt_signed_by: Option<String>,
    /// Receipt fields as they were when signed, when the receipt sent differs.
    #[serde(default)]
    receipt_signed_over: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Step {
    Command {
        command: serde_json::Value,
        #[serde(flatten)]
        signing: Signing,
        expect: ExpectCommand,
    },
    Raw {
        raw: String,
        expect: ExpectCommand,
    },
    Resolve {
        resolve: ResolveQuery,
        expect: ExpectResolve,
    },
    State {
        state: StateQuery,
        expect: ExpectState,
    },
    Digest {
        digest: serde_json::Value,
        expect: String,
    },
    Signals {
        signals: SignalsStep,
        expect: ExpectCommand,
    },
}

/// A batch of runtime signals, as the signal intake forwards it: one OBSERVE command
/// from `mpr-autopilot` (signed by the vector's registry key, if any).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalsStep {
    command_id: uuid::Uuid,
    bundle_id: BundleId,
    environment: String,
    #[serde(default = "any_tenant")]
    tenant_id: String,
    items: Vec<SignalItem>,
}

fn any_tenant() -> String {
    "*".into()
}

/// One signal: its `signals` offset, its JSON, and the key that signs it (if any).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalItem {
    offset: i64,
    signal: serde_json::Value,
    #[serde(default)]
    sign_with: Option<String>,
}

/// What an OBSERVE's event records (MPR2 §9).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectAutopilot {
    #[serde(default)]
    counted: Option<u64>,
    #[serde(default)]
    ignored: Option<u64>,
    #[serde(default)]
    refused: Option<u64>,
    #[serde(default)]
    repeated: Option<u64>,
    /// The code each refused signal was refused with, by signal id (all of them).
    #[serde(default)]
    refused_codes: Option<BTreeMap<uuid::Uuid, String>>,
    /// The trigger, or null for none.
    #[serde(default, deserialize_with = "present")]
    trigger: Option<Option<ExpectTrigger>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectTrigger {
    rule_id: String,
    action: mpr::domain::autopilot::AutoAction,
    outcome: mpr::domain::autopilot::TriggerOutcome,
    bundle_version: BundleVersion,
    /// Signal ids the trigger names (all of them, in order), when given.
    #[serde(default)]
    signal_ids: Option<Vec<uuid::Uuid>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectCommand {
    outcome: Outcome,
    #[serde(default)]
    event_type: Option<RegistryEventType>,
    #[serde(default)]
    error_code: Option<ErrorCode>,
    #[serde(default)]
    from_state: Option<LifecycleState>,
    #[serde(default)]
    to_state: Option<LifecycleState>,
    #[serde(default)]
    bundle_version: Option<BundleVersion>,
    #[serde(default)]
    seq: Option<u64>,
    /// True when the command_id was seen before: no event is appended.
    #[serde(default)]
    repeat: bool,
    #[serde(default)]
    warnings: Option<Vec<String>>,
    #[serde(default)]
    catalog_version: Option<u64>,
    /// True when the input is undecodable without a command_id: it goes to the DLQ and
    /// no event is appended.
    #[serde(default)]
    dlq: bool,
    /// Substrings the error message must contain.
    #[serde(default)]
    message_contains: Vec<String>,
    /// The event's `signed_by`: the name of a key of the vector, or null.
    #[serde(default, deserialize_with = "present")]
    signed_by: Option<Option<String>>,
    /// The event's `via`.
    #[serde(default, deserialize_with = "present")]
    via: Option<Option<String>>,
    /// The event's `key` (KEY_REGISTERED, KEY_REVOKED), or null.
    #[serde(default, deserialize_with = "present")]
    key: Option<Option<ExpectKey>>,
    /// What an OBSERVE's event records.
    #[serde(default)]
    autopilot: Option<ExpectAutopilot>,
    /// The event's actor.
    #[serde(default)]
    actor: Option<String>,
}

/// A KeyRecord, naming the key by its name in the vector.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectKey {
    key: String,
    owner_kind: KeyOwnerKind,
    owner: String,
    registered_seq: u64,
    revoked_seq: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectResolve {
    #[serde(default)]
    bundle_version: Option<BundleVersion>,
    #[serde(default)]
    rule: Option<MatchedRule>,
    #[serde(default)]
    error_code: Option<ErrorCode>,
    /// The slot that answered (CANARY when the routing key's slice is inside the share).
    #[serde(default)]
    slot: Option<Slot>,
    /// The canary the answer reports, or null for none.
    #[serde(default, deserialize_with = "present")]
    canary: Option<Option<BundleVersion>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateQuery {
    bundle_id: BundleId,
    bundle_version: BundleVersion,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectState {
    #[serde(default)]
    lifecycle_state: Option<LifecycleState>,
    #[serde(default)]
    active_bindings: Option<u32>,
    /// True when the version must not exist.
    #[serde(default)]
    absent: bool,
}

struct Run {
    part: PartitionState,
    cat: CatalogState,
    grants: Grants,
    events: Vec<RegistryEvent>,
    catalog_events: Vec<RegistryEvent>,
    /// The vector's keys by name.
    keys: BTreeMap<String, Signer>,
    /// Seals every appended event.
    registry: Option<Signer>,
}

/// Replaces `"$DIGEST"` in a publish command's receipt with the bundle's real digest.
fn fill_digest(cmd: &mut serde_json::Value) {
    let Some(payload) = cmd.get("payload") else {
        return;
    };
    let Some(bundle) = payload.get("bundle") else {
        return;
    };
    let Ok(b) = serde_json::from_value::<mpr::domain::ModelBundle>(bundle.clone()) else {
        return;
    };
    let digest = b.digest();
    if let Some(r) = cmd.pointer_mut("/payload/gate_receipt/bundle_digest")
        && r == "$DIGEST"
    {
        *r = serde_json::Value::String(digest);
    }
}

impl Run {
    fn key(&self, name: &str, ctx: &str) -> &Signer {
        self.keys
            .get(name)
            .unwrap_or_else(|| panic!("{ctx}: the vector defines no key {name:?}"))
    }

    /// Signs the receipt of a PUBLISH as `signing` says (after `$DIGEST` is filled).
    fn sign_receipt(&self, cmd: &mut serde_json::Value, signing: &Signing, ctx: &str) {
        let Some(name) = &signing.receipt_signed_by else {
            assert!(
                signing.receipt_signed_over.is_none(),
                "{ctx}: receipt_signed_over without receipt_signed_by"
            );
            return;
        };
        let sent = cmd
            .pointer("/payload/gate_receipt")
            .unwrap_or_else(|| panic!("{ctx}: receipt_signed_by on a command without a receipt"))
            .clone();
        let mut signed_over = sent;
        for (k, v) in signing.receipt_signed_over.iter().flatten() {
            signed_over[k] = v.clone();
        }
        let receipt: mpr::domain::GateReceipt = serde_json::from_value(signed_over)
            .unwrap_or_else(|e| panic!("{ctx}: the signed receipt is not a GateReceipt: {e}"));
        let sig = self
            .key(name, ctx)
            .sign(RECEIPT_TYPE, &receipt_body(&receipt));
        cmd["payload"]["gate_receipt"]["signature"] = serde_json::to_value(sig).unwrap();
    }

    /// The `mpr-signature` header of a command step, if any.
    fn header(&self, cmd: &serde_json::Value, signing: &Signing, ctx: &str) -> Option<String> {
        match (signing.credential, &signing.sign_with) {
            (Some(_), Some(_)) => panic!("{ctx}: credential and sign_with exclude each other"),
            (Some(CredentialSpec::Malformed), None) => {
                Some(r#"{"keyid":"not a signature object"}"#.to_owned())
            }
            (Some(CredentialSpec::None), None) | (None, None) => {
                assert!(
                    signing.signed_payload.is_none(),
                    "{ctx}: signed_payload without sign_with"
                );
                None
            }
            (None, Some(name)) => {
                let signed = signing.signed_payload.as_ref().unwrap_or(cmd);
                let sig = self
                    .key(name, ctx)
                    .sign(COMMAND_JSON_TYPE, &canonical_json(signed));
                Some(serde_json::to_string(&sig).unwrap())
            }
        }
    }

    fn command(
        &mut self,
        idx: usize,
        bytes: &[u8],
        header: Option<&str>,
        ctx: &str,
        expect: &ExpectCommand,
    ) {
        let source = CommandSource {
            partition: 0,
            offset: idx as i64,
        };
        let observed_at = Timestamp::from_millis(1_800_000_000_000 + idx as i64 * 1000);
        let decision = match codec::decode_command(bytes, None) {
            Ok(envelope) => {
                let input = CommandInput {
                    envelope,
                    source,
                    observed_at,
                    credential: codec::command_credential(
                        bytes,
                        Some(codec::CONTENT_TYPE_JSON),
                        header,
                    ),
                };
                infallible(decide::route(
                    &self.part,
                    &self.part.chain,
                    &self.cat,
                    &self.grants,
                    &input,
                ))
            }
            Err(e) if e.command_id.is_none() => {
                assert!(
                    expect.dlq,
                    "{ctx}: undecodable without command_id ({e}) but dlq not expected"
                );
                assert_eq!(
                    Some(e.code),
                    expect.error_code,
                    "{ctx}: dlq error_code ({e})"
                );
                return;
            }
            Err(e) => {
                let command_id = e.command_id.expect("checked above");
                self.part.decide_undecodable(&UndecodableInput {
                    command_id,
                    bundle_id: None,
                    error: e.rejection(),
                    source,
                    observed_at,
                })
            }
        };
        assert!(
            !expect.dlq,
            "{ctx}: expected the DLQ, but the input decoded"
        );
        let result = match decision {
            Decision::Repeat(r) => {
                assert!(
                    expect.repeat,
                    "{ctx}: command_id repeated but the vector expects a new event"
                );
                r
            }
            Decision::Append(mut ev) => {
                assert!(
                    !expect.repeat,
                    "{ctx}: expected a repeat, got a new event {:?}",
                    ev.event_type
                );
                if let Some(registry) = &self.registry {
                    ev.sign(registry);
                }
                let r = mpr::domain::CommandResult::from_event(&ev);
                if ev.log == mpr::domain::event::LogId::Catalog {
                    self.cat.apply(&ev).unwrap();
                    self.catalog_events.push(ev);
                } else {
                    self.part.apply(&ev).unwrap();
                    self.events.push(ev);
                }
                r
            }
        };
        assert_eq!(
            result.outcome, expect.outcome,
            "{ctx}: outcome (error: {:?})",
            result.error
        );
        assert_eq!(
            result.error.as_ref().map(|e| e.code),
            expect.error_code,
            "{ctx}: error_code ({:?})",
            result.error
        );
        if let Some(t) = expect.event_type {
            assert_eq!(result.event_type, t, "{ctx}: event_type");
        }
        if let Some(s) = expect.to_state {
            assert_eq!(result.lifecycle_state, Some(s), "{ctx}: to_state");
        }
        if let Some(s) = expect.from_state {
            let ev = self
                .events
                .iter()
                .chain(&self.catalog_events)
                .find(|e| e.event_id == result.event_id)
                .unwrap();
            assert_eq!(ev.from_state, Some(s), "{ctx}: from_state");
        }
        if let Some(v) = &expect.bundle_version {
            assert_eq!(
                result.bundle_version.as_ref(),
                Some(v),
                "{ctx}: bundle_version"
            );
        }
        if let Some(seq) = expect.seq {
            assert_eq!(result.seq, seq, "{ctx}: seq");
        }
        if let Some(w) = &expect.warnings {
            assert_eq!(&result.warnings, w, "{ctx}: warnings");
        }
        if let Some(cv) = expect.catalog_version {
            assert_eq!(result.catalog_version, Some(cv), "{ctx}: catalog_version");
        }
        if expect.signed_by.is_some() || expect.via.is_some() || expect.key.is_some() {
            self.check_trust(&result, expect, ctx);
        }
        if expect.autopilot.is_some() || expect.actor.is_some() {
            self.check_autopilot(&result, expect, ctx);
        }
        for needle in &expect.message_contains {
            let msg = result
                .error
                .as_ref()
                .map(|e| e.message.as_str())
                .unwrap_or("");
            assert!(
                msg.contains(needle.as_str()),
                "{ctx}: message {msg:?} lacks {needle:?}"
            );
        }
    }

    /// Checks what the event of `result` records of the autopilot.
    fn check_autopilot(
        &self,
        result: &mpr::domain::CommandResult,
        expect: &ExpectCommand,
        ctx: &str,
    ) {
        let ev = self
            .events
            .iter()
            .find(|e| e.event_id == result.event_id)
            .unwrap_or_else(|| panic!("{ctx}: the result's event was not recorded"));
        if let Some(a) = &expect.actor {
            assert_eq!(
                ev.actor.as_ref().map(|x| x.as_str()),
                Some(a.as_str()),
                "{ctx}: actor"
            );
        }
        let Some(want) = &expect.autopilot else {
            return;
        };
        let d = ev
            .autopilot
            .as_ref()
            .unwrap_or_else(|| panic!("{ctx}: the event records no autopilot detail"));
        let o = d
            .observation
            .as_ref()
            .unwrap_or_else(|| panic!("{ctx}: the event records no observation"));
        for (name, want, got) in [
            ("counted", want.counted, o.counted),
            ("ignored", want.ignored, o.ignored),
            ("refused", want.refused, o.refused),
            ("repeated", want.repeated, o.repeated),
        ] {
            if let Some(w) = want {
                assert_eq!(got, w, "{ctx}: {name} (observation {o:?})");
            }
        }
        if let Some(codes) = &want.refused_codes {
            let got: BTreeMap<uuid::Uuid, String> = o
                .refused_ids
                .iter()
                .map(|r| (r.signal_id, r.code.as_str().to_owned()))
                .collect();
            assert_eq!(&got, codes, "{ctx}: refused signals' codes");
        }
        if let Some(t) = &want.trigger {
            match (t, &d.trigger) {
                (None, None) => {}
                (None, Some(got)) => panic!("{ctx}: expected no trigger, got {got:?}"),
                (Some(w), None) => panic!("{ctx}: expected trigger {}, got none", w.rule_id),
                (Some(w), Some(got)) => {
                    assert_eq!(got.rule_id, w.rule_id, "{ctx}: trigger rule_id");
                    assert_eq!(got.action, w.action, "{ctx}: trigger action");
                    assert_eq!(got.outcome, w.outcome, "{ctx}: trigger outcome ({got:?})");
                    assert_eq!(
                        got.bundle_version, w.bundle_version,
                        "{ctx}: trigger version"
                    );
                    if let Some(ids) = &w.signal_ids {
                        assert_eq!(&got.signal_ids, ids, "{ctx}: trigger signal_ids");
                    }
                }
            }
        }
    }

    /// Builds the OBSERVE command of a signals step: bytes and `mpr-signature` header.
    fn observe(&self, step: &SignalsStep, ctx: &str) -> (Vec<u8>, Option<String>) {
        use base64::Engine;
        let items: Vec<serde_json::Value> = step
            .items
            .iter()
            .map(|it| {
                let mut signal = it.signal.clone();
                // "$DIGEST": the registered digest of the version the signal names.
                if signal["bundle_digest"] == "$DIGEST" {
                    let v: BundleVersion = signal["bundle_version"]
                        .as_str()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_else(|| panic!("{ctx}: signal without a bundle_version"));
                    let rec = self
                        .part
                        .bundle(&step.bundle_id, &v)
                        .unwrap_or_else(|| panic!("{ctx}: $DIGEST of unregistered {v}"));
                    signal["bundle_digest"] = serde_json::json!(rec.bundle_digest);
                }
                let bytes = serde_json::to_vec(&signal).unwrap();
                let sig = it
                    .sign_with
                    .as_ref()
                    .map(|n| codec::sign_json_signal(&signal, self.key(n, ctx)));
                let mut f = serde_json::json!({
                    "partition": 0,
                    "offset": it.offset,
                    "content_type": codec::CONTENT_TYPE_JSON,
                    "payload": base64::engine::general_purpose::STANDARD.encode(bytes),
                });
                if let Some(sig) = sig {
                    f["signature"] = serde_json::json!(sig);
                }
                f
            })
            .collect();
        let cmd = serde_json::json!({
            "command_id": step.command_id,
            "actor": mpr::domain::autopilot::AUTOPILOT_ACTOR,
            "submitted_at_utc": "2026-11-20T09:00:00.000Z",
            "command_type": "OBSERVE",
            "payload": {
                "bundle_id": step.bundle_id,
                "environment": step.environment,
                "tenant_id": step.tenant_id,
                "signals": items,
            },
        });
        let header = self
            .registry
            .as_ref()
            .map(|r| codec::sign_json_command(&cmd, r));
        (serde_json::to_vec(&cmd).unwrap(), header)
    }

    /// Checks what the event of `result` records about trust.
    fn check_trust(&self, result: &mpr::domain::CommandResult, expect: &ExpectCommand, ctx: &str) {
        let ev = self
            .events
            .iter()
            .chain(&self.catalog_events)
            .find(|e| e.event_id == result.event_id)
            .unwrap_or_else(|| panic!("{ctx}: the result's event was not recorded"));
        if let Some(name) = &expect.signed_by {
            let id = name.as_deref().map(|n| self.key(n, ctx).key_id());
            assert_eq!(ev.signed_by.as_deref(), id, "{ctx}: signed_by");
        }
        if let Some(via) = &expect.via {
            assert_eq!(&ev.via, via, "{ctx}: via");
        }
        if let Some(key) = &expect.key {
            let want = key.as_ref().map(|k| {
                let s = self.key(&k.key, ctx);
                KeyRecord {
                    key_id: s.key_id().to_owned(),
                    owner_kind: k.owner_kind,
                    owner: k.owner.clone(),
                    public_key: s.public_hex(),
                    registered_seq: k.registered_seq,
                    revoked_seq: k.revoked_seq,
                }
            });
            assert_eq!(ev.key, want, "{ctx}: key");
        }
    }

    fn resolve(&self, q: &ResolveQuery, expect: &ExpectResolve, ctx: &str) {
        let fam = self.part.families.get(&q.bundle_id);
        let got = resolve::<BundleVersion, ()>(q, |tenant, slot| {
            let key = mpr::domain::event::ScopeRef {
                environment: q.environment.clone(),
                tenant_id: tenant.clone(),
                slot,
            };
            Ok(fam
                .and_then(|f| f.slots.get(&key))
                .and_then(SlotRecord::bound)
                .cloned())
        })
        .unwrap();
        let got = got.map(|(rule, tenant, slot, v)| {
            if slot != Slot::Primary {
                return (rule, slot, v, None);
            }
            let key = mpr::domain::event::ScopeRef {
                environment: q.environment.clone(),
                tenant_id: tenant.clone(),
                slot: Slot::Canary,
            };
            match mpr::domain::resolve::pick_canary(q, &tenant, fam.and_then(|f| f.slots.get(&key)))
            {
                Some((c, _, true)) => (rule, Slot::Canary, c.clone(), Some(c)),
                Some((c, _, false)) => (rule, slot, v, Some(c)),
                None => (rule, slot, v, None),
            }
        });
        match got {
            Ok((rule, slot, v, canary)) => {
                if let Some(want) = expect.slot {
                    assert_eq!(slot, want, "{ctx}: answering slot");
                }
                if let Some(want) = &expect.canary {
                    assert_eq!(&canary, want, "{ctx}: canary reported");
                }
                assert_eq!(
                    expect.error_code, None,
                    "{ctx}: expected an error, resolved {v} by {rule:?}"
                );
                assert_eq!(
                    Some(&v),
                    expect.bundle_version.as_ref(),
                    "{ctx}: resolved version"
                );
                if let Some(r) = expect.rule {
                    assert_eq!(rule, r, "{ctx}: matched rule");
                }
            }
            Err(r) => {
                assert_eq!(
                    Some(r.code),
                    expect.error_code,
                    "{ctx}: resolve error ({})",
                    r.message
                );
            }
        }
    }
}

fn run_vector(path: &Path) -> usize {
    let text = std::fs::read_to_string(path).unwrap();
    let v: Vector =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        !v.description.is_empty() && !v.rules.is_empty(),
        "{}: needs description and rules",
        v.name
    );
    let mut grants = Grants::enforced(v.principals.iter().map(|(a, gs)| {
        let actor: Actor = a.parse().unwrap();
        (
            actor,
            gs.iter().map(|g| g.parse::<RoleGrant>().unwrap()).collect(),
        )
    }));
    grants.enforce = v.enforce;
    let mut keys = BTreeMap::new();
    let mut registry = None;
    if let Some(t) = &v.trust {
        for (name, seed) in &t.keys {
            let seed: [u8; 32] = hex::decode(seed)
                .ok()
                .and_then(|b| b.try_into().ok())
                .unwrap_or_else(|| panic!("{}: key {name}: not a 32-byte hex seed", v.name));
            keys.insert(name.clone(), Signer::from_seed(seed));
        }
        let named = |n: &String| {
            keys.get(n)
                .unwrap_or_else(|| panic!("{}: no key {n}", v.name))
                .clone()
        };
        grants.trust = TrustRoots {
            require_signatures: match t.mode.as_str() {
                "signed" => true,
                "unsigned-dev" => false,
                other => panic!("{}: unknown trust mode {other}", v.name),
            },
            gateway: KeySet::of(t.gateway.iter().map(|n| named(n).verifying_key())),
            registry: KeySet::of(t.registry.iter().map(|n| named(n).verifying_key())),
        };
        registry = t.registry.as_ref().map(named);
    }
    let mut run = Run {
        part: PartitionState::new(0),
        cat: CatalogState::new(),
        grants,
        events: Vec::new(),
        catalog_events: Vec::new(),
        keys,
        registry,
    };
    for (i, step) in v.steps.iter().enumerate() {
        let ctx = format!("{} step {}", v.name, i + 1);
        match step {
            Step::Command {
                command,
                signing,
                expect,
            } => {
                let mut c = command.clone();
                fill_digest(&mut c);
                run.sign_receipt(&mut c, signing, &ctx);
                let header = run.header(&c, signing, &ctx);
                let bytes = serde_json::to_vec(&c).unwrap();
                run.command(i, &bytes, header.as_deref(), &ctx, expect);
            }
            Step::Raw { raw, expect } => {
                let bytes = raw
                    .strip_prefix("hex:")
                    .map_or_else(|| raw.as_bytes().to_vec(), |h| hex::decode(h).unwrap());
                run.command(i, &bytes, None, &ctx, expect);
            }
            Step::Resolve { resolve, expect } => run.resolve(resolve, expect, &ctx),
            Step::State { state, expect } => {
                let rec = run.part.bundle(&state.bundle_id, &state.bundle_version);
                if expect.absent {
                    assert!(rec.is_none(), "{ctx}: expected no such bundle");
                    continue;
                }
                let rec = rec.unwrap_or_else(|| panic!("{ctx}: bundle not registered"));
                if let Some(s) = expect.lifecycle_state {
                    assert_eq!(rec.state, s, "{ctx}: lifecycle_state");
                }
                if let Some(n) = expect.active_bindings {
                    assert_eq!(rec.active_bindings, n, "{ctx}: active_bindings");
                }
            }
            Step::Signals { signals, expect } => {
                let (bytes, header) = run.observe(signals, &ctx);
                run.command(i, &bytes, header.as_deref(), &ctx, expect);
            }
            Step::Digest { digest, expect } => {
                let b: mpr::domain::ModelBundle = serde_json::from_value(digest.clone()).unwrap();
                assert_eq!(&b.digest(), expect, "{ctx}: digest");
            }
        }
    }
    verify_chain(&run.events).unwrap_or_else(|b| panic!("{}: chain broken at {b:?}", v.name));
    verify_chain(&run.catalog_events)
        .unwrap_or_else(|b| panic!("{}: catalog chain broken at {b:?}", v.name));
    if let Some(registry) = &run.registry {
        let roots = KeySet::of([registry.verifying_key()]);
        for e in run.events.iter().chain(&run.catalog_events) {
            e.authenticate(&roots)
                .unwrap_or_else(|f| panic!("{}: {:?} seq {}: {f}", v.name, e.log, e.seq));
        }
    }
    let mut replay = PartitionState::new(0);
    for e in &run.events {
        let round = codec::decode_event(&codec::encode_event(e)).unwrap();
        assert_eq!(&round, e, "{}: Avro round trip of seq {}", v.name, e.seq);
        replay.apply(&round).unwrap();
    }
    assert_eq!(replay, run.part, "{}: replay(events) != state", v.name);
    let _ = Slot::Primary;
    v.steps.len()
}

#[test]
fn conformance_vectors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut steps = 0;
    for f in &files {
        steps += run_vector(f);
    }
    eprintln!("{} vectors, {steps} steps", files.len());
    assert!(
        files.len() >= 30,
        "expected at least 30 vectors, found {}",
        files.len()
    );
}
