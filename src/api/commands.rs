//! Command routes. `POST /v1/commands` takes any command; typed routes cover publish,
//! lifecycle steps, promote, rollback and catalog changes. The actor always comes from the
//! token. Each route checks the role, produces the command to `commands`, then waits (up
//! to the configured timeout) for the view to hold its result: 2xx or the typed error, or
//! 202 with the command_id to poll.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, status_of};
use super::extract::{Json as JsonBody, OptionalJson, Path};
use super::types::{PublishBundleRequest, PublishBundleResponse, PublishStatus};
use crate::config::KafkaConfig;
use crate::domain::autopilot::Signal;
use crate::domain::bundle::limits::MAX_COMMAND_BYTES;
use crate::domain::event::{CommandResult, Outcome};
use crate::domain::trust::{SIGNATURE_HEADER, Signer};
use crate::domain::{CommandEnvelope, CommandType, ErrorCode};
use crate::log::{Topics, producer_config};

/// Where the API sends commands.
pub trait CommandSink: Send + Sync {
    /// Makes the command durable on the `commands` log.
    fn submit<'a>(
        &'a self,
        env: &'a CommandEnvelope,
    ) -> Pin<Box<dyn Future<Output = Result<(), ApiError>> + Send + 'a>>;

    /// Makes a runtime signal durable on the `signals` log.
    fn submit_signal<'a>(
        &'a self,
        signal: &'a Signal,
    ) -> Pin<Box<dyn Future<Output = Result<(), ApiError>> + Send + 'a>> {
        let _ = signal;
        Box::pin(async {
            Err(ApiError::new(
                ErrorCode::Unavailable,
                "this registry has no signals log",
            ))
        })
    }
}

/// Produces commands to Kafka, Avro-encoded, keyed by bundle_id, each signed by the API
/// gateway's key for the token's actor (the envelope's `actor`).
pub struct KafkaSink {
    producer: crate::log::producer::Producer,
    topic: String,
    signals: String,
    gateway: Signer,
}

impl KafkaSink {
    /// A producer for `cfg`, signing with `gateway`.
    pub fn new(cfg: &KafkaConfig, gateway: Signer) -> Result<Self, crate::log::LogError> {
        Ok(Self {
            producer: crate::log::producer::Producer::new(&producer_config(cfg))?,
            topic: Topics::new(&cfg.topic_prefix).commands,
            signals: Topics::new(&cfg.topic_prefix).signals,
            gateway,
        })
    }
}

impl CommandSink for KafkaSink {
    fn submit_signal<'a>(
        &'a self,
        signal: &'a Signal,
    ) -> Pin<Box<dyn Future<Output = Result<(), ApiError>> + Send + 'a>> {
        Box::pin(async move {
            let v = serde_json::to_value(signal).map_err(ApiError::internal)?;
            let sig = crate::codec::sign_json_signal(&v, &self.gateway);
            let bytes = serde_json::to_vec(&v).map_err(ApiError::internal)?;
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: SIGNATURE_HEADER,
                    value: Some(&sig),
                })
                .insert(Header {
                    key: "content-type",
                    value: Some(crate::codec::CONTENT_TYPE_JSON),
                });
            let rec = FutureRecord::to(&self.signals)
                .key(signal.bundle_id.as_str())
                .payload(&bytes)
                .headers(headers);
            self.producer
                .send(rec, Duration::from_secs(10))
                .await
                .map(|_| ())
                .map_err(|e| {
                    ApiError::new(
                        ErrorCode::Unavailable,
                        format!("could not write the signal to the log: {e}"),
                    )
                })
        })
    }

    fn submit<'a>(
        &'a self,
        env: &'a CommandEnvelope,
    ) -> Pin<Box<dyn Future<Output = Result<(), ApiError>> + Send + 'a>> {
        Box::pin(async move {
            let key = env.command.partition_key().to_owned();
            let json = env.command.json_only();
            let (bytes, signature) = if json {
                let v = serde_json::to_value(env).map_err(ApiError::internal)?;
                let sig = crate::codec::sign_json_command(&v, &self.gateway);
                (serde_json::to_vec(&v).map_err(ApiError::internal)?, sig)
            } else {
                crate::codec::sign_avro_command(env, &self.gateway)
            };
            // Avro single-object encoding identifies itself; the one header is the
            // signature (the broker stores each header as a row of its own). JSON says so.
            let mut headers = OwnedHeaders::new().insert(Header {
                key: SIGNATURE_HEADER,
                value: Some(&signature),
            });
            if json {
                headers = headers.insert(Header {
                    key: "content-type",
                    value: Some(crate::codec::CONTENT_TYPE_JSON),
                });
            }
            let rec = FutureRecord::to(&self.topic)
                .key(&key)
                .payload(&bytes)
                .headers(headers);
            self.producer
                .send(rec, Duration::from_secs(10))
                .await
                .map(|_| ())
                .map_err(|e| {
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageSizeTooLarge) {
                        // Resending it unchanged cannot help.
                        ApiError::new(
                            ErrorCode::InvalidPayload,
                            format!("the broker refused the command's record as too large: {e}"),
                        )
                        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
                    } else {
                        ApiError::new(
                            ErrorCode::Unavailable,
                            format!("could not write the command to the log: {e}"),
                        )
                    }
                })
        })
    }
}

