//! Autopilot: runtime signals, rollback policies and their deterministic evaluation
//! (MPR2 §9). Pure: a batch of signals, already authenticated, is folded into a scope's
//! kept windows and the scope's policy is evaluated against them; the outcome (the
//! windows as they now stand, what was ignored, and any action with its evidence) is
//! recorded in the event, so replaying `events` restores the same windows and the same
//! guard-rail counters without reading `signals` again. No wall clock: windows come from
//! the signals' own fields, and cooldowns and caps from the log time of the OBSERVE
//! command that carried the batch.
//!
//! Numbers are fixed point ([`Fixed`], millionths) so that every comparison is exact and
//! the same on every machine.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::{ErrorCode, Rejection};
use super::ids::{Actor, BundleId, BundleVersion, Environment, TenantId, Timestamp};

/// The system actor that records automated decisions.
pub const AUTOPILOT_ACTOR: &str = "mpr-autopilot";
/// Windows kept per (version, metric) series at most.
pub const MAX_WINDOWS: usize = 32;
/// Rules per policy at most.
pub const MAX_RULES: usize = 16;
/// Signal ids kept per window, per ignored/rejected list and per trigger.
pub const MAX_IDS: usize = 8;
/// Versions whose series a scope keeps: the bound ones and the one a rollback restores.
pub const MAX_SERIES_VERSIONS: usize = 3;

/// A decimal number held as millionths, so comparisons are exact. On the wire it is a
/// JSON number (an Avro double); parsing rounds to the nearest millionth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Fixed(pub i64);

impl Fixed {
    /// One, as a factor.
    pub const ONE: Fixed = Fixed(1_000_000);

    /// From a float, rounded to millionths; `None` when not finite or out of range.
    pub fn from_f64(x: f64) -> Option<Fixed> {
        let m = (x * 1_000_000.0).round();
        (x.is_finite() && m.abs() < 9.0e15).then_some(Fixed(m as i64))
    }

    /// As a float (for display and the wire).
    pub fn to_f64(self) -> f64 {
        self.0 as f64 / 1_000_000.0
    }
}

impl Serialize for Fixed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.to_f64())
    }
}

impl<'de> Deserialize<'de> for Fixed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let x = f64::deserialize(d)?;
        Fixed::from_f64(x).ok_or_else(|| serde::de::Error::custom("number out of range"))
    }
}

/// What a signal reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SignalKind {
    /// A metric aggregated over `[window_start, window_end)`: `value` is its mean there.
    Metric,
    /// An incident: `value` is its severity, 1 the most severe (SEV1).
    Incident,
}

/// A runtime observation, as it travels on `signals` (keyed by `bundle_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signal {
    /// Unique id, chosen by the source.
    pub signal_id: Uuid,
    /// The principal that sends it (needs the `observer` role).
    pub actor: Actor,
    /// The system it comes from (`prometheus`, `pagerduty`).
    pub source: String,
    /// Scope: environment.
    pub environment: Environment,
    /// Scope: tenant, `*` by default.
    #[serde(default = "TenantId::any")]
    pub tenant_id: TenantId,
    /// Scope: family (and the record key).
    pub bundle_id: BundleId,
    /// The version it concerns.
    pub bundle_version: BundleVersion,
    /// That version's digest.
    pub bundle_digest: String,
    /// METRIC or INCIDENT.
    pub kind: SignalKind,
    /// Metric name (`error_rate`) or incident title class.
    pub name: String,
    /// The metric's value over the window, or the incident's severity.
    pub value: Fixed,
    /// Start of the window the value covers.
    pub window_start_utc: Timestamp,
    /// End of that window (exclusive).
    pub window_end_utc: Timestamp,
    /// When the source observed it.
    pub observed_at_utc: Timestamp,
}

impl Signal {
    /// Field checks beyond the types.
    pub fn validate(&self) -> Result<(), Rejection> {
        super::bundle::check_str("source", &self.source)?;
        super::bundle::check_str("name", &self.name)?;
        super::bundle::check_str("bundle_digest", &self.bundle_digest)?;
        if self.window_end_utc <= self.window_start_utc {
            return Err(Rejection::new(
                ErrorCode::InvalidPayload,
                "window_end_utc must be after window_start_utc",
            ));
        }
        if self.kind == SignalKind::Incident && self.value < Fixed::ONE {
            return Err(Rejection::new(
                ErrorCode::InvalidPayload,
                "an incident's value is its severity, 1 (SEV1) or more",
            ));
        }
        Ok(())
    }
}

/// One rule of a rollback policy. On the wire it is one flat object: `rule_id`, `kind`,
/// and exactly the fields that kind takes (serde's `flatten` cannot refuse unknown
/// fields, so the shape goes through [`RuleWire`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RuleWire", into = "RuleWire")]
pub struct Rule {
    /// Name, unique in the policy; recorded when it fires.
    pub rule_id: String,
    /// What it checks.
    pub check: Check,
}

