//! Identity newtypes: bundle family ids, SemVer versions, environments, tenants, actors,
//! scopes and timestamps. Everything here is parsed at the edge and trusted inside.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::{ErrorCode, Rejection};

fn invalid(what: &str, value: &str, rule: &str) -> Rejection {
    Rejection::new(
        ErrorCode::InvalidPayload,
        format!("{what} {value:?} is invalid: {rule}"),
    )
}

fn check_chars(s: &str, max: usize, first: fn(u8) -> bool, rest: fn(u8) -> bool) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && b.len() <= max && first(b[0]) && b[1..].iter().all(|c| rest(*c))
}

fn lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

macro_rules! string_newtype {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The validated string form.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = Rejection;
            fn try_from(s: String) -> Result<Self, Rejection> {
                s.parse()
            }
        }
    };
}

string_newtype!(
    BundleId,
    "A bundle family (model family or policy name): `[a-z0-9][a-z0-9._-]{0,127}`."
);
impl FromStr for BundleId {
    type Err = Rejection;
    fn from_str(s: &str) -> Result<Self, Rejection> {
        let rest = |c: u8| lower_alnum(c) || matches!(c, b'.' | b'_' | b'-');
        if check_chars(s, 128, lower_alnum, rest) {
            Ok(Self(s.to_owned()))
        } else {
            Err(invalid(
                "bundle_id",
                s,
                "must match [a-z0-9][a-z0-9._-]{0,127}",
            ))
        }
    }
}

string_newtype!(
    Environment,
    "A deployment environment such as `dev`, `stage` or `prod`: `[a-z0-9][a-z0-9-]{0,63}`."
);
impl FromStr for Environment {
    type Err = Rejection;
    fn from_str(s: &str) -> Result<Self, Rejection> {
        let rest = |c: u8| lower_alnum(c) || c == b'-';
        if check_chars(s, 64, lower_alnum, rest) {
            Ok(Self(s.to_owned()))
        } else {
            Err(invalid(
                "environment",
                s,
                "must match [a-z0-9][a-z0-9-]{0,63}",
            ))
        }
    }
}

string_newtype!(
    TenantId,
    "A tenant, or `*` for every tenant: `*` or `[A-Za-z0-9][A-Za-z0-9._-]{0,127}`."
);
impl TenantId {
    /// The wildcard tenant `*`, the scope every tenant falls back to.
    pub fn any() -> Self {
        Self("*".to_owned())
    }
    /// Whether this is the wildcard `*`.
    pub fn is_any(&self) -> bool {
        self.0 == "*"
    }
}
impl FromStr for TenantId {
    type Err = Rejection;
    fn from_str(s: &str) -> Result<Self, Rejection> {
        let ok = s == "*"
            || check_chars(
                s,
                128,
                |c| c.is_ascii_alphanumeric(),
                |c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'),
            );
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(invalid(
                "tenant_id",
                s,
                "must be * or match [A-Za-z0-9][A-Za-z0-9._-]{0,127}",
            ))
        }
    }
}

string_newtype!(
    Actor,
    "An authenticated principal name: 1 to 128 printable ASCII characters without spaces."
);
impl FromStr for Actor {
    type Err = Rejection;
    fn from_str(s: &str) -> Result<Self, Rejection> {
        if check_chars(s, 128, |c| c.is_ascii_graphic(), |c| c.is_ascii_graphic()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(invalid(
                "actor",
                s,
                "must be 1-128 printable ASCII characters",
            ))
        }
    }
}

/// A strict SemVer 2.0 version (`1.2.3`, `1.2.3-rc.1+build.5`); no `v` prefix, no leading zeros.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BundleVersion(semver::Version);

