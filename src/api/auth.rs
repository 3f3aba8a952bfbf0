//! Bearer-token authentication: tokens are stored as SHA-256 hashes in the config; each maps
//! to an actor and its grants. Handlers receive the [`Principal`] or answer 401; what it
//! may read is [`crate::domain::auth::ReadAccess`]'s rule.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::HeaderMap;

use super::error::ApiError;
use crate::config::Principal;
use crate::domain::ErrorCode;

/// Token hash -> principal.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// By the SHA-256 digest of the token (raw bytes: no hex string per request).
    /// Shared, so a request takes its principal without copying its grants.
    by_hash: HashMap<[u8; 32], Arc<Principal>>,
}

fn digest(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

impl Auth {
    /// From configured principals.
    pub fn new(principals: &[Principal]) -> Self {
        let by_hash = principals
            .iter()
            .filter_map(|p| {
                let hex = p.token_sha256.as_deref()?;
                let bytes: [u8; 32] = hex::decode(hex).ok()?.try_into().ok()?;
                Some((bytes, Arc::new(p.clone())))
            })
            .collect();
        Self { by_hash }
    }

    /// The principal a token names, if any (the console's sign-in).
    pub fn by_token(&self, token: &str) -> Option<Principal> {
        self.by_hash
            .get(&digest(token))
            .map(|p| Principal::clone(p))
    }

    /// The principal behind `Authorization: Bearer <token>`, or 401.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<Principal>, ApiError> {
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
            .get(&digest(token.trim()))
            .cloned()
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated, "unknown or revoked token"))
    }
}