/// What a rule checks. "Worse" means higher: a metric where lower is worse is sent negated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The bound version's `metric` is above `above` in each of its last `windows` windows.
    Threshold {
        /// Metric name.
        metric: String,
        /// Threshold (exclusive).
        above: Fixed,
        /// Consecutive windows, 1 to 32.
        windows: u32,
    },
    /// The PRIMARY's `metric` in its latest window is above `factor` times the baseline:
    /// the mean of the windows kept for the version a rollback would restore.
    Baseline {
        /// Metric name.
        metric: String,
        /// Factor, above 1.
        factor: Fixed,
    },
    /// An incident of severity `max_severity` or more severe (1 is SEV1) about a bound
    /// version.
    Incident {
        /// Least severe level that fires (1 = SEV1 only).
        max_severity: u32,
    },
    /// The CANARY's `metric` is above `factor` times the PRIMARY's in each of the last
    /// `windows` windows both reported: the canary is aborted.
    CanaryWorse {
        /// Metric name.
        metric: String,
        /// Factor, 1 or more.
        factor: Fixed,
        /// Shared windows, 1 to 32.
        windows: u32,
    },
}

/// The kind of a rule, as `kind` names it on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RuleKind {
    /// [`Check::Threshold`].
    Threshold,
    /// [`Check::Baseline`].
    Baseline,
    /// [`Check::Incident`].
    Incident,
    /// [`Check::CanaryWorse`].
    CanaryWorse,
}

/// The wire form of a [`Rule`]: every field a kind may take, unknown fields refused.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleWire {
    rule_id: String,
    kind: RuleKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metric: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    above: Option<Fixed>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    windows: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    factor: Option<Fixed>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_severity: Option<u32>,
}

impl TryFrom<RuleWire> for Rule {
    type Error = String;

    fn try_from(w: RuleWire) -> Result<Self, String> {
        let kind = w.kind;
        let need = |name: &str| format!("a {} rule needs `{name}`", kind_name(kind));
        let extra = |present: bool, name: &str| {
            if present {
                Err(format!("a {} rule takes no `{name}`", kind_name(kind)))
            } else {
                Ok(())
            }
        };
        let check = match kind {
            RuleKind::Threshold => {
                extra(w.factor.is_some(), "factor")?;
                extra(w.max_severity.is_some(), "max_severity")?;
                Check::Threshold {
                    metric: w.metric.ok_or_else(|| need("metric"))?,
                    above: w.above.ok_or_else(|| need("above"))?,
                    windows: w.windows.ok_or_else(|| need("windows"))?,
                }
            }
            RuleKind::Baseline => {
                extra(w.above.is_some(), "above")?;
                extra(w.windows.is_some(), "windows")?;
                extra(w.max_severity.is_some(), "max_severity")?;
                Check::Baseline {
                    metric: w.metric.ok_or_else(|| need("metric"))?,
                    factor: w.factor.ok_or_else(|| need("factor"))?,
                }
            }
            RuleKind::Incident => {
                extra(w.metric.is_some(), "metric")?;
                extra(w.above.is_some(), "above")?;
                extra(w.windows.is_some(), "windows")?;
                extra(w.factor.is_some(), "factor")?;
                Check::Incident {
                    max_severity: w.max_severity.ok_or_else(|| need("max_severity"))?,
                }
            }
            RuleKind::CanaryWorse => {
                extra(w.above.is_some(), "above")?;
                extra(w.max_severity.is_some(), "max_severity")?;
                Check::CanaryWorse {
                    metric: w.metric.ok_or_else(|| need("metric"))?,
                    factor: w.factor.ok_or_else(|| need("factor"))?,
                    windows: w.windows.ok_or_else(|| need("windows"))?,
                }
            }
        };
        Ok(Rule {
            rule_id: w.rule_id,
            check,
        })
    }
}

fn kind_name(k: RuleKind) -> &'static str {
    match k {
        RuleKind::Threshold => "THRESHOLD",
        RuleKind::Baseline => "BASELINE",
        RuleKind::Incident => "INCIDENT",
        RuleKind::CanaryWorse => "CANARY_WORSE",
    }
}

impl From<Rule> for RuleWire {
    fn from(r: Rule) -> Self {
        let mut w = RuleWire {
            rule_id: r.rule_id,
            kind: RuleKind::Threshold,
            metric: None,
            above: None,
            windows: None,
            factor: None,
            max_severity: None,
        };
        match r.check {
            Check::Threshold {
                metric,
                above,
                windows,
            } => {
                w.metric = Some(metric);
                w.above = Some(above);
                w.windows = Some(windows);
            }
            Check::Baseline { metric, factor } => {
                w.kind = RuleKind::Baseline;
                w.metric = Some(metric);
                w.factor = Some(factor);
            }
            Check::Incident { max_severity } => {
                w.kind = RuleKind::Incident;
                w.max_severity = Some(max_severity);
            }
            Check::CanaryWorse {
                metric,
                factor,
                windows,
            } => {
                w.kind = RuleKind::CanaryWorse;
                w.metric = Some(metric);
                w.factor = Some(factor);
                w.windows = Some(windows);
            }
        }
        w
    }
}

