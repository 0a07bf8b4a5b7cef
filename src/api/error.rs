//! The one error type of the REST API and its RFC 7807 rendering.
//!
//! Every failure a client can see leaves through [`ApiError`], so the status code, the
//! problem `type` and the `application/problem+json` body are decided in one place. Store and
//! domain errors convert into it; database details are logged, never sent.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::store::StoreError;

/// The body of every error response (RFC 7807).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:tenscale:problem:not-found",
    "title": "Not Found",
    "status": 404,
    "detail": "namespace not found"
}))]
pub struct Problem {
    /// A URI naming the kind of problem; stable, meant for programs.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code, repeated.
    pub status: u16,
    /// What went wrong with this request, for humans.
    pub detail: String,
}

/// Everything the API can answer instead of success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed JSON, unknown fields, wrong types: serde's message, with its position.
    #[error("{0}")]
    BadRequest(String),
    /// Well-formed input whose values are refused (bad name, tag, expiry, policy).
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A credential other than an API key (a browser-key JWT) failed a check; says which.
    #[error("{0}")]
    InvalidToken(String),
    /// Authenticated, but this is not allowed (origin, namespace).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// Another method than the resource takes; `allow` lists those it does (the `Allow` header).
    #[error("method not allowed; this resource takes {allow}")]
    MethodNotAllowed { allow: &'static str },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    RequestTimeout(String),
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("rate limit exceeded; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("{0}")]
    Unavailable(String),
    /// Detail is logged, the client only learns that it was our fault.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The problem `type` suffix; clients switch on it rather than on `detail`.
    fn slug(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "malformed-request",
            ApiError::Invalid(_) => "invalid-value",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::InvalidToken(_) => "invalid-token",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not-found",
            ApiError::MethodNotAllowed { .. } => "method-not-allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::RequestTimeout(_) => "request-timeout",
            ApiError::PayloadTooLarge { .. } => "payload-too-large",
            ApiError::UnsupportedMediaType(_) => "unsupported-media-type",
            ApiError::RateLimited { .. } => "rate-limited",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn problem(&self) -> Problem {
        let status = self.status_code();
        let detail = match self {
            ApiError::Internal(_) => "internal error; see the server log".to_string(),
            other => other.to_string(),
        };
        Problem {
            kind: format!("urn:tenscale:problem:{}", self.slug()),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) | ApiError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(detail) = self {
            tracing::error!(%detail, "api: internal error");
        }
        let mut response = HttpResponse::build(self.status_code());
        response.content_type("application/problem+json");
        self.add_headers(&mut response);
        response.body(serde_json::to_string(&self.problem()).unwrap_or_default())
    }
}

impl ApiError {
    /// The headers that go with this failure whatever the surface's body: `Retry-After` on
    /// a 429, `WWW-Authenticate` on a 401, `Allow` on a 405.
    pub(crate) fn add_headers(&self, response: &mut actix_web::HttpResponseBuilder) {
        match self {
            ApiError::RateLimited { retry_after_secs } => {
                response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            ApiError::Unauthorized(_) => {
                response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            ApiError::MethodNotAllowed { allow } => {
                response.insert_header((header::ALLOW, HeaderValue::from_static(allow)));
            }
            _ => {}
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            StoreError::Conflict(message) => ApiError::Conflict(message),
            StoreError::Unavailable(db) => {
                tracing::warn!(error = %db, "the database is unreachable");
                ApiError::Unavailable("the database is unreachable; retry shortly".into())
            }
            StoreError::Db(db) => ApiError::Internal(db.to_string()),
            StoreError::Corrupt(what) => ApiError::Internal(what),
        }
    }
}

impl From<crate::state::nodes::NodeRefusal> for ApiError {
    fn from(refusal: crate::state::nodes::NodeRefusal) -> Self {
        use crate::state::nodes::NodeRefusal;
        match refusal {
            NodeRefusal::NameTaken { .. } => ApiError::Conflict(refusal.to_string()),
            NodeRefusal::TagNotAllowed(message) => ApiError::Invalid(message),
            NodeRefusal::Store(err) => err.into(),
        }
    }
}

impl From<crate::state::credentials::CredentialRefusal> for ApiError {
    fn from(refusal: crate::state::credentials::CredentialRefusal) -> Self {
        use crate::state::credentials::CredentialRefusal;
        match refusal {
            CredentialRefusal::TagNotAllowed(message) => ApiError::Invalid(message),
            refusal @ CredentialRefusal::ExpiryNotInFuture => ApiError::Invalid(refusal.to_string()),
            CredentialRefusal::Store(err) => err.into(),
        }
    }
}

impl From<crate::state::policy::PolicyRefusal> for ApiError {
    fn from(refusal: crate::state::policy::PolicyRefusal) -> Self {
        use crate::state::policy::PolicyRefusal;
        match refusal {
            PolicyRefusal::Invalid(_) | PolicyRefusal::TestFailed { .. } => ApiError::Invalid(refusal.to_string()),
            PolicyRefusal::Store(err) => err.into(),
        }
    }
}

impl From<crate::domain::InvalidValue> for ApiError {
    fn from(err: crate::domain::InvalidValue) -> Self {
        ApiError::Invalid(err.0)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Problem+json for actix's own extractor failures (query strings, paths, `web::Json`), so
/// no error leaves the API in another shape.
pub fn extractor_configs(cfg: &mut actix_web::web::ServiceConfig) {
    use actix_web::web::{JsonConfig, PathConfig, QueryConfig};
    cfg.app_data(JsonConfig::default().error_handler(|err, _| match err {
        actix_web::error::JsonPayloadError::Deserialize(e) => ApiError::BadRequest(e.to_string()).into(),
        actix_web::error::JsonPayloadError::OverflowKnownLength { limit, .. }
        | actix_web::error::JsonPayloadError::Overflow { limit } => ApiError::PayloadTooLarge { limit }.into(),
        other => ApiError::BadRequest(other.to_string()).into(),
    }))
    .app_data(QueryConfig::default().error_handler(|err, _| ApiError::BadRequest(err.to_string()).into()))
    .app_data(PathConfig::default().error_handler(|err, _| ApiError::NotFound(err.to_string()).into()));
}
