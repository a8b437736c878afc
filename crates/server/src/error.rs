//! `AppError`: every failure of a request, answered as JSON `{code, message}` with a status
//! that follows the core error kind. Internals (storage errors, upstream bodies) are logged,
//! never sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use switchboard_core::{Error, ErrorKind};

/// The JSON body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable machine-readable code (`not_found`, `invalid_input`, …).
    pub code: &'static str,
    /// A sentence for humans.
    pub message: String,
}

/// A request failure.
#[derive(Debug)]
pub struct AppError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl AppError {
    /// An error with an explicit status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AppError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 401: no or an unknown credential.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid admin token is required (Authorization: Bearer …)",
        )
    }

    /// 404 for `what`.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such {what}"),
        )
    }

    /// The status it answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        let (status, code, public) = match e.kind() {
            ErrorKind::InvalidInput => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", true),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found", true),
            ErrorKind::Conflict => (StatusCode::CONFLICT, "conflict", true),
            ErrorKind::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", true),
            ErrorKind::Forbidden => (StatusCode::FORBIDDEN, "forbidden", true),
            ErrorKind::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", true),
            ErrorKind::NeedsReauth => (StatusCode::CONFLICT, "needs_reauth", true),
            ErrorKind::Unsupported => (StatusCode::NOT_IMPLEMENTED, "unsupported", true),
            ErrorKind::Storage => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", false),
            _ => (StatusCode::BAD_GATEWAY, "upstream", false),
        };
        if public {
            AppError::new(status, code, e.to_string())
        } else {
            tracing::error!(error = %e, "request failed");
            AppError::new(
                status,
                code,
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    "the database is unavailable; try again shortly"
                } else {
                    "a platform did not answer as expected; try again shortly"
                },
            )
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                code: self.code,
                message: self.message,
            }),
        )
            .into_response()
    }
}