/// A scope's rollback policy (SET_ROLLBACK_POLICY).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackPolicy {
    /// Rules, evaluated in order; the first that fires acts.
    pub rules: Vec<Rule>,
    /// No automated action within this many ms of the previous one (log time).
    #[serde(default)]
    pub cooldown_ms: u64,
    /// At most this many automated actions per `period_ms` (0: no cap).
    #[serde(default)]
    pub max_actions: u32,
    /// The period of the cap.
    #[serde(default)]
    pub period_ms: u64,
    /// Only record "would act".
    #[serde(default)]
    pub dry_run: bool,
}

impl RollbackPolicy {
    /// Field checks.
    pub fn validate(&self) -> Result<(), Rejection> {
        let bad = |m: String| Err(Rejection::new(ErrorCode::InvalidPayload, m));
        if self.rules.is_empty() || self.rules.len() > MAX_RULES {
            return bad(format!("a policy holds 1-{MAX_RULES} rules"));
        }
        if self.max_actions > 0 && self.period_ms == 0 {
            return bad("max_actions needs period_ms".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for r in &self.rules {
            super::bundle::check_str("rule_id", &r.rule_id)?;
            if !seen.insert(&r.rule_id) {
                return bad(format!("rule_id {} is repeated", r.rule_id));
            }
            match &r.check {
                Check::Threshold {
                    metric, windows, ..
                }
                | Check::CanaryWorse {
                    metric, windows, ..
                } => {
                    super::bundle::check_str("metric", metric)?;
                    if *windows == 0 || *windows as usize > MAX_WINDOWS {
                        return bad(format!(
                            "rule {}: windows must be 1-{MAX_WINDOWS}",
                            r.rule_id
                        ));
                    }
                }
                Check::Baseline { metric, factor } => {
                    super::bundle::check_str("metric", metric)?;
                    if *factor <= Fixed::ONE {
                        return bad(format!("rule {}: factor must be above 1", r.rule_id));
                    }
                }
                Check::Incident { max_severity } => {
                    if *max_severity == 0 {
                        return bad(format!("rule {}: max_severity is 1 or more", r.rule_id));
                    }
                }
            }
            if let Check::CanaryWorse { factor, .. } = &r.check
                && *factor < Fixed::ONE
            {
                return bad(format!("rule {}: factor must be 1 or more", r.rule_id));
            }
        }
        Ok(())
    }

    /// Windows a series must keep for these rules.
    fn windows_needed(&self) -> usize {
        self.rules
            .iter()
            .map(|r| match &r.check {
                Check::Threshold { windows, .. } | Check::CanaryWorse { windows, .. } => {
                    *windows as usize
                }
                Check::Baseline { .. } => 8,
                Check::Incident { .. } => 0,
            })
            .max()
            .unwrap_or(1)
            .clamp(1, MAX_WINDOWS)
    }

    fn metrics(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().filter_map(|r| match &r.check {
            Check::Threshold { metric, .. }
            | Check::Baseline { metric, .. }
            | Check::CanaryWorse { metric, .. } => Some(metric.as_str()),
            Check::Incident { .. } => None,
        })
    }
}

/// The aggregate of one window of one series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowAgg {
    /// Window start.
    pub window_start_utc: Timestamp,
    /// Window end.
    pub window_end_utc: Timestamp,
    /// Signals counted.
    pub count: u64,
    /// Sum of their values.
    pub sum: Fixed,
    /// Largest value.
    pub max: Fixed,
    /// The first signal ids counted (at most [`MAX_IDS`]).
    pub signal_ids: Vec<Uuid>,
}

impl WindowAgg {
    /// `mean > other * factor`, exactly (means compared without division).
    fn mean_above(&self, other_sum: i128, other_count: u64, factor: Fixed) -> bool {
        if self.count == 0 || other_count == 0 {
            return false;
        }
        // sum/count > (osum/ocount) * f/1e6  <=>  sum*ocount*1e6 > osum*count*f
        i128::from(self.sum.0) * i128::from(other_count) * 1_000_000
            > other_sum * i128::from(self.count) * i128::from(factor.0)
    }
}

/// One series: a metric of one version in one scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Series {
    /// The version.
    pub bundle_version: BundleVersion,
    /// The metric.
    pub metric: String,
    /// Its kept windows, oldest first.
    pub windows: Vec<WindowAgg>,
}

