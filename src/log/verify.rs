//! The check every reader of a log the registry writes (`events`, `catalog`) makes before
//! trusting a record: it decodes, its hash matches its content, and one of the registry's
//! keys signed that hash. A record that fails is never applied and never fatal: the
//! reader skips it, as it skips a losing writer's fork, logs it and counts it. So a
//! forged or garbage record appended by anyone who can produce to the topic reaches
//! neither the processor's state nor the view, and cannot stop a partition.

use tracing::error;

use super::reader::Record;
use crate::codec;
use crate::domain::RegistryEvent;
use crate::domain::event::Forgery;
use crate::domain::trust::{EVENT_TYPE, KeySet, pae};

/// A record that is not the registry's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untrusted {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Why.
    pub reason: String,
}

/// Whether `bytes` are an event the registry signed: the event, or why not.
pub fn check_event(keys: &KeySet, bytes: &[u8]) -> Result<RegistryEvent, String> {
    let e = codec::decode_event(bytes).map_err(|e| e.to_string())?;
    e.authenticate(keys).map_err(|f| f.to_string())?;
    Ok(e)
}

/// The events of `records`, each the registry's or why not (logged, as
/// [`trusted_event`]), with every signature checked in one Ed25519 batch verification:
/// about half the cost per signature of checking each alone. When the batch fails, each
/// signature is checked alone to find the ones at fault. The batch's nonces derive from its
/// inputs, and only a holder of a registry key can make a signature either check accepts,
/// so every reader accepts exactly the registry's events.
pub fn trusted_events(keys: &KeySet, records: &[Record]) -> Vec<Result<RegistryEvent, Untrusted>> {
    // Decode and check each hash; gather what the batch must verify.
    let mut out: Vec<Result<RegistryEvent, Untrusted>> = Vec::with_capacity(records.len());
    let mut batch: Vec<(
        usize,
        Vec<u8>,
        ed25519_dalek::Signature,
        ed25519_dalek::VerifyingKey,
    )> = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        let checked = codec::decode_event(r.payload.as_deref().unwrap_or_default())
            .map_err(|e| e.to_string())
            .and_then(|e| {
                if e.hash != e.compute_hash() {
                    return Err(Forgery::HashMismatch.to_string());
                }
                let s = e.signature.as_ref().ok_or(Forgery::Unsigned.to_string())?;
                let bad = || Forgery::BadSignature(s.keyid.clone()).to_string();
                let key = keys.get(&s.keyid).ok_or_else(bad)?;
                let sig = s.bytes().ok_or_else(bad)?;
                Ok((pae(EVENT_TYPE, e.hash.as_bytes()), sig, *key, e))
            });
        match checked {
            Ok((msg, sig, key, e)) => {
                batch.push((i, msg, sig, key));
                out.push(Ok(e));
            }
            Err(reason) => out.push(Err(untrusted(r, reason))),
        }
    }
    let messages: Vec<&[u8]> = batch.iter().map(|(_, m, _, _)| m.as_slice()).collect();
    let signatures: Vec<_> = batch.iter().map(|(_, _, s, _)| *s).collect();
    let verifying: Vec<_> = batch.iter().map(|(_, _, _, k)| *k).collect();
    if ed25519_dalek::verify_batch(&messages, &signatures, &verifying).is_err() {
        for (i, msg, sig, key) in &batch {
            if key.verify_strict(msg, sig).is_err() {
                let keyid = out[*i]
                    .as_ref()
                    .ok()
                    .and_then(|e| e.signature.as_ref())
                    .map(|s| s.keyid.clone())
                    .unwrap_or_default();
                out[*i] = Err(untrusted(
                    &records[*i],
                    Forgery::BadSignature(keyid).to_string(),
                ));
            }
        }
    }
    out
}

/// The event in `r` if the registry signed it; otherwise logs why and returns the report.
pub fn trusted_event(keys: &KeySet, r: &Record) -> Result<RegistryEvent, Untrusted> {
    check_event(keys, r.payload.as_deref().unwrap_or_default()).map_err(|why| untrusted(r, why))
}

