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
use crate::domain::trust::KeySet;

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

/// The event in `r` if the registry signed it; otherwise logs why and returns the report.
pub fn trusted_event(keys: &KeySet, r: &Record) -> Result<RegistryEvent, Untrusted> {
    check_event(keys, r.payload.as_deref().unwrap_or_default()).map_err(|reason| {
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
    })
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
}