/// One automated action (or, in dry run, one that would have been taken).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    /// The policy's seq (the event that set it).
    pub policy_seq: u64,
    /// The rule that fired.
    pub rule_id: String,
    /// ROLLBACK (the PRIMARY) or CANARY_ABORT.
    pub action: AutoAction,
    /// The version it acts on.
    pub bundle_version: BundleVersion,
    /// What happened: ACTED, DRY_RUN, COOLDOWN, CAP or NOTHING_TO_ROLL_BACK.
    pub outcome: TriggerOutcome,
    /// The signals that made it fire (at most [`MAX_IDS`]).
    pub signal_ids: Vec<Uuid>,
    /// The windows it read, in words (`error_rate 0.31 > 0.05 in window ...`).
    pub evidence: String,
}

/// What an automated action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AutoAction {
    /// Roll the PRIMARY back.
    Rollback,
    /// Abort the CANARY.
    CanaryAbort,
}

/// How a fired rule ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TriggerOutcome {
    /// The action was taken.
    Acted,
    /// Dry run: recorded only.
    DryRun,
    /// Suppressed: within the cooldown.
    Cooldown,
    /// Suppressed: the cap per period is reached.
    Cap,
    /// The PRIMARY has no earlier usable activation.
    NothingToRollBack,
}

/// A scope's autopilot state, kept on its PRIMARY slot record and restored by replay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Autopilot {
    /// The policy, if one is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<RollbackPolicy>,
    /// Seq of the event that set it.
    #[serde(default)]
    pub policy_seq: u64,
    /// Kept windows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<Series>,
    /// Log times (ms) of the automated actions (and dry-run ones) inside the cap period.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions_ms: Vec<i64>,
    /// Versions an automated rollback took out of this scope, with that event's seq: each
    /// needs an approval after that seq before it may be promoted here again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub blocked: BTreeMap<BundleVersion, u64>,
    /// Highest `signals` offset counted (per partition of `signals`): repeats are skipped.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub signals_through: BTreeMap<i32, i64>,
}

/// What an event records of the autopilot and of a canary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutopilotDetail {
    /// The policy set (ROLLBACK_POLICY_SET; `None` there clears it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<RollbackPolicy>,
    /// What an OBSERVE counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observation: Option<Observation>,
    /// The rule that fired and what became of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
    /// The canary's share after the event, in basis points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_share_bp: Option<u32>,
}

/// `Option<AutopilotDetail>` as a JSON string on every wire (Avro and JSON alike), so the
/// Avro event schema carries it as `["null", "string"]`.
pub mod detail_json {
    use super::AutopilotDetail;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as a JSON string, or null.
    pub fn serialize<S: Serializer>(v: &Option<AutopilotDetail>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(d) => {
                s.serialize_some(&serde_json::to_string(d).map_err(serde::ser::Error::custom)?)
            }
        }
    }

    /// Reads a JSON string, or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<AutopilotDetail>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| serde_json::from_str(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// One signal as the OBSERVE command carries it, after authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Its `signals` partition.
    pub partition: i32,
    /// Its `signals` offset.
    pub offset: i64,
    /// The signal, or why it was refused.
    pub signal: Result<Signal, (Uuid, Rejection)>,
}

/// What one OBSERVE did, as its event records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// Signals counted into windows.
    pub counted: u64,
    /// The windows the batch touched, as they now stand (replay upserts them).
    pub windows: Vec<Series>,
    /// Incidents about a bound version: (signal id, version, severity).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incidents: Vec<Incident>,
    /// Signals about a version not bound in the scope, or a metric no rule reads.
    pub ignored: u64,
    /// The first of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_ids: Vec<Uuid>,
    /// Signals refused (unauthenticated, or the actor lacks `observer`).
    pub refused: u64,
    /// The first of them, with the code.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused_ids: Vec<Refused>,
    /// Signals already counted (a repeated forward).
    pub repeated: u64,
    /// Highest offset per `signals` partition after the batch.
    pub signals_through: BTreeMap<i32, i64>,
}

/// An incident that reached a bound version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// Signal id.
    pub signal_id: Uuid,
    /// Version.
    pub bundle_version: BundleVersion,
    /// Severity (1 = SEV1).
    pub severity: u32,
}

/// A refused signal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    /// Signal id (nil when it could not be read).
    pub signal_id: Uuid,
    /// Error code.
    pub code: ErrorCode,
}

/// The bound versions an observation is evaluated against.
#[derive(Debug, Clone, Copy)]
pub struct Bound<'a> {
    /// The PRIMARY's version.
    pub primary: Option<&'a BundleVersion>,
    /// The version a rollback of the PRIMARY would restore.
    pub previous: Option<&'a BundleVersion>,
    /// The CANARY's version.
    pub canary: Option<&'a BundleVersion>,
}

