//! The platform catalog: per environment, the feature-group versions and schema versions
//! the platform serves, and the compatibility posture promotions there are checked with.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::bundle::{Compatibility, FeatureGroupRef, check_list, check_str};
use super::error::{ErrorCode, Rejection};
use super::ids::Environment;

/// How a promotion treats missing requirements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Posture {
    /// Refuse with INCOMPATIBLE (the default).
    #[default]
    FailClosed,
    /// Accept and record the gaps as warnings in the event.
    Warn,
}

/// What one environment offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    /// The environment.
    pub environment: Environment,
    /// Feature groups available there, each at the listed versions.
    pub feature_groups: Vec<FeatureGroupRef>,
    /// Schema versions available there.
    pub schema_versions: Vec<String>,
    /// fail_closed or warn.
    #[serde(default)]
    pub posture: Posture,
    /// Gates whose verified PASS receipt a bundle needs before it is promoted here.
    #[serde(default)]
    pub required_gates: Vec<String>,
}

impl CatalogEntry {
    /// Checks string bounds.
    pub fn validate(&self) -> Result<(), Rejection> {
        check_list("feature_groups", self.feature_groups.len())?;
        check_list("schema_versions", self.schema_versions.len())?;
        for fg in &self.feature_groups {
            check_str("feature_groups[].name", &fg.name)?;
            check_str("feature_groups[].version", &fg.version)?;
        }
        for s in &self.schema_versions {
            check_str("schema_versions[]", s)?;
        }
        check_list("required_gates", self.required_gates.len())?;
        for g in &self.required_gates {
            check_str("required_gates[]", g)?;
        }
        Ok(())
    }
}

/// The catalog as of some catalog sequence number.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    /// Sequence number of the last catalog event applied; 0 when empty.
    pub version: u64,
    /// Entries by environment.
    pub entries: BTreeMap<Environment, CatalogEntry>,
    /// The principal and gate keys the catalog log has registered.
    #[serde(skip)]
    pub trust: super::trust::TrustRegistry,
}

/// Outcome of a compatibility check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompatReport {
    /// Posture applied.
    pub posture: Posture,
    /// Human lines naming each missing requirement, sorted.
    pub missing: Vec<String>,
}

impl Catalog {
    /// Checks `needs` against what `env` offers. Missing items are listed, sorted.
    pub fn check(&self, env: &Environment, needs: &Compatibility) -> CompatReport {
        let entry = self.entries.get(env);
        let offered: BTreeSet<(&str, &str)> = entry
            .map(|e| {
                e.feature_groups
                    .iter()
                    .map(|f| (f.name.as_str(), f.version.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        let schemas: BTreeSet<&str> = entry
            .map(|e| e.schema_versions.iter().map(String::as_str).collect())
            .unwrap_or_default();
        let mut missing: Vec<String> = needs
            .feature_groups
            .iter()
            .filter(|f| !offered.contains(&(f.name.as_str(), f.version.as_str())))
            .map(|f| format!("feature_group {}@{}", f.name, f.version))
            .chain(
                needs
                    .schema_versions
                    .iter()
                    .filter(|s| !schemas.contains(s.as_str()))
                    .map(|s| format!("schema_version {s}")),
            )
            .collect();
        missing.sort();
        missing.dedup();
        CompatReport {
            posture: entry.map(|e| e.posture).unwrap_or_default(),
            missing,
        }
    }
}

impl CompatReport {
    /// Fail-closed with gaps: the INCOMPATIBLE rejection listing them.
    pub fn into_result(self, env: &Environment) -> Result<Vec<String>, Rejection> {
        if self.missing.is_empty() {
            return Ok(Vec::new());
        }
        match self.posture {
            Posture::Warn => Ok(self.missing),
            Posture::FailClosed => Err(Rejection::new(
                ErrorCode::Incompatible,
                format!(
                    "environment {env} lacks what the bundle requires: {}",
                    self.missing.join(", ")
                ),
            )),
        }
    }
}