/// Command routes, each with its OpenAPI operation.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(post_command))
        .routes(routes!(post_publish))
        .routes(routes!(post_lifecycle))
        .routes(routes!(post_promote))
        .routes(routes!(post_promote_dry_run))
        .routes(routes!(post_rollback))
        .routes(routes!(put_catalog))
        .routes(routes!(put_policy))
        .routes(routes!(post_canary))
        .routes(routes!(post_signal))
}

#[utoipa::path(
    put,
    path = "/v1/policies/{bundle_id}/{environment}",
    operation_id = "put_policy",
    summary = "SET_ROLLBACK_POLICY: set (or, with policy null, clear) a scope's rollback policy",
    description = "Deployer (in that environment) or admin. The body may name tenant_id (default *), reason and command_id; bundle_id and environment come from the path (MPR2 §9.3).",
    params(
        ("bundle_id" = String, Path, description = "Family"),
        ("environment" = String, Path, description = "Environment"),
    ),
    request_body(content = crate::api::commands::SetRollbackPolicyBody, description = "The policy (null clears it), the tenant, and optional command_id and reason", content_type = "application/json"),
    responses(
        (status = 200, description = "Success", body = crate::domain::CommandResult),
        (status = 202, description = "On the log, result not in the view within the command timeout: poll it", body = crate::api::openapi::doc::PendingCommand),
    ),
    security(("bearer" = [])),
)]
async fn put_policy(
    State(s): State<AppState>,
    h: HeaderMap,
    Path((bundle_id, environment)): Path<(String, String)>,
    JsonBody(SetRollbackPolicyBody(mut body)): JsonBody<SetRollbackPolicyBody>,
) -> Response {
    body.payload.insert("bundle_id".into(), json!(bundle_id));
    body.payload
        .insert("environment".into(), json!(environment));
    body.payload.entry("policy").or_insert(Value::Null);
    post_typed(s, h, "SET_ROLLBACK_POLICY", body).await
}

#[utoipa::path(
    post,
    path = "/v1/canaries/{bundle_id}/{environment}/{action}",
    operation_id = "post_canary",
    summary = "share (CANARY_SET_SHARE, body share_bp), complete (CANARY_COMPLETE) or abort (CANARY_ABORT)",
    description = "Deployer (in that environment) or admin. A canary is started by POST /v1/promotions with canary_share_bp. NO_CANARY (409) when the scope runs none (MPR2 §9.6).",
    params(
        ("bundle_id" = String, Path, description = "Family"),
        ("environment" = String, Path, description = "Environment"),
        ("action" = String, Path, description = "share, complete or abort"),
    ),
    request_body(content = Option<crate::api::commands::CanaryBody>, description = "Optional except for share (share_bp)", content_type = "application/json"),
    responses(
        (status = 200, description = "Success", body = crate::domain::CommandResult),
        (status = 202, description = "On the log, result not in the view within the command timeout: poll it", body = crate::api::openapi::doc::PendingCommand),
    ),
    security(("bearer" = [])),
)]
async fn post_canary(
    State(s): State<AppState>,
    h: HeaderMap,
    Path((bundle_id, environment, action)): Path<(String, String, String)>,
    OptionalJson(CanaryBody(mut body)): OptionalJson<CanaryBody>,
) -> Response {
    let command_type = match action.as_str() {
        "share" => "CANARY_SET_SHARE",
        "complete" => "CANARY_COMPLETE",
        "abort" => "CANARY_ABORT",
        other => {
            return ApiError::new(
                ErrorCode::InvalidPayload,
                format!("unknown canary action {other:?}; expected share, complete or abort"),
            )
            .into_response();
        }
    };
    body.payload.insert("bundle_id".into(), json!(bundle_id));
    body.payload
        .insert("environment".into(), json!(environment));
    post_typed(s, h, command_type, body).await
}

