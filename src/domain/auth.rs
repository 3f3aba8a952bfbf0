//! Roles and grants: who may issue which command, optionally limited to environments, and
//! what a principal may read, optionally limited to environments and one tenant.
//! Pure data and checks; token handling lives in the API.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::command::Command;
use super::error::{ErrorCode, Rejection};
use super::event::RegistryEvent;
use super::ids::{Actor, Environment, TenantId};

/// A role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// May resolve and query.
    Reader,
    /// May resolve and query every scope and read the whole event log; may issue no
    /// command. Never limited.
    Auditor,
    /// May publish bundles.
    Publisher,
    /// May nominate, approve and reject.
    Approver,
    /// May promote and roll back.
    Deployer,
    /// May do everything, including retire and catalog changes.
    Admin,
    /// May send runtime signals; may issue no command.
    Observer,
}

impl Role {
    /// Every role, in the order the docs list them.
    pub const ALL: [Role; 7] = [
        Role::Reader,
        Role::Auditor,
        Role::Publisher,
        Role::Approver,
        Role::Deployer,
        Role::Admin,
        Role::Observer,
    ];

    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Auditor => "auditor",
            Role::Publisher => "publisher",
            Role::Approver => "approver",
            Role::Deployer => "deployer",
            Role::Admin => "admin",
            Role::Observer => "observer",
        }
    }

    /// Whether the role may call `GET /v1/resolve`.
    pub fn resolves(self) -> bool {
        matches!(self, Role::Reader | Role::Auditor | Role::Admin)
    }
}

fn invalid_grant(grant: &str, why: &str) -> Rejection {
    Rejection::new(
        ErrorCode::InvalidPayload,
        format!("grant {grant:?} is invalid: {why}"),
    )
}

/// A role, possibly limited to some environments and, for `reader` only, to one tenant:
/// `deployer`, `deployer@prod`, `deployer@stage,prod`, `reader@prod/acme`,
/// `reader@*/acme` (one tenant in every environment). `auditor` takes no limit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RoleGrant {
    /// The role.
    pub role: Role,
    /// `None`: every environment.
    pub environments: Option<BTreeSet<Environment>>,
    /// `None`: every tenant. Only a `reader` grant has one; never `*`.
    pub tenant: Option<TenantId>,
}

