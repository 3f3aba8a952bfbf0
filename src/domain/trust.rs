//! Trust: who signed what, and whether it verifies. Ed25519 keys and their ids, the DSSE
//! pre-authentication encoding every signature covers, detached signatures on commands,
//! gate receipts as signed in-toto Statements, the registry's signatures on events and
//! `state` records, and the key registry that the catalog log carries.
//!
//! Pure: signing and verifying are computation on bytes (RFC 8032 Ed25519 is
//! deterministic, so the same key signs the same bytes the same way on every replica).
//! Key files and the clock live in the shell. The formats are MPR2 §8's.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::bundle::{GateReceipt, canonical_json, sha256_hex};
use super::error::{ErrorCode, Rejection};
use super::ids::Actor;

/// DSSE payload type of an Avro command: the record value as on the wire (single-object
/// encoding: marker, schema fingerprint, datum).
pub const COMMAND_AVRO_TYPE: &str = "application/vnd.mpr.command.v1+avro";
/// DSSE payload type of a JSON command: the RFC 8785 (JCS) form of the JSON envelope.
pub const COMMAND_JSON_TYPE: &str = "application/vnd.mpr.command.v1+json";
/// DSSE payload type of a gate receipt: the JCS form of its in-toto Statement v1.
pub const RECEIPT_TYPE: &str = "application/vnd.in-toto+json";
/// DSSE payload type of an event signature: the event's `hash` (64 ASCII hex characters),
/// which covers every other field.
pub const SIGNAL_AVRO_TYPE: &str = "application/vnd.mpr.signal.v1+avro";
/// DSSE payload type of a JSON signal (its RFC 8785 form).
pub const SIGNAL_JSON_TYPE: &str = "application/vnd.mpr.signal.v1+json";
/// DSSE payload type of an event hash.
pub const EVENT_TYPE: &str = "application/vnd.mpr.event.v1+sha256";
/// Label of the MAC key of `state` records, derived from the registry key (MPR2 §8.5).
pub const STATE_MAC_LABEL: &[u8] = b"mpr/state-record-mac/v1";
/// Length of a `state` record's MAC tag (HMAC-SHA256).
pub const STATE_TAG_LEN: usize = 32;
/// The Kafka header that carries a command's detached signature (a DSSE signature
/// object, JSON: `{"keyid": .., "sig": ..}`).
pub const SIGNATURE_HEADER: &str = "mpr-signature";
/// What an event records in `via` when the HTTP API signed for the token's actor.
pub const VIA_GATEWAY: &str = "api-gateway";
/// `predicateType` of a gate receipt's in-toto Statement.
pub const RECEIPT_PREDICATE: &str = "https://mpr.dev/attestations/gate-receipt/v1";
/// Length of an Ed25519 signature in bytes.
pub const SIGNATURE_LEN: usize = 64;

/// DSSE v1 pre-authentication encoding: `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP
/// body`, lengths as ASCII decimal. Every MPR signature covers these bytes.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(body);
    out
}

/// A key id: lowercase hex SHA-256 of the raw 32-byte Ed25519 public key. Anyone holding
/// the public key computes the same id, so an id can never name two keys.
pub fn key_id(key: &VerifyingKey) -> String {
    sha256_hex(key.as_bytes())
}

/// Parses a public key from 64 hex characters (the raw 32 bytes).
pub fn parse_public_key(hex_key: &str) -> Result<VerifyingKey, Rejection> {
    let bad = |why: &str| {
        Rejection::new(
            ErrorCode::InvalidPayload,
            format!("public_key must be 64 hex characters of an Ed25519 public key: {why}"),
        )
    };
    let bytes: [u8; 32] = hex::decode(hex_key)
        .map_err(|_| bad("not hex"))?
        .try_into()
        .map_err(|_| bad("not 32 bytes"))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| bad("not a curve point"))
}

/// A DSSE signature object: which key, and the base64 signature over [`pae`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// The signing key's id ([`key_id`]).
    pub keyid: String,
    /// Base64 (standard, padded) of the 64-byte Ed25519 signature.
    pub sig: String,
}

impl Signature {
    /// The raw signature bytes, if `sig` is base64 of 64 bytes.
    pub fn bytes(&self) -> Option<ed25519_dalek::Signature> {
        let raw: [u8; SIGNATURE_LEN] = B64.decode(&self.sig).ok()?.try_into().ok()?;
        Some(ed25519_dalek::Signature::from_bytes(&raw))
    }

