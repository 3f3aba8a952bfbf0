//! The OpenAPI 3.1 document, generated from the route table below and the JSON contract's
//! `$defs` (embedded as `components.schemas`). `contracts/openapi.json` is a checked-in copy;
//! a test fails when they drift (`mpr openapi > contracts/openapi.json` refreshes it).

use serde_json::{Map, Value, json};

/// The JSON contract, compiled in.
pub const CONTRACT: &str = include_str!("../../contracts/mpr_public_contracts_v0.schema.json");

/// One documented route.
struct RouteDoc {
    method: &'static str,
    path: &'static str,
    operation_id: &'static str,
    summary: &'static str,
    /// Request body schema ($def name).
    body: Option<&'static str>,
    /// Success response schema ($def name) and status.
    ok: (&'static str, Option<&'static str>),
    /// Query parameters: (name, required, JSON type).
    query: &'static [(&'static str, bool, &'static str)],
    /// Needs a token.
    auth: bool,
    /// Longer description: what the summary leaves out.
    description: &'static str,
    /// Headers of the success response: (name, description).
    headers: &'static [(&'static str, &'static str)],
}

/// Headers that tell how current the view is (resolve and readiness).
const FRESHNESS: [(&str, &str); 2] = [
    (
        "MPR-View-Lag",
        "Records of the events and catalog logs not yet applied to this replica's view, at the last lag check (absent before the first)",
    ),
    (
        "MPR-View-Age-Ms",
        "Milliseconds since this replica's view last held every record then on the log (absent before it is first known)",
    ),
];

const RESOLVE_HEADERS: &[(&str, &str)] = &[
    (
        "ETag",
        "Digest of the answer's content (bundle, scope, activation) without view_version: unchanged by writes to other scopes",
    ),
    (
        "MPR-View-Version",
        "The view_version the answer was read at (also on a 304)",
    ),
    FRESHNESS[0],
    FRESHNESS[1],
];

/// Headers of the readiness answer: freshness, and the trust mode (MPR2 §8.7).
const READY_HEADERS: &[(&str, &str)] = &[
    FRESHNESS[0],
    FRESHNESS[1],
    (
        "MPR-Trust-Mode",
        "signed (every command and receipt must be signed) or unsigned-dev (unsigned ones accepted; local experiments only)",
    ),
];

const PAGE: &[(&str, bool, &str)] = &[("cursor", false, "string"), ("limit", false, "integer")];

