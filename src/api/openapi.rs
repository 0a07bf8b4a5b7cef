//! The OpenAPI 3.1 document, generated from the handlers' own types by utoipa, served at
//! `/openapi.json` with a Swagger UI at `/docs` (assets embedded at build time: the
//! `vendored` feature of utoipa-swagger-ui, so nothing is downloaded at build or run time).
//!
//! `openapi/openapi.json` in the repository is this document; a test fails when they differ.
//! Regenerate with `cargo run -- openapi > openapi/openapi.json`.

use std::sync::OnceLock;

use actix_web::{web, HttpResponse};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr, ResponseBuilder, Type};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::{Config, SwaggerUi};

use super::{api_keys, browser_keys, error, headscale, health, keys, namespaces, nodes, policy, schema, tailscale};
use crate::domain::{NamespaceName, NodeName};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tenscale",
        description = "Management API of tenscale, a multi-tenant Tailscale-compatible coordination server. \
            Every `/v1` request carries `Authorization: Bearer <org API key>` and sees only its own \
            organization: another organization's objects answer 404. Errors are RFC 7807 \
            `application/problem+json`. `/api/v1` is a Headscale-compatible surface (a Headscale \
            user is a namespace) with the same authentication and Headscale's JSON and gRPC-gateway errors; \
            `/api/v2` is a Tailscale-compatible surface (a tailnet is a namespace) that also takes the key as \
            HTTP Basic's user name, with Tailscale's JSON and errors."
    ),
    paths(
        namespaces::create, namespaces::list, namespaces::get, namespaces::delete,
        keys::create, keys::list, keys::revoke,
        api_keys::create, api_keys::list, api_keys::revoke, api_keys::rotate,
        nodes::list, nodes::get, nodes::update, nodes::delete, nodes::expire,
        policy::get, policy::put, policy::validate, policy::get_namespace, policy::put_namespace, policy::delete_namespace,
        browser_keys::get_settings, browser_keys::put_settings, browser_keys::exchange,
        health::healthz, health::readyz, health::metrics,
        headscale::users::list, headscale::users::create, headscale::users::delete, headscale::users::rename,
        headscale::preauthkeys::list, headscale::preauthkeys::create, headscale::preauthkeys::expire, headscale::preauthkeys::delete,
        headscale::nodes::list, headscale::nodes::get, headscale::nodes::delete, headscale::nodes::expire,
        headscale::nodes::rename, headscale::nodes::set_tags,
        headscale::policy::get, headscale::policy::put, headscale::policy::check, headscale::health::get,
        headscale::apikeys::list, headscale::apikeys::create, headscale::apikeys::expire, headscale::apikeys::delete,
        tailscale::keys::list, tailscale::keys::create, tailscale::keys::get, tailscale::keys::delete,
    ),
    // Path and query parameters name these by reference, and utoipa collects only the schemas of bodies.
    components(schemas(error::Problem, headscale::RpcStatus, tailscale::TsErrorBody, NamespaceName, NodeName, schema::Uint64Text)),
    modifiers(&CommonResponses),
    security(("bearer" = [])),
    tags(
        (name = "namespaces", description = "Isolated tailnets, one per end user of an app"),
        (name = "pre-auth keys", description = "Keys that let a client register a node in a namespace"),
        (name = "api keys", description = "The organization's API keys: made, rotated and revoked here, each with an expiry"),
        (name = "nodes", description = "Machines registered in a namespace"),
        (name = "policy", description = "The organization's ACL policy (HuJSON)"),
        (name = "browser keys", description = "Pages trade their app backend's short JWT for a one-hour ephemeral key"),
        (name = "operations", description = "Probes and metrics; no authentication"),
        (name = "headscale", description = "Headscale-compatible API (v0.26–v0.28 JSON): users are namespaces; \
            errors are gRPC-gateway statuses `{code, message, details}`"),
        (name = "tailscale", description = "Tailscale-compatible API v2: a tailnet is a namespace, named in the path; \
            the API key as Bearer or as Basic user name; errors are `{message}`"),
    )
)]
pub struct ApiDoc;

/// What operations answer besides their own outcomes, added once here instead of in every
/// handler, and the Bearer scheme. Every `/v1` and `/api/v1` operation may answer 503 (the
/// database does not answer); those behind the API key also 400 (a NUL in the path or query,
/// refused before the handler runs), 401 and 429; those that read a body also 408, 413 and
/// 415. An operation's own description of a status wins.
struct CommonResponses;