/// `POST /v1/signals`: one runtime signal, sent for the token's actor (who needs the
/// `observer` role in its environment), signed by the API gateway and written to
/// `signals`. 202: the autopilot counts it when the intake forwards it.
#[utoipa::path(
    post,
    path = "/v1/signals",
    operation_id = "post_signal",
    summary = "Send one runtime signal for the token's actor (observer role)",
    description = "The API gateway signs it for the token's actor and writes it to the signals topic; actor defaults to the token's and signal_id to a new UUID. 403 FORBIDDEN without the observer role in the signal's environment. Counted when the signal intake forwards it (MPR2 §9.1).",
    request_body(content = crate::domain::autopilot::Signal, description = "One runtime signal (actor and signal_id default from the token and a fresh id)", content_type = "application/json"),
    responses(
        (status = 202, description = "Success", body = crate::api::openapi::doc::SignalAccepted),
    ),
    security(("bearer" = [])),
)]
async fn post_signal(State(s): State<AppState>, h: HeaderMap, body: JsonBody<Value>) -> Response {
    let inner = async {
        let p = s.principal(&h)?;
        let mut v = body.0;
        if let Some(o) = v.as_object_mut() {
            o.entry("actor").or_insert(json!(p.actor));
            o.entry("signal_id").or_insert(json!(uuid::Uuid::new_v4()));
        }
        let signal: Signal = serde_json::from_value(v).map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidPayload,
                format!("signal does not match the contract: {e}"),
            )
        })?;
        if signal.actor != p.actor {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "actor is set from the token ({}); the body may not name another",
                    p.actor
                ),
            ));
        }
        signal.validate().map_err(ApiError::from)?;
        if !s.grants.allows(
            &p.actor,
            crate::domain::Role::Observer,
            Some(&signal.environment),
        ) {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "actor {} lacks role observer in environment {}",
                    p.actor, signal.environment
                ),
            ));
        }
        s.sink.submit_signal(&signal).await?;
        Ok((
            StatusCode::ACCEPTED,
            Json(json!({"signal_id": signal.signal_id, "status": "ACCEPTED"})),
        )
            .into_response())
    };
    inner.await.unwrap_or_else(IntoResponse::into_response)
}

/// Optional fields every typed route accepts; the whole optional body of the lifecycle and
/// canary complete/abort routes (contract `CommandMeta`).
#[derive(Debug, Default, Deserialize)]
pub struct CommandMeta {
    #[serde(default)]
    command_id: Option<uuid::Uuid>,
    #[serde(default)]
    reason: Option<String>,
}

async fn submit_and_wait(
    s: &AppState,
    env: CommandEnvelope,
) -> Result<(Option<CommandResult>, CommandEnvelope), ApiError> {
    if matches!(env.command, crate::domain::Command::Observe(_)) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "OBSERVE comes from the registry's signal intake only; send signals to POST /v1/signals or the signals topic",
        ));
    }
    s.grants
        .authorize(&env.actor, &env.command)
        .map_err(ApiError::from)?;
    env.validate().map_err(ApiError::from)?;
    tracing::info!(command_id = %env.command_id, command_type = env.command.command_type().as_str(), actor = %env.actor, "command submitted");
    check_encodable(&env)?;
    let id = env.command_id;
    if let Some(r) = s.existing_result(id, &env.actor).await? {
        return Ok((Some(r), env));
    }
    s.sink.submit(&env).await?;
    let r = s
        .wait_result(id, Duration::from_millis(s.http.command_timeout_ms))
        .await?;
    Ok((r, env))
}

