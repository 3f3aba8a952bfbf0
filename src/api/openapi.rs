//! The OpenAPI 3.1 document, derived from the handlers. Every route is registered through
//! utoipa-axum's `routes!`, which takes the handler's `#[utoipa::path]` with it: a route
//! cannot exist without its operation (method, path, parameters, request body, responses).
//! Bodies are named by Rust type; each body type's schema is the JSON contract's `$def` of
//! the same name ([`contract_schema!`]), and the contract's `$defs` become
//! `components.schemas`, so the document and `contracts/mpr_public_contracts_v0.schema.json`
//! cannot disagree. The API tests validate real answers against those `$defs`.
//! `contracts/openapi.json` is a checked-in copy; a test fails when they drift
//! (`mpr openapi > contracts/openapi.json` refreshes it).

use serde_json::{Value, json};

/// The JSON contract, compiled in.
pub const CONTRACT: &str = include_str!("../../contracts/mpr_public_contracts_v0.schema.json");

/// Implements utoipa's schema traits for a body type as a reference to the contract's
/// `$def` of `name`.
macro_rules! contract_schema {
    ($($ty:ty => $name:literal,)*) => {$(
        impl utoipa::PartialSchema for $ty {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::Ref::from_schema_name($name).into()
            }
        }
        impl utoipa::ToSchema for $ty {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed($name)
            }
        }
    )*};
}

contract_schema! {
    crate::api::types::PublishBundleRequest => "PublishBundleRequest",
    crate::api::types::PublishBundleResponse => "PublishBundleResponse",
    crate::api::types::ResolveActiveResponse => "ResolveActiveResponse",
    crate::domain::CommandEnvelope => "CommandEnvelope",
    crate::domain::CommandResult => "CommandResult",
    crate::domain::autopilot::Signal => "Signal",
    crate::domain::state::BundleRecord => "BundleRecord",
    crate::api::commands::CommandMeta => "CommandMeta",
    crate::api::commands::PromoteBody => "PromoteBody",
    crate::api::commands::RollbackBody => "RollbackBody",
    crate::api::commands::SetCatalogBody => "SetCatalogBody",
    crate::api::commands::SetRollbackPolicyBody => "SetRollbackPolicyBody",
    crate::api::commands::CanaryBody => "CanaryBody",
    crate::api::commands::DryRunResponse => "DryRunResponse",
    doc::Health => "Health",
    doc::Readiness => "Readiness",
    doc::BundlePage => "BundlePage",
    doc::HistoryPage => "HistoryPage",
    doc::EventPage => "EventPage",
    doc::ScopeBindings => "ScopeBindings",
    doc::CatalogListing => "CatalogListing",
    doc::Checkpoints => "Checkpoints",
    doc::PendingCommand => "PendingCommand",
    doc::SignalAccepted => "SignalAccepted",
}

/// Names for the bodies a handler builds as JSON rather than from one Rust type: each is a
/// contract `$def`, and the API tests validate the real answers against it
/// (`every_answer_matches_its_contract_schema`).
pub mod doc {
    /// `GET /healthz`.
    #[derive(Debug)]
    pub enum Health {}
    /// `GET /readyz` when ready.
    #[derive(Debug)]
    pub enum Readiness {}
    /// A page of bundle records.
    #[derive(Debug)]
    pub enum BundlePage {}
    /// A page of a scope slot's history.
    #[derive(Debug)]
    pub enum HistoryPage {}
    /// A page of the event log.
    #[derive(Debug)]
    pub enum EventPage {}
    /// A scope's bindings.
    #[derive(Debug)]
    pub enum ScopeBindings {}
    /// The catalog entries a caller may read.
    #[derive(Debug)]
    pub enum CatalogListing {}
    /// Signed checkpoints.
    #[derive(Debug)]
    pub enum Checkpoints {}
    /// 202 of a command.
    #[derive(Debug)]
    pub enum PendingCommand {}
    /// 202 of a signal.
    #[derive(Debug)]
    pub enum SignalAccepted {}
}

fn rewrite_refs(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get_mut("$ref")
                && let Some(rest) = r.strip_prefix("#/$defs/")
            {
                *r = format!("#/components/schemas/{rest}");
            }
            m.values_mut().for_each(rewrite_refs);
        }
        Value::Array(a) => a.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

/// The `default` answer of every operation.
const DEFAULT_ERROR: &str = "Error: an ErrorResponse for every failure, including unknown routes (404), wrong methods (405), malformed bodies, queries and paths (400), bodies over a size limit (413), and on /v1 routes a request over http.request_timeout_ms (504 TIMEOUT) or over http.max_concurrent_requests (503 UNAVAILABLE, retryable, answered at once)";

/// The OpenAPI document: the operations utoipa derived from the handlers, with the
/// contract's `$defs` as `components.schemas`.
pub fn document() -> Value {
    let contract: Value = serde_json::from_str(CONTRACT).expect("the bundled contract is JSON");
    let mut schemas = contract.get("$defs").cloned().unwrap_or_else(|| json!({}));
    rewrite_refs(&mut schemas);
    let mut doc = serde_json::to_value(super::api_doc()).expect("the document serializes");
    // Every operation answers every failure with an ErrorResponse: said once, here.
    if let Some(paths) = doc["paths"].as_object_mut() {
        for op in paths
            .values_mut()
            .filter_map(Value::as_object_mut)
            .flat_map(|m| m.values_mut())
        {
            op["responses"]["default"] = json!({
                "description": DEFAULT_ERROR,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
            });
        }
    }
    doc["openapi"] = json!("3.1.0");
    doc["info"] = json!({
        "title": "MPR: Model/Policy Registry",
        "version": env!("CARGO_PKG_VERSION"),
        "description": "Immutable model and policy bundles, governed lifecycle, deterministic resolution."
    });
    doc["jsonSchemaDialect"] = json!("https://json-schema.org/draft/2020-12/schema");
    doc["components"] = json!({
        "schemas": schemas,
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
    });
    doc
}