/// A rule that fired, before the guard rails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    /// The rule.
    pub rule_id: String,
    /// What it asks.
    pub action: AutoAction,
    /// On which version.
    pub bundle_version: BundleVersion,
    /// Evidence.
    pub signal_ids: Vec<Uuid>,
    /// In words.
    pub evidence: String,
}

impl Autopilot {
    /// Folds a batch into the kept windows and evaluates the policy. Returns what the
    /// event records and the rule that fired (before the guard rails), if any.
    pub fn observe(&self, bound: Bound<'_>, batch: &[Checked]) -> (Observation, Option<Fired>) {
        let mut obs = Observation {
            signals_through: self.signals_through.clone(),
            ..Observation::default()
        };
        let needed = self
            .policy
            .as_ref()
            .map_or(1, RollbackPolicy::windows_needed);
        let metrics: Vec<&str> = self
            .policy
            .as_ref()
            .map(|p| p.metrics().collect())
            .unwrap_or_default();
        let mut touched: BTreeMap<(BundleVersion, String), Series> = BTreeMap::new();
        for c in batch {
            let through = obs.signals_through.get(&c.partition).copied();
            if through.is_some_and(|t| c.offset <= t) {
                obs.repeated += 1;
                continue;
            }
            obs.signals_through.insert(c.partition, c.offset);
            let s = match &c.signal {
                Ok(s) => s,
                Err((id, r)) => {
                    obs.refused += 1;
                    if obs.refused_ids.len() < MAX_IDS {
                        obs.refused_ids.push(Refused {
                            signal_id: *id,
                            code: r.code,
                        });
                    }
                    continue;
                }
            };
            let is_bound =
                bound.primary == Some(&s.bundle_version) || bound.canary == Some(&s.bundle_version);
            let useful = match s.kind {
                SignalKind::Incident => is_bound,
                SignalKind::Metric => {
                    metrics.contains(&s.name.as_str())
                        && (is_bound || bound.previous == Some(&s.bundle_version))
                }
            };
            if !useful {
                obs.ignored += 1;
                if obs.ignored_ids.len() < MAX_IDS {
                    obs.ignored_ids.push(s.signal_id);
                }
                continue;
            }
            obs.counted += 1;
            if s.kind == SignalKind::Incident {
                obs.incidents.push(Incident {
                    signal_id: s.signal_id,
                    bundle_version: s.bundle_version.clone(),
                    severity: u32::try_from(s.value.0 / Fixed::ONE.0).unwrap_or(u32::MAX),
                });
                continue;
            }
            let key = (s.bundle_version.clone(), s.name.clone());
            let series = touched.entry(key).or_insert_with(|| {
                self.series(&s.bundle_version, &s.name)
                    .cloned()
                    .unwrap_or(Series {
                        bundle_version: s.bundle_version.clone(),
                        metric: s.name.clone(),
                        windows: Vec::new(),
                    })
            });
            add(series, s, needed);
        }
        obs.windows = touched.into_values().collect();
        let after = self.with(&obs);
        let fired = after.evaluate(bound, &obs);
        (obs, fired)
    }

    /// The kept series of `(version, metric)`.
    pub fn series(&self, v: &BundleVersion, metric: &str) -> Option<&Series> {
        self.series
            .iter()
            .find(|s| &s.bundle_version == v && s.metric == metric)
    }

    /// This state with an observation's windows upserted (replay and evaluation share it).
    pub fn with(&self, obs: &Observation) -> Autopilot {
        let mut a = self.clone();
        a.apply_observation(obs, None);
        a
    }

    /// Replays an observation: upserts its series, records the offsets, and keeps only
    /// the series of `keep` (the bound and restorable versions) when given.
    pub fn apply_observation(&mut self, obs: &Observation, keep: Option<&[&BundleVersion]>) {
        for s in &obs.windows {
            match self
                .series
                .iter_mut()
                .find(|x| x.bundle_version == s.bundle_version && x.metric == s.metric)
            {
                Some(x) => x.windows = s.windows.clone(),
                None => self.series.push(s.clone()),
            }
        }
        self.series
            .sort_by(|a, b| (&a.bundle_version, &a.metric).cmp(&(&b.bundle_version, &b.metric)));
        if let Some(keep) = keep {
            self.series.retain(|s| keep.contains(&&s.bundle_version));
        }
        self.signals_through = obs.signals_through.clone();
    }

    /// Replays an automated action at log time `at_ms`.
    pub fn apply_trigger(&mut self, t: &Trigger, at_ms: i64, seq: u64) {
        if matches!(t.outcome, TriggerOutcome::Acted | TriggerOutcome::DryRun) {
            self.actions_ms.push(at_ms);
            let period = self
                .policy
                .as_ref()
                .map_or(0, |p| p.period_ms.max(p.cooldown_ms));
            self.actions_ms
                .retain(|&m| m > at_ms.saturating_sub(period as i64) || m == at_ms);
        }
        if t.outcome == TriggerOutcome::Acted {
            self.blocked.insert(t.bundle_version.clone(), seq);
        }
    }

