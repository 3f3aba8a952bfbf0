//! Bearer-token authentication: tokens are stored as SHA-256 hashes in the config; each maps
//! to an actor and its grants. Handlers receive the [`Principal`] or answer 401; what it
//! may read is [`crate::domain::auth::ReadAccess`]'s rule.

use std::collections::HashMap;

use axum::http::HeaderMap;

use super::error::ApiError;
use crate::config::Principal;
use crate::domain::ErrorCode;
use crate::domain::bundle::sha256_hex;

/// Token hash -> principal.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    by_hash: HashMap<String, Principal>,
}

impl Auth {
    /// From configured principals.
    pub fn new(principals: &[Principal]) -> Self {
        let by_hash = principals
            .iter()
            .filter_map(|p| Some((p.token_sha256.clone()?.to_lowercase(), p.clone())))
            .collect();
        Self { by_hash }
    }

    /// The principal behind `Authorization: Bearer <token>`, or 401.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        let value = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Unauthenticated,
                    "missing Authorization: Bearer token",
                )
            })?;
        let token = value.strip_prefix("Bearer ").ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthenticated,
                "Authorization must be a Bearer token",
            )
        })?;
        self.by_hash
            .get(&sha256_hex(token.trim().as_bytes()))
            .cloned()
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated, "unknown or revoked token"))
    }
}