impl FromStr for RoleGrant {
    type Err = Rejection;
    fn from_str(s: &str) -> Result<Self, Rejection> {
        let (name, limit) = match s.split_once('@') {
            Some((n, l)) => (n, Some(l)),
            None => (s, None),
        };
        let role = Role::ALL
            .into_iter()
            .find(|r| r.as_str() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
                Rejection::new(
                    ErrorCode::InvalidPayload,
                    format!(
                        "unknown role {name:?}; expected one of {}",
                        names.join(", ")
                    ),
                )
            })?;
        let Some(limit) = limit else {
            return Ok(Self {
                role,
                environments: None,
                tenant: None,
            });
        };
        let (envs, tenant) = match limit.split_once('/') {
            Some((e, t)) => (e, Some(t)),
            None => (limit, None),
        };
        let environments = if envs == "*" {
            None
        } else {
            Some(
                envs.split(',')
                    .map(str::parse)
                    .collect::<Result<BTreeSet<Environment>, _>>()?,
            )
        };
        let tenant = tenant.map(str::parse::<TenantId>).transpose()?;
        if tenant.as_ref().is_some_and(TenantId::is_any) {
            return Err(invalid_grant(
                s,
                "a tenant limit names one tenant; leave it out to allow every tenant",
            ));
        }
        if tenant.is_some() && role != Role::Reader {
            return Err(invalid_grant(s, "only a reader grant takes a tenant limit"));
        }
        if role == Role::Auditor && (environments.is_some() || tenant.is_some()) {
            return Err(invalid_grant(
                s,
                "auditor reads everything and takes no limit; use reader@... for a limited reader",
            ));
        }
        if environments.is_none() && tenant.is_none() {
            return Err(invalid_grant(s, "@* limits nothing; write the role alone"));
        }
        Ok(Self {
            role,
            environments,
            tenant,
        })
    }
}
impl fmt::Display for RoleGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.role.as_str())?;
        if self.environments.is_none() && self.tenant.is_none() {
            return Ok(());
        }
        match &self.environments {
            Some(envs) => {
                let names: Vec<&str> = envs.iter().map(Environment::as_str).collect();
                write!(f, "@{}", names.join(","))?;
            }
            None => f.write_str("@*")?,
        }
        if let Some(t) = &self.tenant {
            write!(f, "/{t}")?;
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

impl RoleGrant {
    /// An unlimited grant of `role`.
    pub fn unlimited(role: Role) -> Self {
        Self {
            role,
            environments: None,
            tenant: None,
        }
    }

    /// Whether the grant has neither an environment nor a tenant limit.
    pub fn is_unlimited(&self) -> bool {
        self.environments.is_none() && self.tenant.is_none()
    }

    /// Whether the grant covers environment `env`.
    fn covers_environment(&self, env: &Environment) -> bool {
        self.environments.as_ref().is_none_or(|e| e.contains(env))
    }

    /// Whether the grant covers the scope of `tenant` in `env`; the `*` scope is no
    /// tenant's, so a tenant-limited grant does not cover it.
    fn covers_scope(&self, env: &Environment, tenant: &TenantId) -> bool {
        self.covers_environment(env) && self.tenant.as_ref().is_none_or(|t| t == tenant)
    }
}

/// What one principal may read, from its grants. Every grant reads what it covers: an
/// unlimited grant (or `auditor`) reads everything; `role@envs` reads the scopes of those
/// environments and their catalog entries; `reader@envs/tenant` reads that tenant's
/// scopes there and those environments' catalog entries. Records tied to no environment
/// (events of bundle registrations and lifecycle changes) need an unlimited grant.
/// Resolving needs a `reader`, `auditor` or `admin` grant that covers the asked scope.
/// With roles not enforced, everyone reads everything.
#[derive(Debug, Clone, Copy)]
pub struct ReadAccess<'a> {
    grants: &'a [RoleGrant],
    enforce: bool,
}

impl<'a> ReadAccess<'a> {
    /// The read rights of a holder of `grants` (`enforce` off: everything).
    pub fn new(grants: &'a [RoleGrant], enforce: bool) -> Self {
        Self { grants, enforce }
    }

    /// Whether nothing is hidden from this principal.
    pub fn reads_everything(&self) -> bool {
        !self.enforce || self.grants.iter().any(RoleGrant::is_unlimited)
    }

    /// Whether the principal may resolve anything at all (else 403, which reveals no scope).
    pub fn may_resolve_somewhere(&self) -> bool {
        !self.enforce || self.grants.iter().any(|g| g.role.resolves())
    }

    /// Whether the principal may resolve `bundle` in `env` for `tenant` (`None` or `*`:
    /// the `*` scope). The answer for a tenant may come from the `*` scope, which the
    /// resolution rules consult on the tenant's behalf.
    pub fn may_resolve(&self, env: &Environment, tenant: Option<&TenantId>) -> bool {
        let any = TenantId::any();
        let tenant = tenant.unwrap_or(&any);
        !self.enforce
            || self
                .grants
                .iter()
                .any(|g| g.role.resolves() && g.covers_scope(env, tenant))
    }

    /// Whether the principal may read the bindings, history and events of the scope of
    /// `tenant` (which may be `*`) in `env`.
    pub fn may_read_scope(&self, env: &Environment, tenant: &TenantId) -> bool {
        !self.enforce || self.grants.iter().any(|g| g.covers_scope(env, tenant))
    }

    /// Whether the principal may read what belongs to `env` as a whole: its catalog entry.
    pub fn may_read_environment(&self, env: &Environment) -> bool {
        !self.enforce || self.grants.iter().any(|g| g.covers_environment(env))
    }

