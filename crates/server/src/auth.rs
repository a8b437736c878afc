//! Admin API authentication: `Authorization: Bearer <admin token>`, resolved through the
//! store (tokens are kept hashed; the comparison is constant time there) to the one
//! organization the token belongs to.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use secrecy::SecretString;
use switchboard_core::AdminPrincipal;

use crate::AppState;
use crate::error::AppError;

/// The authenticated organization of an admin API request.
#[derive(Debug, Clone)]
pub struct Admin(pub AdminPrincipal);

impl FromRequestParts<AppState> for Admin {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(AppError::unauthorized)?;
        let token = header
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 512)
            .ok_or_else(AppError::unauthorized)?;
        let principal = state
            .store
            .authenticate_admin_token(&SecretString::from(token.to_owned()))
            .await?
            .ok_or_else(AppError::unauthorized)?;
        Ok(Admin(principal))
    }
}
