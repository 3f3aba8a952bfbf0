//! Deterministic resolution: which bundle a scope serves, by a fixed order of rules and
//! never by time. Works over any binding source (the in-memory state or the view).

use serde::{Deserialize, Serialize};

use super::error::{ErrorCode, Rejection};
use super::ids::{BundleId, Environment, Slot, TenantId};

/// The rule that produced an answer, in the order they are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MatchedRule {
    /// 1a. Degrade slot of the tenant scope.
    DegradeTenant,
    /// 1b. Degrade slot of the `*` scope.
    DegradeGlobal,
    /// 2. Primary slot of the tenant scope.
    Tenant,
    /// 3. Primary slot of the `*` scope.
    Global,
}

impl MatchedRule {
    /// Stable wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchedRule::DegradeTenant => "DEGRADE_TENANT",
            MatchedRule::DegradeGlobal => "DEGRADE_GLOBAL",
            MatchedRule::Tenant => "TENANT",
            MatchedRule::Global => "GLOBAL",
        }
    }
}

/// What the Decision Fabric asks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ResolveQuery {
    /// Environment.
    pub environment: Environment,
    /// Family.
    pub bundle_id: BundleId,
    /// Tenant; absent or `*` means only the `*` scope is consulted.
    pub tenant_id: Option<TenantId>,
    /// Whether degrade mode is requested.
    pub degrade: bool,
    /// A request, user or account id: when the matched scope runs a canary, the key's
    /// stable slice decides whether it is answered the canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_key: Option<String>,
}

/// The candidate slots for `q`, in rule order: `(rule, tenant, slot)`.
pub fn candidates(q: &ResolveQuery) -> Vec<(MatchedRule, TenantId, Slot)> {
    let tenant = q.tenant_id.clone().filter(|t| !t.is_any());
    let mut out = Vec::with_capacity(4);
    if q.degrade {
        if let Some(t) = &tenant {
            out.push((MatchedRule::DegradeTenant, t.clone(), Slot::Degrade));
        }
        out.push((MatchedRule::DegradeGlobal, TenantId::any(), Slot::Degrade));
    }
    if let Some(t) = tenant {
        out.push((MatchedRule::Tenant, t, Slot::Primary));
    }
    out.push((MatchedRule::Global, TenantId::any(), Slot::Primary));
    out
}

/// A hit: the rule, the tenant and slot that matched, and what the lookup returned.
pub type Hit<B> = (MatchedRule, TenantId, Slot, B);

/// Tries the candidates in order with `lookup(tenant, slot)`; the first hit wins.
pub fn resolve<B, E>(
    q: &ResolveQuery,
    mut lookup: impl FnMut(&TenantId, Slot) -> Result<Option<B>, E>,
) -> Result<Result<Hit<B>, Rejection>, E> {
    for (rule, tenant, slot) in candidates(q) {
        if let Some(b) = lookup(&tenant, slot)? {
            return Ok(Ok((rule, tenant, slot, b)));
        }
    }
    Ok(Err(no_active_bundle(q)))
}

/// The canary of a scope whose PRIMARY answered `q`, from its CANARY slot record: the
/// canary's version and share, and whether `q`'s routing key falls inside its slice. The
/// one home of that rule: the view and the conformance runner both call it.
pub fn pick_canary(
    q: &ResolveQuery,
    tenant: &TenantId,
    canary_slot: Option<&super::state::SlotRecord>,
) -> Option<(super::ids::BundleVersion, u32, bool)> {
    let rec = canary_slot?;
    let (v, info) = (rec.bound()?, rec.canary.as_ref()?);
    let served = q.routing_key.as_deref().is_some_and(|k| {
        super::autopilot::canary_slice(&q.environment, tenant, &q.bundle_id, &info.activation, k)
            < info.share_bp
    });
    Some((v.clone(), info.share_bp, served))
}

/// The NO_ACTIVE_BUNDLE answer to `q`: when no candidate slot binds a bundle, and also
/// when the caller may not see the scope, so the two cannot be told apart.
pub fn no_active_bundle(q: &ResolveQuery) -> Rejection {
    Rejection::new(
        ErrorCode::NoActiveBundle,
        format!(
            "no ACTIVE bundle for {} in environment {} (tenant {}, degrade {})",
            q.bundle_id,
            q.environment,
            q.tenant_id.as_ref().map_or("*", TenantId::as_str),
            q.degrade
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_order_is_fixed() {
        let q = ResolveQuery {
            environment: "prod".parse().unwrap(),
            bundle_id: "fraud".parse().unwrap(),
            tenant_id: Some("acme".parse().unwrap()),
            degrade: true,
            routing_key: None,
        };
        let rules: Vec<_> = candidates(&q).into_iter().map(|c| c.0).collect();
        assert_eq!(
            rules,
            [
                MatchedRule::DegradeTenant,
                MatchedRule::DegradeGlobal,
                MatchedRule::Tenant,
                MatchedRule::Global
            ]
        );
    }
}
