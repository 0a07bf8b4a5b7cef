//! What the three surfaces share — `/v1`, the Headscale-compatible `/api/v1` and the
//! Tailscale-compatible `/api/v2` — except the shape of a failure. A surface is named by its
//! error type ([`ApiError`] itself, `HsError`, `TsError`), into which every refusal converts:
//! the status and headers are `ApiError`'s on all three, only the body differs.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest, ResponseError};
use serde::de::DeserializeOwned;

use super::body::ApiJson;
use super::error::ApiError;

/// A surface's error type: what an [`ApiError`] becomes there.
pub trait Surface: From<ApiError> + ResponseError + 'static {}

impl<E: From<ApiError> + ResponseError + 'static> Surface for E {}

/// actix's own extractor failures (a query or path that does not parse) in `E`'s shape.
pub fn extractor_configs<E: Surface>(cfg: &mut web::ServiceConfig) {
    use actix_web::web::{PathConfig, QueryConfig};
    cfg.app_data(QueryConfig::default().error_handler(|err, _| E::from(ApiError::BadRequest(err.to_string())).into()))
        .app_data(PathConfig::default().error_handler(|err, _| E::from(ApiError::NotFound(err.to_string())).into()));
}

/// Any other method on a resource that takes `allow`: 405 with the `Allow` header.
pub fn only<E: Surface>(allow: &'static str) -> actix_web::Route {
    web::to(move || async move { Err::<(), E>(ApiError::MethodNotAllowed { allow }.into()) })
}

/// Any path outside the surface's resources: a 404 in its shape.
pub fn not_found<E: Surface>(message: &'static str) -> actix_web::Route {
    web::to(move || async move { Err::<(), E>(ApiError::NotFound(message.into()).into()) })
}

/// A JSON body read like `/v1`'s ([`ApiJson`]: size limit, media type, serde's message),
/// failing in `E`'s shape. The value is `.0`.
#[derive(Debug)]
pub struct SurfaceJson<T, E>(pub T, PhantomData<fn() -> E>);

impl<T: DeserializeOwned + 'static, E: Surface> FromRequest for SurfaceJson<T, E> {
    type Error = E;
    type Future = Pin<Box<dyn Future<Output = Result<Self, E>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = ApiJson::<T>::from_request(req, payload);
        Box::pin(async move { body.await.map(|ApiJson(value)| SurfaceJson(value, PhantomData)).map_err(E::from) })
    }
}