/// Refuses, before anything is produced, what the processor would refuse on reading the
/// command's record: more than [`MAX_COMMAND_BYTES`] encoded (413 `INVALID_PAYLOAD`), or
/// a record that does not decode (400, the decoder's code). The processor dead-letters
/// such a record, without a result when it cannot read the command_id, so a command the
/// API produced could otherwise stay unanswered.
pub fn check_encodable(env: &CommandEnvelope) -> Result<(), ApiError> {
    let bytes = if env.command.json_only() {
        serde_json::to_vec(env).map_err(ApiError::internal)?
    } else {
        crate::codec::avro::encode_command(env)
    };
    if bytes.len() > MAX_COMMAND_BYTES {
        return Err(ApiError::new(
            ErrorCode::InvalidPayload,
            format!(
                "the command is {} bytes encoded; the limit is {MAX_COMMAND_BYTES}",
                bytes.len()
            ),
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
        .with_details(json!({"size_bytes": bytes.len(), "limit_bytes": MAX_COMMAND_BYTES})));
    }
    let ct = env
        .command
        .json_only()
        .then_some(crate::codec::CONTENT_TYPE_JSON);
    crate::codec::decode_command(&bytes, ct).map_err(|e| {
        ApiError::new(
            e.code,
            format!("the command would not decode from the log: {}", e.message),
        )
    })?;
    Ok(())
}

fn answer(result: Option<CommandResult>, env: &CommandEnvelope, s: &AppState) -> Response {
    let Some(r) = result else {
        return (
            StatusCode::ACCEPTED,
            Json(json!({"command_id": env.command_id, "status": "PENDING", "poll": format!("/v1/commands/{}", env.command_id)})),
        )
            .into_response();
    };
    let view_version = s.view.version().token();
    match &r.error {
        Some(e) => {
            let body = super::types::ErrorResponse {
                code: e.code,
                message: e.message.clone(),
                retryable: e.retryable,
                details: Some(json!({"result": r, "view_version": view_version})),
            };
            (status_of(e.code), Json(body)).into_response()
        }
        None => {
            let status =
                if r.outcome == Outcome::Accepted && r.command_type == Some(CommandType::Publish) {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
            let mut body = json!(r);
            body["view_version"] = json!(view_version);
            (status, Json(body)).into_response()
        }
    }
}

async fn run(s: &AppState, h: &HeaderMap, body: Value) -> Result<Response, ApiError> {
    let p = s.principal(h)?;
    let env = super::envelope_for(&p, body)?;
    let (r, env) = submit_and_wait(s, env).await?;
    Ok(answer(r, &env, s))
}

#[utoipa::path(
    post,
    path = "/v1/commands",
    operation_id = "post_command",
    summary = "Any command; waits for its result or answers 202 with the command_id",
    description = "Any command type, including the admin key commands REGISTER_KEY and REVOKE_KEY. The API signs the command with its gateway key for the token's actor (MPR2 §8.2); the event records signed_by and via api-gateway. Refused before anything is produced when the encoded command exceeds 262144 bytes (413 INVALID_PAYLOAD) or would not decode from the log (400). After http.command_timeout_ms without a result: 202 with the command_id to poll. Trust refusals: UNAUTHENTICATED 401, UNKNOWN_KEY 404, GATE_MISSING 409, GATE_RECEIPT_UNVERIFIED 422.",
    request_body(content = crate::domain::CommandEnvelope, description = "Any command envelope; actor comes from the token", content_type = "application/json"),
    responses(
        (status = 200, description = "Success", body = crate::domain::CommandResult),
        (status = 202, description = "On the log, result not in the view within the command timeout: poll it", body = crate::api::openapi::doc::PendingCommand),
    ),
    security(("bearer" = [])),
)]
async fn post_command(State(s): State<AppState>, h: HeaderMap, body: JsonBody<Value>) -> Response {
    run(&s, &h, body.0)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

#[utoipa::path(
    post,
    path = "/v1/bundles",
    operation_id = "post_publish",
    summary = "Publish a bundle with its PASS gate receipt",
    description = "The receipt must be signed by a live key registered for its gate_name (GATE_RECEIPT_UNVERIFIED, 422, otherwise; MPR2 §8.4).",
    request_body(content = crate::api::types::PublishBundleRequest, description = "The bundle and its PASS gate receipt", content_type = "application/json"),
    responses(
        (status = 201, description = "Success", body = crate::api::types::PublishBundleResponse),
        (status = 200, description = "Already registered with the same digest (DUPLICATE), or the refusal as a result", body = crate::api::types::PublishBundleResponse),
        (status = 202, description = "On the log, result not in the view within the command timeout: poll it", body = crate::api::openapi::doc::PendingCommand),
    ),
    security(("bearer" = [])),
)]
async fn post_publish(State(s): State<AppState>, h: HeaderMap, body: JsonBody<Value>) -> Response {
    let inner = async {
        let p = s.principal(&h)?;
        let req: PublishBundleRequest = serde_json::from_value(body.0).map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidPayload,
                format!("publish request does not match the contract: {e}"),
            )
        })?;
        if req.submitted_by.as_ref().is_some_and(|a| a != &p.actor) {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "submitted_by is set from the token ({}); the body may not name another",
                    p.actor
                ),
            ));
        }
        let env = CommandEnvelope {
            command_id: req.command_id,
            actor: p.actor.clone(),
            submitted_at_utc: req.submitted_at_utc,
            reason: req.reason,
            command: crate::domain::Command::Publish(crate::domain::command::PublishBundle {
                bundle: req.bundle.clone(),
                gate_receipt: req.gate_receipt,
            }),
        };
        let (r, env) = submit_and_wait(&s, env).await?;
        let Some(r) = r else {
            return Ok(answer(None, &env, &s));
        };
        let status = match r.outcome {
            Outcome::Accepted => PublishStatus::Accepted,
            Outcome::Duplicate | Outcome::Noop => PublishStatus::Duplicate,
            Outcome::Rejected => PublishStatus::Rejected,
        };
        let body = PublishBundleResponse {
            command_id: r.command_id,
            bundle_id: req.bundle.bundle_id.clone(),
            bundle_version: req.bundle.bundle_version.to_string(),
            bundle_digest: r.bundle_digest.clone(),
            status,
            lifecycle_state: r.lifecycle_state,
            event_id: r.event_id,
            seq: r.seq,
            error: r.error.clone(),
        };
        if let Some(e) = &r.error {
            let err = ApiError::from(e.clone()).with_details(json!({"result": body}));
            return Ok(err.into_response());
        }
        let code = if status == PublishStatus::Accepted {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok((code, Json(body)).into_response())
    };
    inner.await.unwrap_or_else(IntoResponse::into_response)
}