impl BundleVersion {
    /// The parsed version.
    pub fn semver(&self) -> &semver::Version {
        &self.0
    }
}
impl FromStr for BundleVersion {
    type Err = Rejection;
    fn from_str(s: &str) -> Result<Self, Rejection> {
        if s.len() > 128 {
            return Err(invalid("bundle_version", s, "longer than 128 characters"));
        }
        semver::Version::parse(s)
            .map(Self)
            .map_err(|e| invalid("bundle_version", s, &format!("not strict SemVer 2.0 ({e})")))
    }
}
impl fmt::Display for BundleVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
impl From<BundleVersion> for String {
    fn from(v: BundleVersion) -> String {
        v.0.to_string()
    }
}
impl TryFrom<String> for BundleVersion {
    type Error = Rejection;
    fn try_from(s: String) -> Result<Self, Rejection> {
        s.parse()
    }
}

/// Which slot of a scope a binding occupies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Slot {
    /// The normal ACTIVE bundle of the scope.
    Primary,
    /// The bundle served when the caller asks for degrade mode.
    Degrade,
    /// A version served to a share of routing keys next to the PRIMARY.
    Canary,
}

impl Slot {
    /// Stable wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::Primary => "PRIMARY",
            Slot::Degrade => "DEGRADE",
            Slot::Canary => "CANARY",
        }
    }
}

/// A resolution scope: `(environment, tenant_id or "*", bundle_id)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ScopeKey {
    /// Deployment environment.
    pub environment: Environment,
    /// Tenant, or `*`.
    pub tenant_id: TenantId,
    /// Bundle family.
    pub bundle_id: BundleId,
}

impl fmt::Display for ScopeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.environment, self.tenant_id, self.bundle_id
        )
    }
}

/// A UTC instant with millisecond precision, written as RFC 3339 (`2026-11-26T01:02:03.456Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Timestamp(i64);

impl Timestamp {
    /// From milliseconds since the Unix epoch.
    pub fn from_millis(ms: i64) -> Self {
        Self(ms)
    }
    /// Milliseconds since the Unix epoch.
    pub fn millis(self) -> i64 {
        self.0
    }
}
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dt = OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second(),
            dt.millisecond()
        )
    }
}
impl FromStr for Timestamp {
    type Err = Rejection;
    fn from_str(s: &str) -> Result<Self, Rejection> {
        if !matches!(s.as_bytes().get(10), Some(b'T' | b't')) {
            return Err(invalid(
                "timestamp",
                s,
                "not RFC 3339 (date and time are separated by T)",
            ));
        }
        let dt = OffsetDateTime::parse(s, &Rfc3339)
            .map_err(|e| invalid("timestamp", s, &format!("not RFC 3339 ({e})")))?;
        let ms = dt.unix_timestamp_nanos() / 1_000_000;
        i64::try_from(ms)
            .map(Self)
            .map_err(|_| invalid("timestamp", s, "out of range"))
    }
}
impl From<Timestamp> for String {
    fn from(t: Timestamp) -> String {
        t.to_string()
    }
}
impl TryFrom<String> for Timestamp {
    type Error = Rejection;
    fn try_from(s: String) -> Result<Self, Rejection> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_strictly() {
        assert!("fraud-model.v2_x".parse::<BundleId>().is_ok());
        assert!("Fraud".parse::<BundleId>().is_err());
        assert!("-x".parse::<BundleId>().is_err());
        assert!("a".repeat(129).parse::<BundleId>().is_err());
        assert!("1.2.3-rc.1+b5".parse::<BundleVersion>().is_ok());
        assert!("v1.2.3".parse::<BundleVersion>().is_err());
        assert!("01.2.3".parse::<BundleVersion>().is_err());
        assert!("1.2".parse::<BundleVersion>().is_err());
        assert!("*".parse::<TenantId>().unwrap().is_any());
        assert!("prod".parse::<Environment>().is_ok());
        assert!("Prod".parse::<Environment>().is_err());
    }

    #[test]
    fn timestamps_round_trip_in_utc_millis() {
        let t: Timestamp = "2026-11-26T03:02:01.5+02:00".parse().unwrap();
        assert_eq!(t.to_string(), "2026-11-26T01:02:01.500Z");
        assert_eq!(t.to_string().parse::<Timestamp>().unwrap(), t);
    }
}