    /// Whether `e` is visible: an event of a scope the principal reads, a catalog event
    /// of an environment it reads, any event when it reads everything, and the events of
    /// the commands `actor` (the principal) issued itself.
    pub fn may_read_event(&self, actor: &Actor, e: &RegistryEvent) -> bool {
        self.reads_everything()
            || e.actor.as_ref() == Some(actor)
            || match (&e.scope, &e.catalog_entry) {
                (Some(sc), _) => self.may_read_scope(&sc.environment, &sc.tenant_id),
                (None, Some(c)) => self.may_read_environment(&c.environment),
                (None, None) => false,
            }
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
        Command::SetRollbackPolicy(p) => (Role::Deployer, Some(&p.scope.environment)),
        Command::CanarySetShare(c) => (Role::Deployer, Some(&c.scope.environment)),
        Command::CanaryComplete(t) | Command::CanaryAbort(t) => {
            (Role::Deployer, Some(&t.environment))
        }
        // Only the registry's own intake sends OBSERVE; authentication pins its actor to
        // `mpr-autopilot` and its key to a registry key, and the signals inside are
        // checked for the observer role one by one.
        Command::Observe(o) => (Role::Observer, Some(&o.scope.environment)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::decide::draft_for;
    use crate::testkit;

    fn grants(list: &[&str]) -> Vec<RoleGrant> {
        list.iter().map(|g| g.parse().unwrap()).collect()
    }

    fn env(s: &str) -> Environment {
        s.parse().unwrap()
    }

    fn tenant(s: &str) -> TenantId {
        s.parse().unwrap()
    }

    #[test]
    fn grants_parse_and_display_round_trips() {
        for (text, shown) in [
            ("reader", "reader"),
            ("auditor", "auditor"),
            ("deployer@prod", "deployer@prod"),
            ("deployer@prod,stage", "deployer@prod,stage"),
            ("deployer@stage,prod", "deployer@prod,stage"),
            ("reader@prod/acme", "reader@prod/acme"),
            ("reader@dev,prod/acme", "reader@dev,prod/acme"),
            ("reader@*/acme", "reader@*/acme"),
        ] {
            let g: RoleGrant = text.parse().unwrap();
            assert_eq!(g.to_string(), shown, "{text}");
            assert_eq!(shown.parse::<RoleGrant>().unwrap(), g, "{text}");
        }
        let g: RoleGrant = "reader@prod/acme".parse().unwrap();
        assert_eq!(
            (g.role, g.tenant.as_ref().map(TenantId::as_str)),
            (Role::Reader, Some("acme"))
        );
        assert_eq!(
            g.environments.unwrap().into_iter().collect::<Vec<_>>(),
            [env("prod")]
        );
    }

    #[test]
    fn bad_grants_are_refused_with_a_reason() {
        for (text, why) in [
            ("owner", "unknown role"),
            ("reader@", "environment"),
            ("reader@Prod", "environment"),
            ("reader@prod/", "tenant_id"),
            ("reader@prod/*", "one tenant"),
            ("deployer@prod/acme", "only a reader"),
            ("auditor@prod", "auditor reads everything"),
            ("reader@*", "limits nothing"),
        ] {
            let err = text.parse::<RoleGrant>().unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidPayload, "{text}");
            assert!(err.message.contains(why), "{text}: {}", err.message);
        }
    }

    #[test]
    fn limited_readers_read_only_their_scopes() {
        let prod = env("prod");
        let dev = env("dev");
        let (acme, globex, any) = (tenant("acme"), tenant("globex"), TenantId::any());
        let list = grants(&["reader@dev"]);
        let dev_reader = ReadAccess::new(&list, true);
        assert!(dev_reader.may_resolve(&dev, Some(&acme)));
        assert!(dev_reader.may_resolve(&dev, None));
        assert!(!dev_reader.may_resolve(&prod, None));
        assert!(!dev_reader.may_read_scope(&prod, &any));
        assert!(dev_reader.may_read_environment(&dev));
        assert!(!dev_reader.may_read_environment(&prod));
        assert!(!dev_reader.reads_everything());

        let list = grants(&["reader@prod/acme"]);
        let acme_reader = ReadAccess::new(&list, true);
        assert!(acme_reader.may_resolve(&prod, Some(&acme)));
        assert!(!acme_reader.may_resolve(&prod, Some(&globex)));
        assert!(
            !acme_reader.may_resolve(&prod, None),
            "the * scope is no tenant's"
        );
        assert!(!acme_reader.may_resolve(&prod, Some(&any)));
        assert!(!acme_reader.may_resolve(&dev, Some(&acme)));
        assert!(acme_reader.may_read_scope(&prod, &acme));
        assert!(!acme_reader.may_read_scope(&prod, &any));
        assert!(acme_reader.may_read_environment(&prod));

        let list = grants(&["reader@*/acme"]);
        let everywhere = ReadAccess::new(&list, true);
        assert!(everywhere.may_read_scope(&dev, &acme) && everywhere.may_read_scope(&prod, &acme));
        assert!(!everywhere.may_read_scope(&prod, &globex));
    }

    #[test]
    fn unlimited_grants_and_the_auditor_read_everything() {
        let prod = env("prod");
        for g in ["reader", "auditor", "admin", "publisher", "approver"] {
            let list = grants(&[g]);
            let a = ReadAccess::new(&list, true);
            assert!(a.reads_everything(), "{g}");
            assert!(a.may_read_scope(&prod, &tenant("acme")), "{g}");
        }
        for g in ["reader", "auditor", "admin"] {
            let list = grants(&[g]);
            assert!(ReadAccess::new(&list, true).may_resolve(&prod, None), "{g}");
        }
        for g in ["publisher", "approver", "deployer"] {
            let list = grants(&[g]);
            let a = ReadAccess::new(&list, true);
            assert!(
                !a.may_resolve_somewhere() && !a.may_resolve(&prod, None),
                "{g}"
            );
        }
        // A limited write grant limits what it reads.
        let list = grants(&["deployer@prod"]);
        let dep = ReadAccess::new(&list, true);
        assert!(dep.may_read_scope(&prod, &TenantId::any()));
        assert!(!dep.may_read_scope(&env("dev"), &TenantId::any()));
        assert!(!dep.reads_everything());
        // No grant reads nothing; roles not enforced read everything.
        assert!(!ReadAccess::new(&[], true).may_read_environment(&prod));
        assert!(ReadAccess::new(&[], false).reads_everything());
        assert!(ReadAccess::new(&[], false).may_resolve(&prod, None));
    }

    #[test]
    fn the_auditor_issues_no_command() {
        let g = Grants::enforced([("aud".parse().unwrap(), grants(&["auditor"]))]);
        let actor: Actor = "aud".parse().unwrap();
        for cmd in [
            testkit::publish("aud", "fam", "1.0.0"),
            testkit::promote("aud", "fam", "1.0.0", "prod", "*", false),
            testkit::rollback("aud", "fam", "prod", "*", false),
            testkit::set_catalog("aud", "prod"),
        ] {
            let err = g.authorize(&actor, &cmd.command).unwrap_err();
            assert_eq!(err.code, ErrorCode::Forbidden);
        }
    }

    #[test]
    fn events_are_visible_by_scope_catalog_environment_or_own_actor() {
        let me: Actor = "df".parse().unwrap();
        let event = |e| draft_for(&testkit::input(e, 0));
        let prod_acme = event(testkit::promote(
            "bob", "fam", "1.0.0", "prod", "acme", false,
        ));
        let prod_any = event(testkit::promote("bob", "fam", "1.0.0", "prod", "*", false));
        let dev_any = event(testkit::rollback("bob", "fam", "dev", "*", false));
        let prod_catalog = event(testkit::set_catalog("admin", "prod"));
        let registration = event(testkit::publish("mf", "fam", "1.0.0"));
        let own = event(testkit::publish("df", "fam", "1.0.0"));

        let list = grants(&["reader@prod/acme"]);
        let acme = ReadAccess::new(&list, true);
        let seen = |a: &ReadAccess<'_>| {
            [
                &prod_acme,
                &prod_any,
                &dev_any,
                &prod_catalog,
                &registration,
                &own,
            ]
            .map(|e| a.may_read_event(&me, e))
        };
        assert_eq!(seen(&acme), [true, false, false, true, false, true]);
        let list = grants(&["reader@prod"]);
        assert_eq!(
            seen(&ReadAccess::new(&list, true)),
            [true, true, false, true, false, true]
        );
        let list = grants(&["reader@dev"]);
        assert_eq!(
            seen(&ReadAccess::new(&list, true)),
            [false, false, true, false, false, true]
        );
        let list = grants(&["auditor"]);
        assert_eq!(seen(&ReadAccess::new(&list, true)), [true; 6]);
    }
}
