//! Roles and grants: who may issue which command, optionally limited to environments.
//! Pure data and checks; token handling lives in the API.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::command::Command;
use super::error::{ErrorCode, Rejection};
use super::ids::{Actor, Environment};

/// A role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// May resolve and query.
    Reader,
    /// May publish bundles.
    Publisher,
    /// May nominate, approve and reject.
    Approver,
    /// May promote and roll back.
    Deployer,
    /// May do everything, including retire and catalog changes.
    Admin,
}

impl Role {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Publisher => "publisher",
            Role::Approver => "approver",
            Role::Deployer => "deployer",
            Role::Admin => "admin",
        }
    }
}

/// A role, possibly limited to some environments: `deployer` or `deployer@prod` or
/// `deployer@stage,prod`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RoleGrant {
    /// The role.
    pub role: Role,
    /// `None`: every environment.
    pub environments: Option<BTreeSet<Environment>>,
}

impl FromStr for RoleGrant {
    type Err = Rejection;
    fn from_str(s: &str) -> Result<Self, Rejection> {
        let (name, envs) = match s.split_once('@') {
            Some((n, e)) => (n, Some(e)),
            None => (s, None),
        };
        let role = match name {
            "reader" => Role::Reader,
            "publisher" => Role::Publisher,
            "approver" => Role::Approver,
            "deployer" => Role::Deployer,
            "admin" => Role::Admin,
            other => {
                return Err(Rejection::new(
                    ErrorCode::InvalidPayload,
                    format!(
                        "unknown role {other:?}; expected reader, publisher, approver, deployer or admin"
                    ),
                ));
            }
        };
        let environments = envs
            .map(|e| {
                e.split(',')
                    .map(str::parse)
                    .collect::<Result<BTreeSet<_>, _>>()
            })
            .transpose()?;
        Ok(Self { role, environments })
    }
}
impl fmt::Display for RoleGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.role.as_str())?;
        if let Some(envs) = &self.environments {
            let names: Vec<&str> = envs.iter().map(Environment::as_str).collect();
            write!(f, "@{}", names.join(","))?;
        }
        Ok(())
    }
}
impl From<RoleGrant> for String {
    fn from(g: RoleGrant) -> String {
        g.to_string()
    }
}
impl TryFrom<String> for RoleGrant {
    type Error = Rejection;
    fn try_from(s: String) -> Result<Self, Rejection> {
        s.parse()
    }
}

/// Which actors hold which grants, and the configured trust roots that authenticate them.
/// With `enforce` off every actor may do everything (local experiments only); separation
/// of duties holds regardless.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Whether roles are checked at all.
    pub enforce: bool,
    /// Grants per actor.
    pub by_actor: BTreeMap<Actor, Vec<RoleGrant>>,
    /// Whether signatures are required, and the API gateway's keys.
    pub trust: super::trust::TrustRoots,
}

impl Grants {
    /// Enforced grants from `(actor, grants)` pairs.
    pub fn enforced(entries: impl IntoIterator<Item = (Actor, Vec<RoleGrant>)>) -> Self {
        Self {
            enforce: true,
            by_actor: entries.into_iter().collect(),
            trust: Default::default(),
        }
    }

    /// Whether `actor` holds `role` (or admin) for `env` (`None`: a command not bound to
    /// an environment, which only an unrestricted grant covers).
    pub fn allows(&self, actor: &Actor, role: Role, env: Option<&Environment>) -> bool {
        if !self.enforce {
            return true;
        }
        self.by_actor.get(actor).is_some_and(|grants| {
            grants.iter().any(|g| {
                (g.role == role || g.role == Role::Admin)
                    && match (&g.environments, env) {
                        (None, _) => true,
                        (Some(envs), Some(e)) => envs.contains(e),
                        (Some(_), None) => false,
                    }
            })
        })
    }

    /// Checks that `actor` may issue `command`; FORBIDDEN names what is missing.
    pub fn authorize(&self, actor: &Actor, command: &Command) -> Result<(), Rejection> {
        let (role, env) = required_role(command);
        if self.allows(actor, role, env) {
            return Ok(());
        }
        let scope = env
            .map(|e| format!(" in environment {e}"))
            .unwrap_or_default();
        Err(Rejection::new(
            ErrorCode::Forbidden,
            format!(
                "actor {actor} lacks role {}{scope} needed for {}",
                role.as_str(),
                command.command_type().as_str()
            ),
        ))
    }
}

/// The role (and environment) a command needs.
pub fn required_role(command: &Command) -> (Role, Option<&Environment>) {
    match command {
        Command::Publish(_) => (Role::Publisher, None),
        Command::Nominate(_) | Command::Approve(_) | Command::Reject(_) => (Role::Approver, None),
        Command::Promote(p) => (Role::Deployer, Some(&p.environment)),
        Command::Rollback(r) => (Role::Deployer, Some(&r.environment)),
        Command::Retire(_) => (Role::Admin, None),
        Command::SetCatalog(c) => (Role::Admin, Some(&c.environment)),
        Command::RegisterKey(_) | Command::RevokeKey(_) => (Role::Admin, None),
    }
}
