//! The immutable bundle: artifacts by reference, compatibility needs, provenance, bounded
//! metadata, its content digest (SHA-256 of RFC 8785 canonical JSON) and the gate receipt
//! that must vouch for exactly that digest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::{ErrorCode, Rejection};
use super::ids::{BundleId, BundleVersion, Timestamp};

/// Intake limits. Exceeding one is INVALID_PAYLOAD, naming the limit.
pub mod limits {
    /// Artifacts per bundle.
    pub const MAX_ARTIFACTS: usize = 64;
    /// Metadata entries per bundle.
    pub const MAX_METADATA_ENTRIES: usize = 64;
    /// Bytes per metadata key.
    pub const MAX_METADATA_KEY: usize = 128;
    /// Bytes per metadata value.
    pub const MAX_METADATA_VALUE: usize = 1024;
    /// Bytes of any other free string (uri, refs, names, reasons).
    pub const MAX_STRING: usize = 2048;
    /// Feature groups, schema versions, dataset refs or evidence refs per list.
    pub const MAX_LIST: usize = 256;
    /// Largest `size_bytes`: 2^53-1, so every JSON implementation reproduces the digest.
    pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
    /// Bytes of one encoded command on the wire.
    pub const MAX_COMMAND_BYTES: usize = 256 * 1024;
}

/// MODEL or POLICY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BundleKind {
    /// A trained model.
    Model,
    /// A decision policy.
    Policy,
}

/// One artifact, held by reference with its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// Logical name inside the bundle, unique per bundle.
    pub name: String,
    /// Where the bytes live (s3://, gs://, https://, file://...).
    pub uri: String,
    /// Lowercase hex SHA-256 of the bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size_bytes: u64,
}

/// A required feature group at an exact version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureGroupRef {
    /// Feature group name.
    pub name: String,
    /// Required version.
    pub version: String,
}

/// What a bundle needs from the platform to run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compatibility {
    /// Feature groups the bundle reads, each at an exact version.
    pub feature_groups: Vec<FeatureGroupRef>,
    /// Input/output schema versions the bundle expects.
    pub schema_versions: Vec<String>,
}

/// Where the bundle came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// The training run that produced it.
    pub training_run_id: String,
    /// The evaluation report it was judged on.
    pub evaluation_report_ref: String,
    /// The dataset manifests it was trained and evaluated on.
    pub dataset_manifest_refs: Vec<String>,
}

/// The immutable content of one bundle version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelBundle {
    /// Family.
    pub bundle_id: BundleId,
    /// Version within the family.
    pub bundle_version: BundleVersion,
    /// MODEL or POLICY.
    pub kind: BundleKind,
    /// At least one artifact.
    pub artifacts: Vec<Artifact>,
    /// Lowercase hex SHA-256 of the runtime configuration.
    pub config_hash: String,
    /// What the bundle needs from the platform.
    pub compatibility: Compatibility,
    /// Where it came from.
    pub provenance: Provenance,
    /// Bounded free-form labels.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// PASS or FAIL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GateVerdict {
    /// The bundle passed its gates.
    Pass,
    /// The bundle failed its gates.
    Fail,
}

/// Evidence from the evaluation gate that a specific bundle digest passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateReceipt {
    /// Receipt identifier issued by the gate.
    pub receipt_id: String,
    /// Bundle family the receipt vouches for.
    pub bundle_id: BundleId,
    /// Version the receipt vouches for.
    pub bundle_version: BundleVersion,
    /// Digest the receipt vouches for.
    pub bundle_digest: String,
    /// PASS or FAIL.
    pub verdict: GateVerdict,
    /// Which gate (suite) issued it.
    pub gate_name: String,
    /// When the gate decided.
    pub evaluated_at_utc: Timestamp,
    /// Evaluation evidence.
    #[serde(default)]
    pub evidence_refs: Vec<String>,
    /// The gate's DSSE signature over the receipt's in-toto Statement (MPR2 §8.4).
    #[serde(default)]
    pub signature: Option<super::trust::Signature>,
}