/// The report of an untrusted record, logged.
fn untrusted(r: &Record, reason: String) -> Untrusted {
    let u = Untrusted {
        topic: r.topic.clone(),
        partition: r.partition,
        offset: r.offset,
        reason,
    };
    error!(
        topic = %u.topic,
        partition = u.partition,
        offset = u.offset,
        reason = %u.reason,
        "skipping a record the registry did not sign (forged or corrupt)"
    );
    u
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Decision;
    use crate::domain::trust::Signer;
    use crate::testkit;

    fn record(payload: Vec<u8>) -> Record {
        Record {
            topic: "mpr.events".into(),
            partition: 0,
            offset: 7,
            key: None,
            payload: Some(payload),
            timestamp_ms: None,
            headers: Vec::new(),
        }
    }

    /// A signed event passes; the same event re-hashed after a change, signed by another
    /// key, unsigned, or garbage does not.
    #[test]
    fn only_events_the_registry_signed_are_trusted() {
        let registry = Signer::from_seed([1; 32]);
        let keys = KeySet::of([registry.verifying_key()]);
        let state = crate::domain::PartitionState::new(0);
        let input = testkit::input(testkit::publish("mf", "fam", "1.0.0"), 0);
        let Decision::Append(mut e) =
            state.decide(&Default::default(), &Default::default(), &input)
        else {
            panic!("a publish appends")
        };
        e.sign(&registry);
        assert!(trusted_event(&keys, &record(codec::encode_event(&e))).is_ok());

        let mut forged = e.clone();
        forged.reason = Some("forged".into());
        forged.hash = forged.compute_hash();
        let u = trusted_event(&keys, &record(codec::encode_event(&forged))).unwrap_err();
        assert!(u.reason.contains("signature"), "{}", u.reason);
        assert_eq!(u.offset, 7);

        forged.sign(&Signer::from_seed([2; 32]));
        assert!(trusted_event(&keys, &record(codec::encode_event(&forged))).is_err());
        let mut unsigned = e.clone();
        unsigned.signature = None;
        let u = trusted_event(&keys, &record(codec::encode_event(&unsigned))).unwrap_err();
        assert!(u.reason.contains("unsigned"), "{}", u.reason);
        let mut tampered = e.clone();
        tampered.reason = Some("changed after signing".into());
        let u = trusted_event(&keys, &record(codec::encode_event(&tampered))).unwrap_err();
        assert!(u.reason.contains("hash"), "{}", u.reason);
        assert!(trusted_event(&keys, &record(b"garbage".to_vec())).is_err());
    }

    /// A batch with forged records among signed ones: each record gets the verdict it
    /// gets alone, in place.
    #[test]
    fn a_batch_check_finds_each_forgery_in_place() {
        let registry = Signer::from_seed([1; 32]);
        let keys = KeySet::of([registry.verifying_key()]);
        let mut state = crate::domain::PartitionState::new(0);
        let mut records = Vec::new();
        for i in 0..6 {
            let input = testkit::input(testkit::publish("mf", "fam", &format!("1.0.{i}")), i);
            let Decision::Append(mut e) =
                state.decide(&Default::default(), &Default::default(), &input)
            else {
                panic!("a publish appends")
            };
            state.apply(&e).unwrap();
            match i {
                // Signed by another key.
                2 => e.sign(&Signer::from_seed([2; 32])),
                // Changed after signing.
                4 => {
                    e.sign(&registry);
                    e.reason = Some("changed".into());
                    e.hash = e.compute_hash();
                }
                _ => e.sign(&registry),
            }
            records.push(record(codec::encode_event(&e)));
        }
        records.push(record(b"garbage".to_vec()));
        let verdicts: Vec<bool> = trusted_events(&keys, &records)
            .iter()
            .map(Result::is_ok)
            .collect();
        assert_eq!(verdicts, [true, true, false, true, false, true, false]);
        let alone: Vec<bool> = records
            .iter()
            .map(|r| trusted_event(&keys, r).is_ok())
            .collect();
        assert_eq!(verdicts, alone);
        // An all-good batch passes in one check.
        let good = [records[0].clone(), records[1].clone(), records[3].clone()];
        assert!(trusted_events(&keys, &good).iter().all(Result::is_ok));
    }
}