    /// Applies the guard rails to a fired rule at log time `at_ms`.
    pub fn guard(&self, fired: &Fired, at_ms: i64) -> TriggerOutcome {
        let Some(p) = &self.policy else {
            return TriggerOutcome::DryRun;
        };
        if let Some(&last) = self.actions_ms.last()
            && at_ms.saturating_sub(last) < p.cooldown_ms as i64
        {
            return TriggerOutcome::Cooldown;
        }
        if p.max_actions > 0 {
            let since = at_ms.saturating_sub(p.period_ms as i64);
            let n = self.actions_ms.iter().filter(|&&m| m > since).count();
            if n >= p.max_actions as usize {
                return TriggerOutcome::Cap;
            }
        }
        let _ = fired;
        if p.dry_run {
            TriggerOutcome::DryRun
        } else {
            TriggerOutcome::Acted
        }
    }

    fn evaluate(&self, bound: Bound<'_>, obs: &Observation) -> Option<Fired> {
        let p = self.policy.as_ref()?;
        for r in &p.rules {
            if let Some(f) = self.check(r, bound, obs) {
                return Some(f);
            }
        }
        None
    }

    fn check(&self, r: &Rule, bound: Bound<'_>, obs: &Observation) -> Option<Fired> {
        let fire = |action, v: &BundleVersion, ids: Vec<Uuid>, evidence: String| Fired {
            rule_id: r.rule_id.clone(),
            action,
            bundle_version: v.clone(),
            signal_ids: ids.into_iter().take(MAX_IDS).collect(),
            evidence,
        };
        match &r.check {
            Check::Threshold {
                metric,
                above,
                windows,
            } => {
                // The canary first: aborting it is the smaller change.
                let targets = [
                    (bound.canary, AutoAction::CanaryAbort),
                    (bound.primary, AutoAction::Rollback),
                ];
                for (v, action) in targets {
                    let Some(v) = v else { continue };
                    let Some(s) = self.series(v, metric) else {
                        continue;
                    };
                    let n = *windows as usize;
                    if s.windows.len() < n {
                        continue;
                    }
                    let last = &s.windows[s.windows.len() - n..];
                    if last
                        .iter()
                        .all(|w| w.mean_above(i128::from(above.0), 1, Fixed::ONE))
                    {
                        return Some(fire(
                            action,
                            v,
                            ids_of(last),
                            format!(
                                "{metric} above {} in the last {n} window(s) of {v} (latest mean {})",
                                above.to_f64(),
                                mean(last.last()?).to_f64()
                            ),
                        ));
                    }
                }
                None
            }
            Check::Baseline { metric, factor } => {
                let (v, prev) = (bound.primary?, bound.previous?);
                let cur = self.series(v, metric)?.windows.last()?;
                let base = self.series(prev, metric)?;
                let (bsum, bcount) = base.windows.iter().fold((0i128, 0u64), |(s, c), w| {
                    (s + i128::from(w.sum.0), c + w.count)
                });
                cur.mean_above(bsum, bcount, *factor).then(|| {
                    fire(
                        AutoAction::Rollback,
                        v,
                        cur.signal_ids.clone(),
                        format!(
                            "{metric} mean {} of {v} is above {} x the baseline {} of {prev}",
                            mean(cur).to_f64(),
                            factor.to_f64(),
                            (bsum as f64 / bcount.max(1) as f64) / 1_000_000.0
                        ),
                    )
                })
            }
            Check::Incident { max_severity } => {
                let i = obs.incidents.iter().find(|i| i.severity <= *max_severity)?;
                let action = if bound.canary == Some(&i.bundle_version) {
                    AutoAction::CanaryAbort
                } else {
                    AutoAction::Rollback
                };
                Some(fire(
                    action,
                    &i.bundle_version,
                    vec![i.signal_id],
                    format!(
                        "incident of severity {} (SEV{} or worse fires) on {}",
                        i.severity, max_severity, i.bundle_version
                    ),
                ))
            }
            Check::CanaryWorse {
                metric,
                factor,
                windows,
            } => {
                let (c, pv) = (bound.canary?, bound.primary?);
                let cs = self.series(c, metric)?;
                let ps = self.series(pv, metric)?;
                let shared: Vec<(&WindowAgg, &WindowAgg)> = cs
                    .windows
                    .iter()
                    .filter_map(|w| {
                        ps.windows
                            .iter()
                            .find(|x| x.window_start_utc == w.window_start_utc)
                            .map(|x| (w, x))
                    })
                    .collect();
                let n = *windows as usize;
                if shared.len() < n {
                    return None;
                }
                let last = &shared[shared.len() - n..];
                last.iter()
                    .all(|(cw, pw)| cw.mean_above(i128::from(pw.sum.0), pw.count, *factor))
                    .then(|| {
                        let ids = last.iter().flat_map(|(cw, _)| cw.signal_ids.clone()).collect();
                        let (cw, pw) = last[last.len() - 1];
                        fire(
                            AutoAction::CanaryAbort,
                            c,
                            ids,
                            format!(
                                "{metric} of canary {c} above {} x primary {pv} in the last {n} shared window(s) (latest {} vs {})",
                                factor.to_f64(),
                                mean(cw).to_f64(),
                                mean(pw).to_f64()
                            ),
                        )
                    })
            }
        }
    }
}