    /// Whether this signature, by `key`, covers `payload_type` and `body`. Strict
    /// verification: a malleated or small-order signature is refused.
    pub fn verifies(&self, key: &VerifyingKey, payload_type: &str, body: &[u8]) -> bool {
        self.bytes()
            .is_some_and(|s| key.verify_strict(&pae(payload_type, body), &s).is_ok())
    }
}

/// An Ed25519 private key with its id: the registry's key (events, `state` records,
/// checkpoints), the API gateway's key, a principal's or a gate's.
#[derive(Clone)]
pub struct Signer {
    key: SigningKey,
    id: String,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signer({})", self.id)
    }
}

impl Signer {
    /// The key whose 32-byte seed is `seed` (RFC 8032 private key).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let key = SigningKey::from_bytes(&seed);
        let id = key_id(&key.verifying_key());
        Self { key, id }
    }

    /// Reads a PKCS#8 PEM private key (`mpr keygen`, `openssl genpkey -algorithm ed25519`).
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        use ed25519_dalek::pkcs8::DecodePrivateKey;
        let key = SigningKey::from_pkcs8_pem(pem).map_err(|e| e.to_string())?;
        Ok(Self::from_seed(key.to_bytes()))
    }

    /// The key as PKCS#8 PEM.
    pub fn to_pem(&self) -> String {
        use ed25519_dalek::pkcs8::{EncodePrivateKey, spki::der::pem::LineEnding};
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .expect("an Ed25519 key encodes as PKCS#8")
            .to_string()
    }

    /// Its key id.
    pub fn key_id(&self) -> &str {
        &self.id
    }

    /// Its public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Its public key as 64 hex characters.
    pub fn public_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    /// Signs [`pae`]`(payload_type, body)`.
    pub fn sign(&self, payload_type: &str, body: &[u8]) -> Signature {
        use ed25519_dalek::Signer as _;
        let s = self.key.sign(&pae(payload_type, body));
        Signature {
            keyid: self.id.clone(),
            sig: B64.encode(s.to_bytes()),
        }
    }

    /// A 32-byte key for `label`, derived from this private key (HMAC-SHA256 keyed by
    /// the 32-byte seed): only a holder of the private key can compute it.
    pub fn derive_key(&self, label: &[u8]) -> [u8; 32] {
        use hmac::{Mac, digest::KeyInit};
        let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&self.key.to_bytes())
            .expect("HMAC takes any key length");
        mac.update(label);
        mac.finalize().into_bytes().into()
    }

    /// The raw 64-byte signature over `message` itself, for formats that define their own
    /// signed bytes (the C2SP signed note of a checkpoint).
    pub fn sign_plain(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        use ed25519_dalek::Signer as _;
        self.key.sign(message).to_bytes()
    }
}

/// Public keys by id: a trust root from configuration (the registry's keys, the API
/// gateway's keys).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet(BTreeMap<String, VerifyingKey>);

impl KeySet {
    /// The set of `keys`.
    pub fn of(keys: impl IntoIterator<Item = VerifyingKey>) -> Self {
        Self(keys.into_iter().map(|k| (key_id(&k), k)).collect())
    }

    /// Whether it holds no key.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The key ids it holds.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Its public keys.
    pub fn keys(&self) -> impl Iterator<Item = &VerifyingKey> {
        self.0.values()
    }

    /// The key `keyid`.
    pub fn get(&self, keyid: &str) -> Option<&VerifyingKey> {
        self.0.get(keyid)
    }

    /// Whether it holds `keyid`.
    pub fn contains(&self, keyid: &str) -> bool {
        self.0.contains_key(keyid)
    }

    /// Whether `sig` is by one of these keys and covers `payload_type` and `body`.
    pub fn verifies(&self, sig: &Signature, payload_type: &str, body: &[u8]) -> bool {
        self.0
            .get(&sig.keyid)
            .is_some_and(|k| sig.verifies(k, payload_type, body))
    }
}

/// What the configuration roots: which command signatures are required, and which keys
/// speak for the API gateway. The same on every replica (MPR2 §8.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustRoots {
    /// Commands without a signature are refused with UNAUTHENTICATED, and receipts
    /// without one with GATE_RECEIPT_UNVERIFIED. Off only in the `unsigned-dev` mode.
    pub require_signatures: bool,
    /// Keys of the API gateway, which signs for the token's actor.
    pub gateway: KeySet,
    /// Registry keys: the only keys that may sign for the system actor `mpr-autopilot`
    /// (the OBSERVE commands the registry's signal intake forwards).
    pub registry: KeySet,
}