/// Reference to a registered bundle, as resolve and events carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelBundleRef {
    /// Family.
    pub bundle_id: BundleId,
    /// Version.
    pub bundle_version: BundleVersion,
    /// Content digest.
    pub bundle_digest: String,
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// RFC 8785 (JCS) canonical JSON bytes of any serializable value.
pub fn canonical_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialization of our own types cannot fail: keys are strings, numbers are integers.
    serde_jcs::to_vec(value).expect("domain values serialize to JSON")
}

impl ModelBundle {
    /// `bundle_digest`: lowercase hex SHA-256 of the JCS canonical JSON of the bundle.
    pub fn digest(&self) -> String {
        sha256_hex(&canonical_json(self))
    }

    /// The reference to this bundle.
    pub fn to_ref(&self) -> ModelBundleRef {
        ModelBundleRef {
            bundle_id: self.bundle_id.clone(),
            bundle_version: self.bundle_version.clone(),
            bundle_digest: self.digest(),
        }
    }

    /// The reference to this bundle with an already computed digest.
    pub fn to_ref_with(&self, digest: &str) -> ModelBundleRef {
        ModelBundleRef {
            bundle_id: self.bundle_id.clone(),
            bundle_version: self.bundle_version.clone(),
            bundle_digest: digest.to_owned(),
        }
    }

