//! Signed checkpoints: the registry's signed statement "log partition X had N events and
//! its head hash was H", so that an auditor can pin the log's state at a time and later
//! prove that the log still holds exactly that prefix. The format is C2SP's
//! `tlog-checkpoint` inside a C2SP `signed-note`, as Certificate Transparency and Sigstore's
//! Rekor publish them (MPR3-AUD-12):
//!
//! ```text
//! mpr/mpr.events/0                       <- origin: log topic and partition
//! 1042                                   <- size: the head's seq
//! 3q2+7w==...                            <- base64 of the head's 32-byte hash
//!
//! — mpr-registry AbCd...                 <- key name, base64(4-byte key hash || signature)
//! ```
//!
//! The "root hash" is the head of MPR's hash chain, not a Merkle root: a later checkpoint
//! is consistent with an earlier one when the chain from the earlier head leads to the
//! later one, which `verify-audit` checks by reading the log. Pure: no I/O.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};

use super::event::{Audit, FindingKind, RegistryEvent};
use super::trust::{KeySet, Signer};

/// The key name the registry signs checkpoints under.
pub const KEY_NAME: &str = "mpr-registry";

/// What a checkpoint states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// `mpr/<topic>/<partition>`.
    pub origin: String,
    /// Seq of the head (the number of events on the chain).
    pub seq: u64,
    /// Hash of the head, lowercase hex.
    pub head_hash: String,
}

/// The origin line of a log partition.
pub fn origin(topic: &str, partition: i32) -> String {
    format!("mpr/{topic}/{partition}")
}

/// The signed-note key hash of an Ed25519 key: the first 4 bytes of
/// SHA-256(name || "\n" || 0x01 || public key).
fn key_hash(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n\x01");
    h.update(key.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

impl Checkpoint {
    /// The note text the signature covers.
    fn body(&self) -> Result<String, String> {
        let raw = hex::decode(&self.head_hash).map_err(|e| format!("head hash: {e}"))?;
        Ok(format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.seq,
            B64.encode(raw)
        ))
    }

    /// The signed note, signed by the registry key.
    pub fn sign(&self, registry: &Signer) -> Result<String, String> {
        let body = self.body()?;
        let mut blob = key_hash(KEY_NAME, &registry.verifying_key()).to_vec();
        blob.extend_from_slice(&registry.sign_plain(body.as_bytes()));
        Ok(format!(
            "{body}\n\u{2014} {KEY_NAME} {}\n",
            B64.encode(blob)
        ))
    }

    /// Reads a signed note and checks that one of the registry `keys` signed it.
    pub fn open(note: &str, keys: &KeySet) -> Result<Checkpoint, String> {
        let (body, sigs) = note
            .split_once("\n\n")
            .ok_or("not a signed note: no blank line before the signatures")?;
        let body = format!("{body}\n");
        let verified = sigs.lines().filter(|l| !l.is_empty()).any(|line| {
            let Some(rest) = line.strip_prefix("\u{2014} ") else {
                return false;
            };
            let Some((name, blob)) = rest.split_once(' ') else {
                return false;
            };
            let Ok(blob) = B64.decode(blob) else {
                return false;
            };
            if name != KEY_NAME || blob.len() != 4 + 64 {
                return false;
            }
            let sig = ed25519_dalek::Signature::from_bytes(
                blob[4..].try_into().expect("64 bytes checked above"),
            );
            keys.keys().any(|k| {
                key_hash(name, k) == blob[..4] && k.verify_strict(body.as_bytes(), &sig).is_ok()
            })
        });
        if !verified {
            return Err("no signature line by a registry key verifies".into());
        }
        let mut lines = body.lines();
        let (Some(origin), Some(seq), Some(hash), None) =
            (lines.next(), lines.next(), lines.next(), lines.next())
        else {
            return Err("a checkpoint has exactly three lines: origin, size, hash".into());
        };
        Ok(Checkpoint {
            origin: origin.to_owned(),
            seq: seq.parse().map_err(|e| format!("size: {e}"))?,
            head_hash: hex::encode(B64.decode(hash).map_err(|e| format!("hash: {e}"))?),
        })
    }

    /// Whether the audited log partition still holds this checkpoint's head on its signed
    /// chain: an event with this seq and hash that the audit did not set aside (as forged
    /// or a fork). `events` are the partition's decoded records, by offset.
    pub fn holds_in<'a>(
        &self,
        audit: &Audit,
        events: impl IntoIterator<Item = (i64, &'a RegistryEvent)>,
    ) -> Result<(), String> {
        if self.seq == 0 {
            return Ok(());
        }
        if self.seq > audit.head_seq {
            return Err(format!(
                "the log's head is seq {}, before the checkpoint's {}",
                audit.head_seq, self.seq
            ));
        }
        let off_chain: std::collections::BTreeSet<i64> = audit
            .findings
            .iter()
            .filter(|f| matches!(f.kind, FindingKind::Forged | FindingKind::Fork))
            .map(|f| f.offset)
            .collect();
        let on_chain = events.into_iter().any(|(offset, e)| {
            e.seq == self.seq && e.hash == self.head_hash && !off_chain.contains(&offset)
        });
        if on_chain {
            Ok(())
        } else {
            Err(format!(
                "seq {} on the log's chain does not have the checkpoint's hash {}: the log was rewritten",
                self.seq, self.head_hash
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp() -> Checkpoint {
        Checkpoint {
            origin: origin("mpr.events", 2),
            seq: 1042,
            head_hash: "ab".repeat(32),
        }
    }

    #[test]
    fn a_signed_note_opens_with_the_registry_key_only() {
        let registry = Signer::from_seed([1; 32]);
        let note = cp().sign(&registry).unwrap();
        assert!(note.starts_with("mpr/mpr.events/2\n1042\n"), "{note}");
        assert!(note.contains("\n\n\u{2014} mpr-registry "), "{note}");
        let keys = KeySet::of([registry.verifying_key()]);
        assert_eq!(Checkpoint::open(&note, &keys).unwrap(), cp());
        let other = KeySet::of([Signer::from_seed([2; 32]).verifying_key()]);
        assert!(Checkpoint::open(&note, &other).is_err());
        let tampered = note.replacen("1042", "1043", 1);
        assert!(Checkpoint::open(&tampered, &keys).is_err());
        assert!(Checkpoint::open("garbage", &keys).is_err());
    }
}
