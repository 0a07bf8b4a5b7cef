//! Request bodies: read up to the configured limit, then parse.
//!
//! actix's `web::Json` takes its limit when the App is built, but the limit is a setting in
//! [`ApiState`]; this extractor reads it per request, answers 413 before buffering an
//! oversized body, and hands serde's exact message (field, line, column) to the client.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use bytes::BytesMut;
use futures::StreamExt;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::api::ApiState;

/// A JSON request body of type `T`.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for ApiJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let payload = payload.take();
        Box::pin(async move {
            if let Some(media) = media_type(&req) {
                if media != "application/json" && !media.ends_with("+json") {
                    return Err(ApiError::UnsupportedMediaType(format!(
                        "Content-Type {media} is not accepted; send application/json"
                    )));
                }
            }
            let bytes = read_limited(&req, payload).await?;
            // No body at all means "all defaults", as `{}` would; a missing required field
            // is then reported by name.
            let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &bytes };
            // serde would read a struct from a positional array too; a body is an object.
            if !is_json_object(bytes) {
                return Err(ApiError::BadRequest("the request body must be a JSON object".into()));
            }
            refuse_nul(bytes)?;
            serde_json::from_slice(bytes).map(ApiJson).map_err(|e| ApiError::BadRequest(e.to_string()))
        })
    }
}

/// Whether the JSON text's first token opens an object.
pub fn is_json_object(json: &[u8]) -> bool {
    json.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// Refuses a JSON text holding the NUL character (`\u0000`, the only way JSON can carry it):
/// PostgreSQL cannot store it in text, and SQLite would, so both databases answer alike.
fn refuse_nul(json: &[u8]) -> Result<(), ApiError> {
    let mut i = 0;
    while i < json.len() {
        if json[i] == b'\\' {
            if json[i + 1..].starts_with(b"u0000") {
                return Err(ApiError::BadRequest(
                    "text in the request body cannot contain the NUL character (\\u0000)".into(),
                ));
            }
            i += 2; // the escaped character, whatever it is
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// The request's media type, lowercased, without parameters; `None` when absent.
pub fn media_type(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::CONTENT_TYPE)?.to_str().unwrap_or("");
    Some(value.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
}

/// The whole body, refusing more than `settings.body_limit_bytes` with 413 and a body that
/// has not arrived within `settings.body_timeout` with 408.
pub async fn read_limited(req: &HttpRequest, payload: Payload) -> Result<BytesMut, ApiError> {
    let (limit, timeout) = req
        .app_data::<web::Data<ApiState>>()
        .map(|state| (state.settings.body_limit_bytes, state.settings.body_timeout))
        .ok_or_else(|| ApiError::Internal("application state missing".into()))?;
    tokio::time::timeout(timeout, read_within_limit(req, payload, limit))
        .await
        .map_err(|_| ApiError::RequestTimeout(format!("the request body did not arrive within {timeout:?}")))?
}

async fn read_within_limit(req: &HttpRequest, mut payload: Payload, limit: usize) -> Result<BytesMut, ApiError> {
    // Refuse a declared length at once, without reading a byte of it.
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("cannot read request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
