//! Errors of the Tailscale surface, in the shape Tailscale's API writes them: the HTTP status
//! and `{"message": "…"}`, which Tailscale's clients decode (the Go client's `APIError` reads
//! `message` and keeps the status). The status is [`ApiError`]'s own, so every surface agrees
//! on it.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::error::ApiError;
use crate::state::store::StoreError;

/// Tailscale's error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"message": "tailnet not found"}))]
pub struct TsErrorBody {
    pub message: String,
}

/// Everything the Tailscale surface answers instead of success: any failure `/v1` can have.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct TsError(#[from] pub ApiError);

pub type TsResult<T> = Result<T, TsError>;

impl From<StoreError> for TsError {
    fn from(err: StoreError) -> Self {
        TsError(err.into())
    }
}

impl From<crate::domain::InvalidValue> for TsError {
    fn from(err: crate::domain::InvalidValue) -> Self {
        TsError(err.into())
    }
}

impl TsError {
    pub fn body(&self) -> TsErrorBody {
        let message = match &self.0 {
            ApiError::Internal(_) => "internal error; see the server log".to_string(),
            other => other.to_string(),
        };
        TsErrorBody { message }
    }
}

impl ResponseError for TsError {
    fn status_code(&self) -> StatusCode {
        self.0.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(detail) = &self.0 {
            tracing::error!(%detail, "tailscale api: internal error");
        }
        let mut response = HttpResponse::build(self.status_code());
        self.0.add_headers(&mut response);
        response.json(self.body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_the_apis_and_internals_stay_hidden() {
        let missing = TsError::from(ApiError::NotFound("tailnet not found".into()));
        assert_eq!(missing.status_code(), StatusCode::NOT_FOUND);
        assert_eq!(missing.body().message, "tailnet not found");
        let internal = TsError::from(ApiError::Internal("db password".into()));
        assert_eq!(internal.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!internal.body().message.contains("password"));
    }
}