impl TrustRoots {
    /// A fingerprint of these roots, the same on every replica configured alike and
    /// different when any root differs (MPR2-ROOT-05): `sha256:` and the lowercase hex
    /// SHA-256 of the lines `mpr-trust-roots/v1`, `signatures required` (or `optional`),
    /// then `registry ID` and `gateway ID` for each key id in ascending order, each line
    /// ending in `\n`. `/readyz` and the start-up log report it, so operators can compare
    /// replicas.
    pub fn fingerprint(&self) -> String {
        let mut text = String::from("mpr-trust-roots/v1\n");
        text.push_str(if self.require_signatures {
            "signatures required\n"
        } else {
            "signatures optional\n"
        });
        for (role, set) in [("registry", &self.registry), ("gateway", &self.gateway)] {
            for id in set.ids() {
                text.push_str(role);
                text.push(' ');
                text.push_str(id);
                text.push('\n');
            }
        }
        format!("sha256:{}", sha256_hex(text.as_bytes()))
    }
}

/// Who a registered key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KeyOwnerKind {
    /// A principal (an actor that signs commands).
    Principal,
    /// A gate (an evaluation suite that signs receipts).
    Gate,
}

impl KeyOwnerKind {
    /// Stable wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyOwnerKind::Principal => "PRINCIPAL",
            KeyOwnerKind::Gate => "GATE",
        }
    }
}

/// A key as the catalog log records it (KEY_REGISTERED, KEY_REVOKED).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Its id.
    pub key_id: String,
    /// PRINCIPAL or GATE.
    pub owner_kind: KeyOwnerKind,
    /// The actor or the gate name.
    pub owner: String,
    /// The public key, 64 hex characters.
    pub public_key: String,
    /// Catalog seq of the event that registered it.
    pub registered_seq: u64,
    /// Catalog seq of the event that revoked it; revocation is final.
    pub revoked_seq: Option<u64>,
}

/// The keys the catalog log has registered, with their parsed public keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustRegistry {
    keys: BTreeMap<String, (KeyRecord, VerifyingKey)>,
}

impl TrustRegistry {
    /// One key's record.
    pub fn get(&self, keyid: &str) -> Option<&KeyRecord> {
        self.keys.get(keyid).map(|(r, _)| r)
    }

    /// Every key, by id.
    pub fn records(&self) -> impl Iterator<Item = &KeyRecord> {
        self.keys.values().map(|(r, _)| r)
    }

    /// Replays a KEY_REGISTERED or KEY_REVOKED record (the event's `key`): the record
    /// replaces what is held under its id.
    pub fn apply(&mut self, rec: &KeyRecord) {
        if let Ok(k) = parse_public_key(&rec.public_key) {
            self.keys.insert(rec.key_id.clone(), (rec.clone(), k));
        }
    }

    /// The live (registered, not revoked) key `keyid` of `kind`, or why not.
    fn live(&self, keyid: &str, kind: KeyOwnerKind) -> Result<(&KeyRecord, &VerifyingKey), String> {
        let Some((rec, key)) = self.keys.get(keyid) else {
            return Err(format!("key {keyid} is not registered"));
        };
        if let Some(seq) = rec.revoked_seq {
            return Err(format!(
                "key {keyid} of {} {} was revoked at catalog seq {seq}",
                rec.owner_kind.as_str().to_lowercase(),
                rec.owner
            ));
        }
        if rec.owner_kind != kind {
            return Err(format!(
                "key {keyid} belongs to {} {}, not to a {}",
                rec.owner_kind.as_str().to_lowercase(),
                rec.owner,
                kind.as_str().to_lowercase()
            ));
        }
        Ok((rec, key))
    }
}

/// A command's credential as it arrived: its detached signature and the bytes it must
/// cover, or nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Credential {
    /// No `mpr-signature` header.
    #[default]
    Unsigned,
    /// A signature header that could not be read.
    Malformed(String),
    /// A signature and the canonical bytes ([`COMMAND_AVRO_TYPE`] or [`COMMAND_JSON_TYPE`]).
    Signed {
        /// The signature object.
        signature: Signature,
        /// The DSSE payload type.
        payload_type: &'static str,
        /// The canonical bytes.
        body: Vec<u8>,
    },
}

