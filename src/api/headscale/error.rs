//! Errors of the Headscale surface, in the shape gRPC-gateway writes them.
//!
//! Headscale's REST API is a gRPC-gateway in front of its gRPC service, so every failure a
//! Headscale client has ever seen is `{"code": <gRPC status code>, "message": "…",
//! "details": []}`; generated clients (headscale-ui, the Terraform providers) decode that
//! body and show `message`. This surface therefore answers that shape instead of `/v1`'s
//! problem+json. The HTTP status is [`ApiError`]'s own, so both surfaces agree on it; only
//! the gRPC code is decided here.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::error::ApiError;
use crate::state::store::StoreError;

/// A gRPC status as gRPC-gateway renders it (`google.rpc.Status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"code": 5, "message": "user 7 not found", "details": []}))]
pub struct RpcStatus {
    /// The gRPC status code: 3 invalid argument, 5 not found, 6 already exists, 8 resource
    /// exhausted, 12 unimplemented, 13 internal, 14 unavailable, 16 unauthenticated.
    pub code: i32,
    pub message: String,
    /// Always empty.
    #[schema(value_type = Vec<Object>)]
    pub details: Vec<serde_json::Value>,
}

/// Everything the Headscale surface answers instead of success.
#[derive(Debug, thiserror::Error)]
pub enum HsError {
    /// Any failure `/v1` can have, from the shared validation and store functions.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A Headscale operation tenscale does not offer (answered 501).
    #[error("{0}")]
    Unimplemented(String),
}

pub type HsResult<T> = Result<T, HsError>;

impl From<StoreError> for HsError {
    fn from(err: StoreError) -> Self {
        HsError::Api(err.into())
    }
}

impl From<crate::domain::InvalidValue> for HsError {
    fn from(err: crate::domain::InvalidValue) -> Self {
        HsError::Api(err.into())
    }
}

impl HsError {
    /// The gRPC status code a gRPC-gateway would send with this failure.
    fn rpc_code(&self) -> i32 {
        match self {
            HsError::Unimplemented(_) => 12,
            HsError::Api(api) => match api {
                ApiError::BadRequest(_) | ApiError::Invalid(_) | ApiError::UnsupportedMediaType(_) => 3,
                ApiError::RequestTimeout(_) => 4,
                ApiError::NotFound(_) => 5,
                ApiError::Conflict(_) => 6,
                ApiError::PayloadTooLarge { .. } | ApiError::RateLimited { .. } => 8,
                ApiError::MethodNotAllowed { .. } => 12,
                ApiError::Internal(_) => 13,
                ApiError::Unavailable(_) => 14,
                ApiError::Unauthorized(_) | ApiError::InvalidToken(_) => 16,
                ApiError::Forbidden(_) => 7,
            },
        }
    }

    pub fn status(&self) -> RpcStatus {
        let message = match self {
            HsError::Api(ApiError::Internal(_)) => "internal error; see the server log".to_string(),
            other => other.to_string(),
        };
        RpcStatus { code: self.rpc_code(), message, details: Vec::new() }
    }
}

impl ResponseError for HsError {
    fn status_code(&self) -> StatusCode {
        match self {
            HsError::Api(api) => api.status_code(),
            HsError::Unimplemented(_) => StatusCode::NOT_IMPLEMENTED,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let HsError::Api(ApiError::Internal(detail)) = self {
            tracing::error!(%detail, "headscale api: internal error");
        }
        let mut response = HttpResponse::build(self.status_code());
        if let HsError::Api(api) = self {
            api.add_headers(&mut response);
        }
        response.json(self.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_grpc_gateway() {
        let cases = [
            (HsError::from(ApiError::NotFound("user 1 not found".into())), 404, 5),
            (ApiError::Invalid("bad".into()).into(), 400, 3),
            (ApiError::Conflict("taken".into()).into(), 409, 6),
            (ApiError::Unauthorized("no").into(), 401, 16),
            (ApiError::RateLimited { retry_after_secs: 1 }.into(), 429, 8),
            (HsError::Unimplemented("no".into()), 501, 12),
        ];
        for (err, http, code) in cases {
            assert_eq!(err.status_code().as_u16(), http, "{err}");
            assert_eq!(err.status().code, code, "{err}");
        }
        let internal = HsError::from(ApiError::Internal("db password".into())).status();
        assert!(!internal.message.contains("password"));
    }
}