fn mean(w: &WindowAgg) -> Fixed {
    Fixed(w.sum.0 / (w.count.max(1) as i64))
}

fn ids_of(ws: &[WindowAgg]) -> Vec<Uuid> {
    ws.iter()
        .flat_map(|w| w.signal_ids.iter().copied())
        .collect()
}

/// Adds one metric signal to its window (windows are identified by their start), keeping
/// the newest `needed` windows in start order.
fn add(series: &mut Series, s: &Signal, needed: usize) {
    let at = series
        .windows
        .binary_search_by(|w| w.window_start_utc.cmp(&s.window_start_utc));
    let i = match at {
        Ok(i) => i,
        Err(i) => {
            series.windows.insert(
                i,
                WindowAgg {
                    window_start_utc: s.window_start_utc,
                    window_end_utc: s.window_end_utc,
                    count: 0,
                    sum: Fixed(0),
                    max: s.value,
                    signal_ids: Vec::new(),
                },
            );
            i
        }
    };
    let w = &mut series.windows[i];
    w.count += 1;
    w.sum = Fixed(w.sum.0.saturating_add(s.value.0));
    w.max = w.max.max(s.value);
    if w.signal_ids.len() < MAX_IDS {
        w.signal_ids.push(s.signal_id);
    }
    let extra = series.windows.len().saturating_sub(needed);
    series.windows.drain(..extra);
}