fn typed(command_type: &str, payload: Value, meta: CommandMeta) -> Value {
    let mut v = json!({"command_type": command_type, "payload": payload});
    if let Some(id) = meta.command_id {
        v["command_id"] = json!(id);
    }
    if let Some(r) = meta.reason {
        v["reason"] = json!(r);
    }
    v
}

#[utoipa::path(
    post,
    path = "/v1/bundles/{bundle_id}/versions/{version}/{action}",
    operation_id = "post_lifecycle",
    summary = "nominate, approve, reject or retire",
    params(
        ("bundle_id" = String, Path, description = "Family"),
        ("version" = String, Path, description = "Bundle version"),
        ("action" = String, Path, description = "nominate, approve, reject or retire"),
    ),
    request_body(content = Option<crate::api::commands::CommandMeta>, description = "Optional: an idempotency key and a reason", content_type = "application/json"),
    responses(
        (status = 200, description = "Success", body = crate::domain::CommandResult),
        (status = 202, description = "On the log, result not in the view within the command timeout: poll it", body = crate::api::openapi::doc::PendingCommand),
    ),
    security(("bearer" = [])),
)]
async fn post_lifecycle(
    State(s): State<AppState>,
    h: HeaderMap,
    Path((bundle_id, version, action)): Path<(String, String, String)>,
    OptionalJson(meta): OptionalJson<CommandMeta>,
) -> Response {
    let command_type = match action.as_str() {
        "nominate" => "NOMINATE",
        "approve" => "APPROVE",
        "reject" => "REJECT",
        "retire" => "RETIRE",
        other => {
            return ApiError::new(
                ErrorCode::InvalidPayload,
                format!("unknown action {other:?}; expected nominate, approve, reject or retire"),
            )
            .into_response();
        }
    };
    let payload = json!({"bundle_id": bundle_id, "bundle_version": version});
    let v = typed(command_type, payload, meta);
    run(&s, &h, v)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// Body of a typed route: the command payload plus optional meta.
#[derive(Debug, Default, Deserialize)]
struct WithMeta {
    #[serde(default)]
    command_id: Option<uuid::Uuid>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(flatten)]
    payload: serde_json::Map<String, Value>,
}