/// The common answers: name (the Headscale surface's have the prefix `Rpc`), status, text.
const COMMON: &[(&str, &str, &str)] = &[
    ("BadRequest", "400", "Malformed request: the path or query holds the NUL character (%00), or a value is refused"),
    ("Unauthorized", "401", "Missing, malformed, unknown or revoked API key"),
    ("RequestTimeout", "408", "The body did not arrive within the server's body timeout"),
    ("PayloadTooLarge", "413", "The body is larger than the server's limit"),
    ("UnsupportedMediaType", "415", "The body's Content-Type is not one this operation reads"),
    ("RateLimited", "429", "Rate limit exceeded (per client address and per API key)"),
    ("Unavailable", "503", "The database does not answer; retry shortly"),
];

impl Modify for CommonResponses {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        let bearer = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("tskey-api-…")
            .description(Some(
                "An organization API key, created with `tenscale org create` or `tenscale apikey create`.",
            ))
            .build();
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        let basic = HttpBuilder::new()
            .scheme(HttpAuthScheme::Basic)
            .description(Some("`/api/v2` only: the organization API key as the user name, an empty password."))
            .build();
        components.add_security_scheme("basic", SecurityScheme::Http(basic));
        for (prefix, media, schema) in [
            ("", "application/problem+json", "Problem"),
            ("Rpc", "application/json", "RpcStatus"),
            ("Ts", "application/json", "TsErrorBody"),
        ] {
            for (name, status, description) in COMMON {
                let content = ContentBuilder::new().schema(Some(Ref::from_schema_name(schema))).build();
                let mut response = ResponseBuilder::new().description(*description).content(media, content);
                if *status == "429" {
                    response = response.header("Retry-After", retry_after_header());
                }
                components.responses.insert(format!("{prefix}{name}"), RefOr::T(response.build()));
            }
        }
        for (path, item) in doc.paths.paths.iter_mut() {
            let prefix = if path.starts_with("/v1/") {
                ""
            } else if path.starts_with("/api/v1/") {
                "Rpc"
            } else if path.starts_with("/api/v2/") {
                "Ts"
            } else {
                continue;
            };
            let ops = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for op in ops.into_iter().flatten() {
                add_common(op, prefix);
                if prefix == "Ts" {
                    // Either credential will do (the document's default names only Bearer).
                    let either = ["bearer", "basic"].map(|name| SecurityRequirement::new(name, Vec::<String>::new()));
                    op.security = Some(either.into());
                }
            }
        }
    }
}

fn retry_after_header() -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(utoipa::openapi::ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)))
        .description(Some("Seconds to wait before retrying"))
        .build()
}

/// Adds the common responses that apply to `op`; `prefix` picks the error shape ("" for
/// problem+json, "Rpc" for gRPC-gateway statuses, "Ts" for Tailscale's `{message}`).
fn add_common(op: &mut Operation, prefix: &str) {
    // An operation with a security requirement of its own (the browser-key exchange: a JWT)
    // is not behind the API-key guard.
    let behind_guard = op.security.is_none();
    let reads_body = op.request_body.is_some();
    let responses = &mut op.responses.responses;
    for (name, status, _) in COMMON {
        let applies = match *status {
            "400" | "401" | "429" => behind_guard,
            "408" | "413" | "415" => reads_body,
            _ => true,
        };
        if applies {
            let reference = RefOr::Ref(Ref::from_response_name(format!("{prefix}{name}")));
            responses.entry(status.to_string()).or_insert(reference);
        }
    }
}

/// The document as pretty JSON: what `/openapi.json` serves and `openapi/openapi.json` holds.
pub fn document_json() -> String {
    // Serialising plain data structures to a String cannot fail.
    ApiDoc::openapi().to_pretty_json().expect("OpenAPI document serialises")
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/openapi.json", web::get().to(serve_document))
        .route("/docs", web::get().to(docs_redirect))
        .service(SwaggerUi::new("/docs/{_:.*}").config(Config::new(["/openapi.json"])));
}

async fn serve_document() -> HttpResponse {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    HttpResponse::Ok().content_type("application/json").body(DOCUMENT.get_or_init(document_json).as_str())
}

/// Swagger UI's relative asset links need the trailing slash.
async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect().insert_header(("Location", "/docs/")).finish()
}
