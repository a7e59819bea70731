//! Web errors: each becomes a status and a clean message; internals are logged once, never
//! shown.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tracing::error;

use crate::report::Report;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("{0}")]
    BadRequest(String),
    #[error("authentication required: log in at /login, or send Authorization: Bearer <token>")]
    Unauthorized,
    #[error("cross-origin request refused")]
    CrossOrigin,
    #[error("send the body as application/json")]
    UnsupportedMediaType,
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = match &self {
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Unauthorized => StatusCode::UNAUTHORIZED,
            WebError::CrossOrigin => StatusCode::FORBIDDEN,
            WebError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            WebError::Internal(detail) => {
                error!(%detail, "Request failed.");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

impl From<crate::db::DbError> for WebError {
    fn from(e: crate::db::DbError) -> Self {
        WebError::Internal(Report(&e).to_string())
    }
}

impl From<askama::Error> for WebError {
    fn from(e: askama::Error) -> Self {
        WebError::Internal(Report(&e).to_string())
    }
}