impl Credential {
    /// The key id presented, if any (recorded in the event, even when refused).
    pub fn key_id(&self) -> Option<&str> {
        match self {
            Credential::Signed { signature, .. } => Some(&signature.keyid),
            _ => None,
        }
    }
}

/// Who signed a command, once verified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authenticated {
    /// The verified key id; `None` for an unsigned command in `unsigned-dev` mode.
    pub key_id: Option<String>,
    /// [`VIA_GATEWAY`] when the API gateway signed for the actor.
    pub via: Option<String>,
}

fn unauthenticated(message: String) -> Rejection {
    Rejection::new(ErrorCode::Unauthenticated, message)
}

/// Verifies that `credential` speaks for `actor`: a signature by a live key of that
/// principal, or by the API gateway (which signs only for the actor its token names).
/// A missing, unknown, revoked, foreign or wrong signature is UNAUTHENTICATED.
pub fn authenticate(
    roots: &TrustRoots,
    registry: &TrustRegistry,
    actor: &Actor,
    credential: &Credential,
) -> Result<Authenticated, Rejection> {
    let (signature, payload_type, body) = match credential {
        Credential::Unsigned if roots.require_signatures => {
            return Err(unauthenticated(format!(
                "the command carries no {SIGNATURE_HEADER} header; every command must be signed by a key registered for its actor"
            )));
        }
        Credential::Unsigned => return Ok(Authenticated::default()),
        Credential::Malformed(why) => {
            return Err(unauthenticated(format!(
                "the {SIGNATURE_HEADER} header is not a signature object: {why}"
            )));
        }
        Credential::Signed {
            signature,
            payload_type,
            body,
        } => (signature, *payload_type, body),
    };
    let system = actor.as_str() == crate::domain::autopilot::AUTOPILOT_ACTOR;
    if system || roots.registry.contains(&signature.keyid) {
        if !system || !roots.registry.verifies(signature, payload_type, body) {
            return Err(unauthenticated(format!(
                "only a registry key signs for {}, and only for it (key {})",
                crate::domain::autopilot::AUTOPILOT_ACTOR,
                signature.keyid
            )));
        }
        return Ok(Authenticated {
            key_id: Some(signature.keyid.clone()),
            via: None,
        });
    }
    if roots.gateway.contains(&signature.keyid) {
        if !roots.gateway.verifies(signature, payload_type, body) {
            return Err(unauthenticated(format!(
                "the signature by gateway key {} does not verify",
                signature.keyid
            )));
        }
        return Ok(Authenticated {
            key_id: Some(signature.keyid.clone()),
            via: Some(VIA_GATEWAY.to_owned()),
        });
    }
    let (rec, key) = registry
        .live(&signature.keyid, KeyOwnerKind::Principal)
        .map_err(unauthenticated)?;
    if !signature.verifies(key, payload_type, body) {
        return Err(unauthenticated(format!(
            "the signature by key {} does not verify over the command",
            signature.keyid
        )));
    }
    if rec.owner != actor.as_str() {
        return Err(unauthenticated(format!(
            "the command names actor {actor} but is signed by key {} of principal {}",
            signature.keyid, rec.owner
        )));
    }
    Ok(Authenticated {
        key_id: Some(signature.keyid.clone()),
        via: None,
    })
}

/// The in-toto Statement v1 a gate receipt stands for: its subject is the bundle
/// (`bundle_id@bundle_version` with its SHA-256 digest), its predicate the gate's verdict.
pub fn receipt_statement(r: &GateReceipt) -> serde_json::Value {
    json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{
            "name": format!("{}@{}", r.bundle_id, r.bundle_version),
            "digest": {"sha256": r.bundle_digest},
        }],
        "predicateType": RECEIPT_PREDICATE,
        "predicate": {
            "receipt_id": r.receipt_id,
            "gate_name": r.gate_name,
            "verdict": r.verdict,
            "evaluated_at_utc": r.evaluated_at_utc,
            "evidence_refs": r.evidence_refs,
        },
    })
}

/// The bytes a gate signs: the JCS form of [`receipt_statement`].
pub fn receipt_body(r: &GateReceipt) -> Vec<u8> {
    canonical_json(&receipt_statement(r))
}

