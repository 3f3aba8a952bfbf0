//! Audit routes: signed checkpoints of the log heads this replica's view has applied, as
//! C2SP signed notes (`domain::checkpoint`), so that an auditor can pin the log's state
//! and later check it with `mpr verify-audit --checkpoint`.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::ApiError;
use crate::domain::ErrorCode;
use crate::domain::checkpoint::{Checkpoint, origin};
use crate::domain::event::{GENESIS_HASH, LogId};
use crate::domain::trust::Signer;

/// What checkpoints are signed with and name.
#[derive(Debug, Clone)]
pub struct CheckpointSigner {
    /// The registry key.
    pub registry: Signer,
    /// The `events` topic.
    pub events_topic: String,
    /// The `catalog` topic.
    pub catalog_topic: String,
}

/// `GET /v1/audit/checkpoints`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_checkpoints))
}

/// One signed checkpoint per `events` partition and one of the `catalog` log, each of the
/// head this view has applied (only events the registry signed are ever applied). A
/// checkpoint covers a whole log, so it needs a grant that reads everything (such as
/// `auditor`); a scoped token gets 403.
#[utoipa::path(
    get,
    path = "/v1/audit/checkpoints",
    operation_id = "get_checkpoints",
    summary = "Signed checkpoints of the log heads this replica's view has applied",
    description = "One C2SP signed note per events partition and one of the catalog log (origin mpr/<topic>/<partition>, the head's seq, the base64 head hash), signed by the registry key under the name mpr-registry. Check one later with mpr verify-audit --checkpoint FILE. Needs a grant that reads everything (an unlimited reader, auditor or admin); a scoped token gets 403 FORBIDDEN.",
    responses(
        (status = 200, description = "Success", body = crate::api::openapi::doc::Checkpoints),
    ),
    security(("bearer" = [])),
)]
async fn get_checkpoints(State(s): State<AppState>, h: HeaderMap) -> Result<Json<Value>, ApiError> {
    let p = s.principal(&h)?;
    if !s.access(&p).reads_everything() {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "checkpoints cover whole logs: they need a grant that reads everything, such as auditor",
        ));
    }
    let signer = s.checkpoints.clone();
    let logs: Vec<(LogId, &str, i32)> = std::iter::once((LogId::Catalog, "catalog", 0))
        .chain((0..s.view.partitions()).map(|p| (LogId::Events, "events", p)))
        .collect();
    let mut out = Vec::with_capacity(logs.len());
    for (log, name, p) in logs {
        let topic = match log {
            LogId::Events => &signer.events_topic,
            LogId::Catalog => &signer.catalog_topic,
        };
        let (seq, head_hash) = s
            .view
            .cached_position(log, p)
            .map_or((0, GENESIS_HASH.to_owned()), |pos| (pos.seq, pos.hash));
        let cp = Checkpoint {
            origin: origin(topic, p),
            seq,
            head_hash,
        };
        let note = cp.sign(&signer.registry).map_err(ApiError::internal)?;
        out.push(json!({"log": name, "topic": topic, "partition": p, "seq": seq, "note": note}));
    }
    Ok(Json(json!({"checkpoints": out})))
}