/// One body type per typed route, each the contract `$def` of its name (MPR3-Q-02): the
/// route's payload fields plus optional `command_id` and `reason`.
macro_rules! typed_bodies {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Default, Deserialize)]
        #[serde(transparent)]
        pub struct $name(WithMeta);
    )*};
}

typed_bodies! {
    /// Body of `POST /v1/promotions` and `POST /v1/promotions/dry-run`.
    PromoteBody;
    /// Body of `POST /v1/rollbacks`.
    RollbackBody;
    /// Body of `PUT /v1/catalog/{environment}`.
    SetCatalogBody;
    /// Body of `PUT /v1/policies/{bundle_id}/{environment}`.
    SetRollbackPolicyBody;
    /// Body of `POST /v1/canaries/{bundle_id}/{environment}/{action}`.
    CanaryBody;
}

async fn post_typed(s: AppState, h: HeaderMap, command_type: &str, body: WithMeta) -> Response {
    let meta = CommandMeta {
        command_id: body.command_id,
        reason: body.reason,
    };
    let v = typed(command_type, Value::Object(body.payload), meta);
    run(&s, &h, v)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

#[utoipa::path(
    post,
    path = "/v1/promotions",
    operation_id = "post_promote",
    summary = "Promote an APPROVED bundle into a scope slot",
    request_body(content = crate::api::commands::PromoteBody, description = "The scope to promote into, and optional command_id and reason", content_type = "application/json"),
    responses(
        (status = 200, description = "Success", body = crate::domain::CommandResult),
        (status = 202, description = "On the log, result not in the view within the command timeout: poll it", body = crate::api::openapi::doc::PendingCommand),
    ),
    security(("bearer" = [])),
)]
async fn post_promote(
    State(s): State<AppState>,
    h: HeaderMap,
    JsonBody(PromoteBody(body)): JsonBody<PromoteBody>,
) -> Response {
    post_typed(s, h, "PROMOTE", body).await
}

/// `POST /v1/promotions/dry-run`: decides the promotion as the processor would, against
/// this replica's view (MPR2 §5.9), and writes nothing.
#[utoipa::path(
    post,
    path = "/v1/promotions/dry-run",
    operation_id = "post_promote_dry_run",
    summary = "Dry run of a promotion: what PROMOTE would record now, against this replica's view; nothing is written",
    description = "Decides the PROMOTE with the processor's own rules (role, lifecycle state, catalog compatibility, required gates, re-approval) against this replica's view, and answers what it would record: ACCEPTED with the binding change, NOOP, or REJECTED with the error a real promotion would get (200 in every case). Nothing is produced to the log. The console shows it before every promotion; `mpr promote --dry-run` prints it.",
    request_body(content = crate::api::commands::PromoteBody, description = "The scope to promote into, and optional command_id and reason", content_type = "application/json"),
    responses(
        (status = 200, description = "Success", body = crate::api::commands::DryRunResponse),
    ),
    security(("bearer" = [])),
)]
async fn post_promote_dry_run(
    State(s): State<AppState>,
    h: HeaderMap,
    JsonBody(PromoteBody(body)): JsonBody<PromoteBody>,
) -> Response {
    let inner = async {
        let p = s.principal(&h)?;
        let meta = CommandMeta {
            command_id: body.command_id,
            reason: body.reason,
        };
        let v = typed("PROMOTE", Value::Object(body.payload), meta);
        let answer = dry_run(&s, &p, v).await?;
        Ok::<_, ApiError>(Json(answer).into_response())
    };
    inner.await.unwrap_or_else(IntoResponse::into_response)
}

/// Decides the command `body` for `p` against the view, without the log: what it would
/// record now. The role check is the processor's own (inside the decision), so a caller
/// without the role gets the FORBIDDEN it would get for real.
pub(crate) async fn dry_run(
    s: &AppState,
    p: &crate::config::Principal,
    mut body: Value,
) -> Result<DryRunResponse, ApiError> {
    if let Some(o) = body.as_object_mut() {
        // A dry run is never the command itself: a fresh id, so no earlier result answers.
        o.insert("command_id".into(), json!(uuid::Uuid::new_v4()));
    }
    let env = super::envelope_for(p, body)?;
    env.validate().map_err(ApiError::from)?;
    let grants = s.grants.clone();
    s.read(move |v| {
        let catalog = v.catalog_state()?.catalog;
        let view_version = v.version().token();
        let input = crate::domain::state::CommandInput {
            observed_at: env.submitted_at_utc,
            envelope: env,
            source: crate::domain::event::CommandSource {
                partition: -1,
                offset: -1,
            },
            credential: Default::default(),
        };
        let e = crate::domain::decide::dry_run(v, &catalog, &grants, &input)?;
        Ok(DryRunResponse {
            command_type: e.command_type,
            outcome: e.outcome,
            error: e.error,
            to_state: e.to_state,
            scope: e.scope,
            binding: e.binding,
            warnings: e.warnings,
            view_version,
        })
    })
    .await
}