/// Verifies that a live key registered for the receipt's gate signed it; the key id, or
/// GATE_RECEIPT_UNVERIFIED naming what is wrong. An unsigned receipt passes only when
/// signatures are not required (`unsigned-dev`).
pub fn verify_receipt(
    roots: &TrustRoots,
    registry: &TrustRegistry,
    r: &GateReceipt,
) -> Result<Option<String>, Rejection> {
    let bad = |why: String| {
        Rejection::new(
            ErrorCode::GateReceiptUnverified,
            format!("gate receipt {} is not verified: {why}", r.receipt_id),
        )
    };
    let Some(sig) = &r.signature else {
        if roots.require_signatures {
            return Err(bad(format!(
                "it carries no signature; a receipt must be signed by a key registered for gate {}",
                r.gate_name
            )));
        }
        return Ok(None);
    };
    let (rec, key) = registry.live(&sig.keyid, KeyOwnerKind::Gate).map_err(bad)?;
    if rec.owner != r.gate_name {
        return Err(bad(format!(
            "it names gate {} but is signed by key {} of gate {}",
            r.gate_name, sig.keyid, rec.owner
        )));
    }
    if !sig.verifies(key, RECEIPT_TYPE, &receipt_body(r)) {
        return Err(bad(format!(
            "the signature by key {} does not verify over its in-toto Statement",
            sig.keyid
        )));
    }
    Ok(Some(sig.keyid.clone()))
}

/// The MAC of `state` records: HMAC-SHA256 under a key derived from the registry key
/// ([`STATE_MAC_LABEL`]). `state` is a changelog only registry replicas read, and they hold
/// the registry key, so a MAC authenticates its records at a fraction of a signature's cost
/// (a command writes about five); the public audit log, `events`, is what is signed.
#[derive(Clone)]
pub struct StateMac([u8; 32]);

impl fmt::Debug for StateMac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StateMac(..)")
    }
}

impl StateMac {
    /// The MAC key of the registry key `registry`.
    pub fn of(registry: &Signer) -> Self {
        Self(registry.derive_key(STATE_MAC_LABEL))
    }

    fn mac(&self, key: &[u8], value: &[u8]) -> hmac::Hmac<sha2::Sha256> {
        use hmac::{Mac, digest::KeyInit};
        let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC takes any key length");
        m.update(&(key.len() as u32).to_be_bytes());
        m.update(key);
        m.update(value);
        m
    }

    /// The tag of a record: over the 4-byte big-endian key length, the key and the value.
    pub fn tag(&self, key: &[u8], value: &[u8]) -> [u8; STATE_TAG_LEN] {
        use hmac::Mac;
        self.mac(key, value).finalize().into_bytes().into()
    }