/// The canary slice: a stable hash of the routing key, the scope and the canary's
/// activation, in basis points (0-9,999). A key is answered the canary when its slice is
/// below the share, so a key inside a 5 % slice stays inside at 20 %.
pub fn canary_slice(
    environment: &Environment,
    tenant: &TenantId,
    bundle_id: &BundleId,
    activation: &Uuid,
    routing_key: &str,
) -> u32 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [
        environment.as_str(),
        tenant.as_str(),
        bundle_id.as_str(),
        &activation.to_string(),
        routing_key,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let d = h.finalize();
    let x = u64::from_be_bytes(d[..8].try_into().expect("8 bytes"));
    (x % 10_000) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> BundleVersion {
        s.parse().unwrap()
    }

    fn sig(n: u128, version: &str, name: &str, value: f64, window: i64) -> Checked {
        Checked {
            partition: 0,
            offset: n as i64,
            signal: Ok(Signal {
                signal_id: Uuid::from_u128(n),
                actor: "obs".parse().unwrap(),
                source: "test".into(),
                environment: "prod".parse().unwrap(),
                tenant_id: TenantId::any(),
                bundle_id: "fam".parse().unwrap(),
                bundle_version: v(version),
                bundle_digest: "sha256:x".into(),
                kind: SignalKind::Metric,
                name: name.into(),
                value: Fixed::from_f64(value).unwrap(),
                window_start_utc: Timestamp::from_millis(window * 60_000),
                window_end_utc: Timestamp::from_millis((window + 1) * 60_000),
                observed_at_utc: Timestamp::from_millis((window + 1) * 60_000),
            }),
        }
    }

    fn policy(rules: Vec<Rule>) -> Autopilot {
        Autopilot {
            policy: Some(RollbackPolicy {
                rules,
                cooldown_ms: 600_000,
                max_actions: 2,
                period_ms: 3_600_000,
                dry_run: false,
            }),
            policy_seq: 1,
            ..Autopilot::default()
        }
    }

    #[test]
    fn threshold_needs_n_windows_in_a_row() {
        let a = policy(vec![Rule {
            rule_id: "err".into(),
            check: Check::Threshold {
                metric: "error_rate".into(),
                above: Fixed::from_f64(0.05).unwrap(),
                windows: 2,
            },
        }]);
        let (b1, b2) = (v("1.0.0"), v("2.0.0"));
        let bound = Bound {
            primary: Some(&b2),
            previous: Some(&b1),
            canary: None,
        };
        let (o1, f1) = a.observe(bound, &[sig(1, "2.0.0", "error_rate", 0.2, 1)]);
        assert!(f1.is_none(), "one window is not two");
        let a = a.with(&o1);
        let (_, f2) = a.observe(bound, &[sig(2, "2.0.0", "error_rate", 0.2, 2)]);
        let f2 = f2.expect("two windows above fire");
        assert_eq!(f2.action, AutoAction::Rollback);
        assert_eq!(f2.signal_ids, vec![Uuid::from_u128(1), Uuid::from_u128(2)]);
    }

    /// What a scope keeps is bounded: a burst over 100 windows keeps the windows the rules
    /// need (here 5), at most 8 ids per window, whatever arrives.
    #[test]
    fn kept_windows_and_ids_are_bounded() {
        let mut a = policy(vec![Rule {
            rule_id: "err".into(),
            check: Check::Threshold {
                metric: "error_rate".into(),
                above: Fixed::from_f64(5.0).unwrap(),
                windows: 5,
            },
        }]);
        let b = v("1.0.0");
        let bound = Bound {
            primary: Some(&b),
            previous: None,
            canary: None,
        };
        let burst: Vec<Checked> = (0..2_000u128)
            .map(|n| sig(n, "1.0.0", "error_rate", 0.01, (n % 100) as i64))
            .collect();
        for chunk in burst.chunks(500) {
            let (o, fired) = a.observe(bound, chunk);
            assert!(fired.is_none());
            assert_eq!(o.counted, 500);
            a = a.with(&o);
        }
        let s = a.series(&b, "error_rate").unwrap();
        assert_eq!(s.windows.len(), 5);
        assert!(s.windows.iter().all(|w| w.signal_ids.len() <= MAX_IDS));
        // The newest five windows by start, each with every signal counted.
        let starts: Vec<i64> = s
            .windows
            .iter()
            .map(|w| w.window_start_utc.millis() / 60_000)
            .collect();
        assert_eq!(starts, vec![95, 96, 97, 98, 99]);
        assert!(s.windows.iter().all(|w| w.count == 20));
        assert!(a.policy.as_ref().unwrap().windows_needed() <= MAX_WINDOWS);
    }

    #[test]
    fn repeats_unbound_and_unread_metrics_are_not_counted() {
        let a = policy(vec![Rule {
            rule_id: "err".into(),
            check: Check::Threshold {
                metric: "error_rate".into(),
                above: Fixed::from_f64(0.05).unwrap(),
                windows: 1,
            },
        }]);
        let b2 = v("2.0.0");
        let bound = Bound {
            primary: Some(&b2),
            previous: None,
            canary: None,
        };
        let (o, f) = a.observe(
            bound,
            &[
                sig(1, "9.0.0", "error_rate", 0.9, 1),
                sig(2, "2.0.0", "latency", 0.9, 1),
                sig(3, "2.0.0", "error_rate", 0.01, 1),
            ],
        );
        assert_eq!((o.counted, o.ignored), (1, 2));
        assert!(f.is_none());
        let (o2, _) = a
            .with(&o)
            .observe(bound, &[sig(3, "2.0.0", "error_rate", 0.9, 1)]);
        assert_eq!(o2.repeated, 1);
    }

    #[test]
    fn guard_rails_cooldown_and_cap() {
        let mut a = policy(vec![]);
        let f = Fired {
            rule_id: "r".into(),
            action: AutoAction::Rollback,
            bundle_version: v("2.0.0"),
            signal_ids: vec![],
            evidence: String::new(),
        };
        assert_eq!(a.guard(&f, 0), TriggerOutcome::Acted);
        let t = |o| Trigger {
            policy_seq: 1,
            rule_id: "r".into(),
            action: AutoAction::Rollback,
            bundle_version: v("2.0.0"),
            outcome: o,
            signal_ids: vec![],
            evidence: String::new(),
        };
        a.apply_trigger(&t(TriggerOutcome::Acted), 0, 5);
        assert_eq!(a.guard(&f, 599_999), TriggerOutcome::Cooldown);
        a.apply_trigger(&t(TriggerOutcome::Acted), 600_000, 6);
        assert_eq!(a.guard(&f, 1_200_000), TriggerOutcome::Cap);
        assert_eq!(a.guard(&f, 3_600_001), TriggerOutcome::Acted);
        assert_eq!(a.blocked.get(&v("2.0.0")), Some(&6));
    }

    #[test]
    fn canary_slices_are_stable_when_the_share_grows() {
        let (e, t, b) = (
            "prod".parse().unwrap(),
            TenantId::any(),
            "fam".parse().unwrap(),
        );
        let act = Uuid::from_u128(7);
        let keys: Vec<String> = (0..20_000).map(|i| format!("user-{i}")).collect();
        let inside = |share: u32| {
            keys.iter()
                .filter(|k| canary_slice(&e, &t, &b, &act, k) < share)
                .cloned()
                .collect::<std::collections::BTreeSet<_>>()
        };
        let (five, twenty) = (inside(500), inside(2_000));
        assert!(five.is_subset(&twenty));
        let share = five.len() as f64 / keys.len() as f64;
        assert!((share - 0.05).abs() < 0.006, "{share}");
    }
}