    /// Checks the intake rules that the types cannot express: counts, sizes, digests.
    pub fn validate(&self) -> Result<(), Rejection> {
        let bad = |m: String| Err(Rejection::new(ErrorCode::InvalidPayload, m));
        if self.artifacts.is_empty() {
            return bad("bundle.artifacts must hold at least one artifact".into());
        }
        if self.artifacts.len() > limits::MAX_ARTIFACTS {
            return bad(format!(
                "bundle.artifacts holds {} artifacts; the limit is {}",
                self.artifacts.len(),
                limits::MAX_ARTIFACTS
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, a) in self.artifacts.iter().enumerate() {
            check_str(&format!("bundle.artifacts[{i}].name"), &a.name)?;
            check_str(&format!("bundle.artifacts[{i}].uri"), &a.uri)?;
            check_sha256(&format!("bundle.artifacts[{i}].sha256"), &a.sha256)?;
            if a.size_bytes > limits::MAX_SAFE_INTEGER {
                return bad(format!(
                    "bundle.artifacts[{i}].size_bytes {} exceeds 2^53-1, the largest integer every JSON reader keeps exactly",
                    a.size_bytes
                ));
            }
            if !names.insert(a.name.as_str()) {
                return bad(format!(
                    "bundle.artifacts[{i}].name {:?} is repeated",
                    a.name
                ));
            }
        }
        check_sha256("bundle.config_hash", &self.config_hash)?;
        check_list(
            "bundle.compatibility.feature_groups",
            self.compatibility.feature_groups.len(),
        )?;
        for (i, fg) in self.compatibility.feature_groups.iter().enumerate() {
            check_str(
                &format!("bundle.compatibility.feature_groups[{i}].name"),
                &fg.name,
            )?;
            check_str(
                &format!("bundle.compatibility.feature_groups[{i}].version"),
                &fg.version,
            )?;
        }
        check_list(
            "bundle.compatibility.schema_versions",
            self.compatibility.schema_versions.len(),
        )?;
        for (i, s) in self.compatibility.schema_versions.iter().enumerate() {
            check_str(&format!("bundle.compatibility.schema_versions[{i}]"), s)?;
        }
        let p = &self.provenance;
        check_str("bundle.provenance.training_run_id", &p.training_run_id)?;
        check_str(
            "bundle.provenance.evaluation_report_ref",
            &p.evaluation_report_ref,
        )?;
        check_list(
            "bundle.provenance.dataset_manifest_refs",
            p.dataset_manifest_refs.len(),
        )?;
        if p.dataset_manifest_refs.is_empty() {
            return bad(
                "bundle.provenance.dataset_manifest_refs must name at least one manifest".into(),
            );
        }
        for (i, r) in p.dataset_manifest_refs.iter().enumerate() {
            check_str(&format!("bundle.provenance.dataset_manifest_refs[{i}]"), r)?;
        }
        if self.metadata.len() > limits::MAX_METADATA_ENTRIES {
            return bad(format!(
                "bundle.metadata holds {} entries; the limit is {}",
                self.metadata.len(),
                limits::MAX_METADATA_ENTRIES
            ));
        }
        for (k, v) in &self.metadata {
            if k.is_empty() || k.len() > limits::MAX_METADATA_KEY {
                return bad(format!(
                    "bundle.metadata key {k:?} must be 1-{} bytes",
                    limits::MAX_METADATA_KEY
                ));
            }
            if v.len() > limits::MAX_METADATA_VALUE {
                return bad(format!(
                    "bundle.metadata[{k:?}] is {} bytes; the limit is {}",
                    v.len(),
                    limits::MAX_METADATA_VALUE
                ));
            }
        }
        Ok(())
    }
}

impl GateReceipt {
    /// Checks the receipt is PASS and vouches for exactly this bundle and digest.
    pub fn check_for(&self, bundle: &ModelBundle, digest: &str) -> Result<(), Rejection> {
        check_str("gate_receipt.receipt_id", &self.receipt_id)?;
        check_str("gate_receipt.gate_name", &self.gate_name)?;
        check_list("gate_receipt.evidence_refs", self.evidence_refs.len())?;
        for (i, r) in self.evidence_refs.iter().enumerate() {
            check_str(&format!("gate_receipt.evidence_refs[{i}]"), r)?;
        }
        if self.bundle_id != bundle.bundle_id
            || self.bundle_version != bundle.bundle_version
            || self.bundle_digest != digest
        {
            return Err(Rejection::new(
                ErrorCode::GateReceiptMismatch,
                format!(
                    "gate receipt {} vouches for {}@{} digest {}, not {}@{} digest {}",
                    self.receipt_id,
                    self.bundle_id,
                    self.bundle_version,
                    self.bundle_digest,
                    bundle.bundle_id,
                    bundle.bundle_version,
                    digest
                ),
            ));
        }
        if self.verdict != GateVerdict::Pass {
            return Err(Rejection::new(
                ErrorCode::GateNotPass,
                format!(
                    "gate receipt {} verdict is FAIL; only PASS bundles are accepted",
                    self.receipt_id
                ),
            ));
        }
        Ok(())
    }
}

/// Rejects empty or oversized free strings, naming the field.
pub fn check_str(field: &str, value: &str) -> Result<(), Rejection> {
    if value.is_empty() || value.len() > limits::MAX_STRING {
        return Err(Rejection::new(
            ErrorCode::InvalidPayload,
            format!(
                "{field} must be 1-{} bytes (got {})",
                limits::MAX_STRING,
                value.len()
            ),
        ));
    }
    Ok(())
}

pub fn check_list(field: &str, len: usize) -> Result<(), Rejection> {
    if len > limits::MAX_LIST {
        return Err(Rejection::new(
            ErrorCode::InvalidPayload,
            format!(
                "{field} holds {len} items; the limit is {}",
                limits::MAX_LIST
            ),
        ));
    }
    Ok(())
}

fn check_sha256(field: &str, value: &str) -> Result<(), Rejection> {
    let ok = value.len() == 64
        && value
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
    if ok {
        Ok(())
    } else {
        Err(Rejection::new(
            ErrorCode::InvalidPayload,
            format!("{field} must be 64 lowercase hex characters (SHA-256)"),
        ))
    }
}