    /// Whether `tag` is this key's tag of `key` and `value` (constant-time comparison).
    pub fn verifies(&self, key: &[u8], value: &[u8], tag: &[u8]) -> bool {
        use hmac::Mac;
        self.mac(key, value).verify_slice(tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::Actor;

    fn signer(n: u8) -> Signer {
        Signer::from_seed([n; 32])
    }

    fn registry_with(keys: &[(KeyOwnerKind, &str, &Signer, Option<u64>)]) -> TrustRegistry {
        let mut r = TrustRegistry::default();
        for (i, (kind, owner, s, revoked)) in keys.iter().enumerate() {
            r.apply(&KeyRecord {
                key_id: s.key_id().to_owned(),
                owner_kind: *kind,
                owner: (*owner).to_owned(),
                public_key: s.public_hex(),
                registered_seq: i as u64 + 1,
                revoked_seq: *revoked,
            });
        }
        r
    }

    fn signed(s: &Signer, body: &[u8]) -> Credential {
        Credential::Signed {
            signature: s.sign(COMMAND_AVRO_TYPE, body),
            payload_type: COMMAND_AVRO_TYPE,
            body: body.to_vec(),
        }
    }

    /// Replicas configured alike agree; a different key, an extra key, a key moved
    /// between roles, or the mode each change the fingerprint.
    #[test]
    fn trust_roots_fingerprint_names_the_configuration() {
        let roots = |mode: bool, reg: &[u8], gw: &[u8]| TrustRoots {
            require_signatures: mode,
            registry: KeySet::of(reg.iter().map(|n| signer(*n).verifying_key())),
            gateway: KeySet::of(gw.iter().map(|n| signer(*n).verifying_key())),
        };
        let base = roots(true, &[1, 2], &[3]).fingerprint();
        assert_eq!(
            base,
            roots(true, &[2, 1], &[3]).fingerprint(),
            "order is not part of it"
        );
        assert!(base.starts_with("sha256:") && base.len() == 7 + 64);
        for other in [
            roots(false, &[1, 2], &[3]),
            roots(true, &[1], &[3]),
            roots(true, &[1, 2, 4], &[3]),
            roots(true, &[1, 3], &[2]),
            roots(true, &[1, 2], &[4]),
        ] {
            assert_ne!(base, other.fingerprint(), "{other:?}");
        }
    }

    /// DSSE's own test vector shape: lengths in ASCII decimal, single spaces.
    #[test]
    fn pae_matches_the_dsse_definition() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn pem_round_trips_and_ids_are_the_public_key_hash() {
        let s = signer(3);
        let back = Signer::from_pem(&s.to_pem()).unwrap();
        assert_eq!(back.key_id(), s.key_id());
        assert_eq!(
            s.key_id(),
            sha256_hex(&hex::decode(s.public_hex()).unwrap())
        );
    }

    /// Every refusal of MPR2 §8.2, and the two ways to pass.
    #[test]
    fn authentication_refuses_each_bad_credential() {
        let alice = signer(1);
        let mallory = signer(2);
        let gate = signer(3);
        let gateway = signer(4);
        let revoked = signer(5);
        let reg = registry_with(&[
            (KeyOwnerKind::Principal, "alice", &alice, None),
            (KeyOwnerKind::Principal, "mallory", &mallory, None),
            (KeyOwnerKind::Gate, "eval", &gate, None),
            (KeyOwnerKind::Principal, "alice", &revoked, Some(9)),
        ]);
        let roots = TrustRoots {
            require_signatures: true,
            gateway: KeySet::of([gateway.verifying_key()]),
            registry: KeySet::default(),
        };
        let a: Actor = "alice".parse().unwrap();
        let body = b"command bytes";
        let ok = authenticate(&roots, &reg, &a, &signed(&alice, body)).unwrap();
        assert_eq!(ok.key_id.as_deref(), Some(alice.key_id()));
        assert_eq!(ok.via, None);
        let via = authenticate(&roots, &reg, &a, &signed(&gateway, body)).unwrap();
        assert_eq!(via.via.as_deref(), Some(VIA_GATEWAY));

        let refused = |c: &Credential, needle: &str| {
            let r = authenticate(&roots, &reg, &a, c).unwrap_err();
            assert_eq!(r.code, ErrorCode::Unauthenticated);
            assert!(r.message.contains(needle), "{needle}: {}", r.message);
        };
        refused(&Credential::Unsigned, "no mpr-signature");
        refused(&Credential::Malformed("x".into()), "not a signature");
        refused(&signed(&mallory, body), "principal mallory");
        refused(&signed(&gate, body), "gate eval");
        refused(&signed(&revoked, body), "revoked at catalog seq 9");
        refused(&signed(&signer(6), body), "not registered");
        let Credential::Signed { signature, .. } = signed(&alice, b"other bytes") else {
            unreachable!()
        };
        refused(
            &Credential::Signed {
                signature,
                payload_type: COMMAND_AVRO_TYPE,
                body: body.to_vec(),
            },
            "does not verify",
        );
        // The dev mode lets unsigned commands through, never wrong ones.
        let dev = TrustRoots {
            require_signatures: false,
            ..roots.clone()
        };
        assert!(authenticate(&dev, &reg, &a, &Credential::Unsigned).is_ok());
        assert!(authenticate(&dev, &reg, &a, &signed(&mallory, body)).is_err());
    }

    #[test]
    fn a_signature_covers_the_payload_type() {
        let s = signer(1);
        let sig = s.sign(COMMAND_AVRO_TYPE, b"x");
        assert!(sig.verifies(&s.verifying_key(), COMMAND_AVRO_TYPE, b"x"));
        assert!(!sig.verifies(&s.verifying_key(), COMMAND_JSON_TYPE, b"x"));
        let mac = StateMac::of(&s);
        let tag = mac.tag(b"k", b"y");
        assert!(mac.verifies(b"k", b"y", &tag));
        assert!(!mac.verifies(b"k", b"z", &tag));
        assert!(!mac.verifies(b"kk", b"y", &tag));
        assert!(!StateMac::of(&signer(2)).verifies(b"k", b"y", &tag));
    }
}