/// What a command would record now (`POST /v1/promotions/dry-run`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DryRunResponse {
    /// The command's type.
    pub command_type: Option<CommandType>,
    /// ACCEPTED, NOOP or REJECTED.
    pub outcome: Outcome,
    /// The refusal, when REJECTED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::domain::event::ErrorInfo>,
    /// The bundle's lifecycle state after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_state: Option<crate::domain::LifecycleState>,
    /// The scope slot it would change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<crate::domain::event::ScopeRef>,
    /// The binding change it would make.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<crate::domain::event::BindingChange>,
    /// Warnings it would record (a `warn` catalog posture's gaps).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The view state it was decided against.
    pub view_version: String,
}

/// Submits `body` as `p`'s command through the API's own path (role check, validation,
/// the log) and waits for its result: what the console's forms call.
pub(crate) async fn submit_as(
    s: &AppState,
    p: &crate::config::Principal,
    body: Value,
) -> Result<(Option<CommandResult>, CommandEnvelope), ApiError> {
    let env = super::envelope_for(p, body)?;
    submit_and_wait(s, env).await
}

/// The JSON of a typed command (`command_type` and `payload`, with an optional reason).
pub(crate) fn typed_command(command_type: &str, payload: Value, reason: Option<String>) -> Value {
    typed(
        command_type,
        payload,
        CommandMeta {
            command_id: None,
            reason,
        },
    )
}

#[utoipa::path(
    post,
    path = "/v1/rollbacks",
    operation_id = "post_rollback",
    summary = "Roll a scope slot back to its previous bundle",
    request_body(content = crate::api::commands::RollbackBody, description = "The scope to roll back, and optional command_id and reason", content_type = "application/json"),
    responses(
        (status = 200, description = "Success", body = crate::domain::CommandResult),
        (status = 202, description = "On the log, result not in the view within the command timeout: poll it", body = crate::api::openapi::doc::PendingCommand),
    ),
    security(("bearer" = [])),
)]
async fn post_rollback(
    State(s): State<AppState>,
    h: HeaderMap,
    JsonBody(RollbackBody(body)): JsonBody<RollbackBody>,
) -> Response {
    post_typed(s, h, "ROLLBACK", body).await
}

#[utoipa::path(
    put,
    path = "/v1/catalog/{environment}",
    operation_id = "put_catalog",
    summary = "Replace one environment's platform catalog entry",
    params(
        ("environment" = String, Path, description = "Environment"),
    ),
    request_body(content = crate::api::commands::SetCatalogBody, description = "The environment's catalog entry, and optional command_id and reason", content_type = "application/json"),
    responses(
        (status = 200, description = "Success", body = crate::domain::CommandResult),
        (status = 202, description = "On the log, result not in the view within the command timeout: poll it", body = crate::api::openapi::doc::PendingCommand),
    ),
    security(("bearer" = [])),
)]
async fn put_catalog(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(environment): Path<String>,
    JsonBody(SetCatalogBody(mut body)): JsonBody<SetCatalogBody>,
) -> Response {
    body.payload
        .insert("environment".into(), json!(environment));
    post_typed(s, h, "SET_CATALOG", body).await
}

/// For tests and embedding: a sink that hands commands to a closure.
pub struct FnSink<F>(pub Arc<F>);

impl<F> CommandSink for FnSink<F>
where
    F: Fn(&CommandEnvelope) -> Result<(), ApiError> + Send + Sync,
{
    fn submit<'a>(
        &'a self,
        env: &'a CommandEnvelope,
    ) -> Pin<Box<dyn Future<Output = Result<(), ApiError>> + Send + 'a>> {
        let r = (self.0)(env);
        Box::pin(async move { r })
    }
}