const ROUTES: &[RouteDoc] = &[
    RouteDoc {
        method: "get",
        path: "/healthz",
        operation_id: "get_health",
        summary: "Liveness",
        body: None,
        ok: ("200", None),
        query: &[],
        auth: false,
        description: "",
        headers: &[],
    },
    RouteDoc {
        method: "get",
        path: "/readyz",
        operation_id: "get_ready",
        summary: "Readiness: 200 while the view is kept up to date with the log",
        body: None,
        ok: ("200", None),
        query: &[],
        auth: false,
        description: "200 while this replica's view is kept up to date: caught up with the log's high watermarks at start-up, its applier running, and within http.ready_max_lag_events records (and http.ready_max_age_ms, if set) of the log; 503 UNAVAILABLE naming the reason otherwise, including whenever the view falls behind later. The body and the MPR-Trust-Mode header give the trust mode.",
        headers: READY_HEADERS,
    },
    RouteDoc {
        method: "get",
        path: "/metrics",
        operation_id: "get_metrics",
        summary: "Prometheus metrics (text format)",
        body: None,
        ok: ("200", None),
        query: &[],
        auth: false,
        description: "",
        headers: &[],
    },
    RouteDoc {
        method: "get",
        path: "/openapi.json",
        operation_id: "get_openapi",
        summary: "This document",
        body: None,
        ok: ("200", None),
        query: &[],
        auth: false,
        description: "",
        headers: &[],
    },
    RouteDoc {
        method: "get",
        path: "/v1/resolve",
        operation_id: "get_resolve",
        summary: "Which bundle is ACTIVE for a scope (supports ETag/If-None-Match, min_view_version, as_of_seq, as_of)",
        body: None,
        ok: ("200", Some("ResolveActiveResponse")),
        query: &[
            ("environment", true, "string"),
            ("bundle_id", true, "string"),
            ("tenant_id", false, "string"),
            ("degrade", false, "boolean"),
            ("min_view_version", false, "string"),
            ("as_of_seq", false, "integer"),
            ("as_of", false, "string"),
            ("routing_key", false, "string"),
        ],
        auth: true,
        description: "Every answer (also 304 and errors) carries MPR-View-Lag and MPR-View-Age-Ms so the caller can judge staleness; a replica still catching up at start-up, or whose applier stopped, answers 503 UNAVAILABLE. If-None-Match with the ETag answers 304 while the answer's content is unchanged. Needs a reader, auditor or admin grant (403 FORBIDDEN otherwise, unless http.open_resolve); for a scope outside the grant's environments and tenant the answer is 404 NO_ACTIVE_BUNDLE, the same as for a scope with no binding.",
        headers: RESOLVE_HEADERS,
    },
    RouteDoc {
        method: "get",
        path: "/v1/bundles",
        operation_id: "list_bundles",
        summary: "Bundles, optionally of one family (bundle_id=)",
        body: None,
        ok: ("200", None),
        query: &[
            ("bundle_id", false, "string"),
            ("cursor", false, "string"),
            ("limit", false, "integer"),
        ],
        auth: true,
        description: "",
        headers: &[],
    },
    RouteDoc {
        method: "post",
        path: "/v1/bundles",
        operation_id: "post_publish",
        summary: "Publish a bundle with its PASS gate receipt",
        body: Some("PublishBundleRequest"),
        ok: ("201", Some("PublishBundleResponse")),
        query: &[],
        auth: true,
        description: "The receipt must be signed by a live key registered for its gate_name (GATE_RECEIPT_UNVERIFIED, 422, otherwise; MPR2 §8.4).",
        headers: &[],
    },
    RouteDoc {
        method: "get",
        path: "/v1/bundles/{bundle_id}",
        operation_id: "list_family",
        summary: "The versions of one family",
        body: None,
        ok: ("200", None),
        query: PAGE,
        auth: true,
        description: "",
        headers: &[],
    },
    RouteDoc {
        method: "get",
        path: "/v1/bundles/{bundle_id}/versions/{version}",
        operation_id: "get_bundle",
        summary: "One bundle version and its lifecycle state",
        body: None,
        ok: ("200", None),
        query: &[],
        auth: true,
        description: "",
        headers: &[],
    },
    RouteDoc {
        method: "post",
        path: "/v1/bundles/{bundle_id}/versions/{version}/{action}",
        operation_id: "post_lifecycle",
        summary: "nominate, approve, reject or retire",
        body: None,
        ok: ("200", Some("CommandResult")),
        query: &[],
        auth: true,
        description: "",
        headers: &[],
    },
    RouteDoc {
        method: "post",
        path: "/v1/promotions",
        operation_id: "post_promote",
        summary: "Promote an APPROVED bundle into a scope slot",
        body: None,
        ok: ("200", Some("CommandResult")),
        query: &[],
        auth: true,
        description: "",
        headers: &[],
    },
    RouteDoc {
        method: "post",
        path: "/v1/rollbacks",
        operation_id: "post_rollback",
        summary: "Roll a scope slot back to its previous bundle",
        body: None,
        ok: ("200", Some("CommandResult")),
        query: &[],
        auth: true,
        description: "",
        headers: &[],
    },
    RouteDoc {
        method: "put",
        path: "/v1/policies/{bundle_id}/{environment}",
        operation_id: "put_policy",
        summary: "SET_ROLLBACK_POLICY: set (or, with policy null, clear) a scope's rollback policy",
        body: Some("SetRollbackPolicy"),
        ok: ("200", Some("CommandResult")),
        query: &[],
        auth: true,
        description: "Deployer (in that environment) or admin. The body may name tenant_id (default *), reason and command_id; bundle_id and environment come from the path (MPR2 §9.3).",
        headers: &[],
    },
    RouteDoc {
        method: "post",
        path: "/v1/canaries/{bundle_id}/{environment}/{action}",
        operation_id: "post_canary",
        summary: "share (CANARY_SET_SHARE, body share_bp), complete (CANARY_COMPLETE) or abort (CANARY_ABORT)",
        body: None,
        ok: ("200", Some("CommandResult")),
        query: &[],
        auth: true,
        description: "Deployer (in that environment) or admin. A canary is started by POST /v1/promotions with canary_share_bp. NO_CANARY (409) when the scope runs none (MPR2 §9.6).",
        headers: &[],
    },
    RouteDoc {
        method: "post",
        path: "/v1/signals",
        operation_id: "post_signal",
        summary: "Send one runtime signal for the token's actor (observer role)",
        body: Some("Signal"),
        ok: ("202", None),
        query: &[],
        auth: true,
        description: "The API gateway signs it for the token's actor and writes it to the signals topic; actor defaults to the token's and signal_id to a new UUID. 403 FORBIDDEN without the observer role in the signal's environment. Counted when the signal intake forwards it (MPR2 §9.1).",
        headers: &[],
    },
    RouteDoc {
        method: "put",
        path: "/v1/catalog/{environment}",
        operation_id: "put_catalog",
        summary: "Replace one environment's platform catalog entry",
        body: None,
        ok: ("200", Some("CommandResult")),
        query: &[],
        auth: true,
        description: "",
        headers: &[],
    },
    RouteDoc {
        method: "get",
        path: "/v1/audit/checkpoints",
        operation_id: "get_checkpoints",
        summary: "Signed checkpoints of the log heads this replica's view has applied",
        body: None,
        ok: ("200", None),
        query: &[],
        auth: true,
        description: "One C2SP signed note per events partition and one of the catalog log (origin mpr/<topic>/<partition>, the head's seq, the base64 head hash), signed by the registry key under the name mpr-registry. Check one later with mpr verify-audit --checkpoint FILE. Needs a grant that reads everything (an unlimited reader, auditor or admin); a scoped token gets 403 FORBIDDEN.",
        headers: &[],
    },
    RouteDoc {
        method: "get",
        path: "/v1/catalog",
        operation_id: "get_catalog",
        summary: "The platform catalog",
        body: None,
        ok: ("200", None),
        query: &[],
        auth: true,
        description: "Only the entries of environments the caller's grants cover.",
        headers: &[],
    },
    RouteDoc {
        method: "post",
        path: "/v1/commands",
        operation_id: "post_command",
        summary: "Any command; waits for its result or answers 202 with the command_id",
        body: Some("CommandEnvelope"),
        ok: ("200", Some("CommandResult")),
        query: &[],
        auth: true,
        description: "Any command type, including the admin key commands REGISTER_KEY and REVOKE_KEY. The API signs the command with its gateway key for the token's actor (MPR2 §8.2); the event records signed_by and via api-gateway. Refused before anything is produced when the encoded command exceeds 262144 bytes (413 INVALID_PAYLOAD) or would not decode from the log (400). After http.command_timeout_ms without a result: 202 with the command_id to poll. Trust refusals: UNAUTHENTICATED 401, UNKNOWN_KEY 404, GATE_MISSING 409, GATE_RECEIPT_UNVERIFIED 422.",
        headers: &[],
    },
    RouteDoc {
        method: "get",
        path: "/v1/commands/{command_id}",
        operation_id: "get_command_result",
        summary: "A command's result",
        body: None,
        ok: ("200", Some("CommandResult")),
        query: &[("wait_ms", false, "integer")],
        auth: true,
        description: "Without wait_ms, no result yet answers 503 UNAVAILABLE (retryable). With wait_ms, waits up to that many ms (at most http.command_timeout_ms) for the result, then answers 504 TIMEOUT (retryable). A result whose event lies outside the caller's read scope, of a command the caller did not issue, is answered as a result that does not exist.",
        headers: &[],
    },
    RouteDoc {
        method: "get",
        path: "/v1/scopes/{environment}/{tenant_id}/{bundle_id}",
        operation_id: "get_scope",
        summary: "A scope's bindings (primary and degrade)",
        body: None,
        ok: ("200", None),
        query: &[],
        auth: true,
        description: "Outside the caller's read scope bindings is empty, the same as for a scope with no binding.",
        headers: &[],
    },
    RouteDoc {
        method: "get",
        path: "/v1/scopes/{environment}/{tenant_id}/{bundle_id}/history",
        operation_id: "get_scope_history",
        summary: "A scope slot's activation history",
        body: None,
        ok: ("200", None),
        query: &[
            ("slot", false, "string"),
            ("cursor", false, "string"),
            ("limit", false, "integer"),
        ],
        auth: true,
        description: "Outside the caller's read scope an empty page, the same as for a scope with no history.",
        headers: &[],
    },
    RouteDoc {
        method: "get",
        path: "/v1/events",
        operation_id: "list_events",
        summary: "The event log, filtered by bundle, scope and type",
        body: None,
        ok: ("200", None),
        query: &[
            ("bundle_id", false, "string"),
            ("event_type", false, "string"),
            ("environment", false, "string"),
            ("tenant_id", false, "string"),
            ("automated", false, "boolean"),
            ("cursor", false, "string"),
            ("limit", false, "integer"),
        ],
        auth: true,
        description: "At most 10000 events are read per request, matching or not: a filter that matches little may answer fewer than limit items; at_end tells whether the scan reached the end of the log, and next_cursor (always present after the first event) continues after the last event read. Only events inside the caller's read scope are listed: a limited grant sees the events of its scopes and the catalog events of its environments, and the events of commands the caller issued; events tied to no environment (bundle registrations and lifecycle changes) need an unlimited grant or auditor.",
        headers: &[],
    },
];

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

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// The OpenAPI document.
pub fn document() -> Value {
    let contract: Value = serde_json::from_str(CONTRACT).expect("the bundled contract is JSON");
    let mut schemas = contract.get("$defs").cloned().unwrap_or_else(|| json!({}));
    rewrite_refs(&mut schemas);
    let mut paths = Map::new();
    for r in ROUTES {
        let mut params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        params.extend(r.query.iter().map(|(name, req, ty)| json!({"name": name, "in": "query", "required": req, "schema": {"type": ty}})));
        let ok_content = r.ok.1.map_or_else(
            || json!({}),
            |s| json!({"application/json": {"schema": schema_ref(s)}}),
        );
        let mut responses = Map::new();
        let mut ok = json!({"description": "Success", "content": ok_content});
        if !r.headers.is_empty() {
            let headers: Map<String, Value> = r
                .headers
                .iter()
                .map(|(name, d)| {
                    (
                        (*name).to_owned(),
                        json!({"description": d, "schema": {"type": "string"}}),
                    )
                })
                .collect();
            ok["headers"] = Value::Object(headers);
        }
        responses.insert(r.ok.0.into(), ok);
        let err = json!({"description": "Error: an ErrorResponse for every failure, including unknown routes (404), wrong methods (405), malformed bodies, queries and paths (400), bodies over a size limit (413), and on /v1 routes a request over http.request_timeout_ms (504 TIMEOUT) or over http.max_concurrent_requests (503 UNAVAILABLE, retryable, answered at once)", "content": {"application/json": {"schema": schema_ref("ErrorResponse")}}});
        responses.insert("default".into(), err);
        let mut op = json!({
            "operationId": r.operation_id,
            "summary": r.summary,
            "parameters": params,
            "responses": responses,
        });
        if let Some(b) = r.body {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": schema_ref(b)}}});
        }
        if r.auth {
            op["security"] = json!([{"bearer": []}]);
        }
        if !r.description.is_empty() {
            op["description"] = json!(r.description);
        }
        let entry = paths.entry(r.path.to_owned()).or_insert_with(|| json!({}));
        entry[r.method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "MPR: Model/Policy Registry",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Immutable model and policy bundles, governed lifecycle, deterministic resolution."
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        }
    })
}
