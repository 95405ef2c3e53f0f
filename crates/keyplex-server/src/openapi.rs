//! The OpenAPI 3.1 document of every route, served at `GET /openapi.json`.
//!
//! It is generated from the code: each handler carries `#[utoipa::path(...)]` (path,
//! parameters, bodies, statuses, security) beside its code, the types it reads and writes
//! derive `utoipa::ToSchema`, and the route table (`crate::routes`) collects them: the
//! document lists exactly the routes the server has. [`ApiDoc`] adds what no handler says. The JSON routes are described
//! field by field; the others (CPIX/SPEKE XML, licence-proxy challenges, HLS key bytes,
//! Prometheus text, the dashboard and the reference players) are listed with their media
//! types.
//!
//! A few shapes are read or written by code that stays free of OpenAPI derives (the
//! configuration types behind admin credentials, `keyplex_drm`'s Clear Key licence): they are
//! described by documentation-only types (`admin::doc`, `clearkey::doc`) whose unit tests
//! check them against that code.

use std::sync::LazyLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{Modify, OpenApi};

use crate::packager::widevine_api;

/// The document. `ApiDoc::openapi()` builds it; `/openapi.json` serves it.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "keyplex",
        version = env!("CARGO_PKG_VERSION"),
        description = "keyplex, a multi-DRM key server: key exchange for packagers (CPIX, SPEKE, \
            NAGRA-style JSON, Harmonic, GET CPIX, the Widevine API), licences for players \
            (Clear Key, HLS AES-128, secure sessions, a licence proxy per DRM) and the admin API.\n\n\
            Every path but `/healthz`, `/metrics`, `/openapi.json`, `/ui…`, `/players…` and \
            `/admin/v1/…` starts with the tenant. The reference is in the repository's `docs/`: \
            `docs/integrations.md` (packagers), `docs/licences.md` (players and entitlement \
            tokens), `docs/players.md` (the reference players), `docs/operators.md` (admin API, \
            audit trail, metrics, dashboard).\n\n\
            JSON errors are `application/problem+json` (`Problem`), except the NAGRA-style routes \
            (`NagraError`) and the Widevine API (a non-OK `status` in an HTTP 200); the CPIX, \
            SPEKE and Harmonic routes answer errors in `text/plain`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(
        crate::http::error::Problem,
        crate::packager::nagra::NagraError,
        widevine_api::RawRequest,
        widevine_api::ResponseJson,
        widevine_api::StatusJson,
    )),
    tags(
        (name = "packager", description = "Key exchange for packagers and encoders \
            (`docs/integrations.md`)"),
        (name = "licence", description = "Licences and keys for players, checked against \
            entitlement tokens (`docs/licences.md`)"),
        (name = "admin", description = "The admin API: tenants, credentials, contents, key \
            export and import, master key rotation, audit trail, stats (`docs/operators.md`)"),
        (name = "operations", description = "Health, metrics and this document"),
        (name = "static", description = "The operator dashboard (`/ui/`) and the reference \
            players (`/players/`, `docs/players.md`)"),
    ),
)]
pub struct ApiDoc;

pub use crate::http::doc::Binary;

/// The security schemes the operations name.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let http = |scheme: HttpAuthScheme, jwt: bool, description: &str| {
            let builder = HttpBuilder::new()
                .scheme(scheme)
                .description(Some(description));
            let builder = if jwt {
                builder.bearer_format("JWT")
            } else {
                builder
            };
            SecurityScheme::Http(builder.build())
        };
        let schemes = [
            (
                "admin_bearer",
                http(
                    HttpAuthScheme::Bearer,
                    false,
                    "`Authorization: Bearer` with `[admin] token`, or a JWT verified by \
                     `[admin] jwt` (with `exp`)",
                ),
            ),
            (
                "packager_basic",
                http(
                    HttpAuthScheme::Basic,
                    false,
                    "A packager credential of the tenant (`basic`)",
                ),
            ),
            (
                "packager_jwt",
                http(
                    HttpAuthScheme::Bearer,
                    true,
                    "A packager JWT verified by the tenant's `jwt` keys",
                ),
            ),
            (
                "nv_authorizations",
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    "nv-authorizations",
                    "A packager JWT in NAGRA's `nv-authorizations` header",
                ))),
            ),
            (
                "sigv4",
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    "Authorization",
                    "AWS Signature Version 4 (`AWS4-HMAC-SHA256 …`) with a `sigv4` credential \
                     of the tenant",
                ))),
            ),
            (
                "get_token",
                http(
                    HttpAuthScheme::Bearer,
                    false,
                    "The tenant's `get_token` (GET-style CPIX)",
                ),
            ),
            (
                "entitlement_jwt",
                http(
                    HttpAuthScheme::Bearer,
                    true,
                    "A player's entitlement token, verified by the tenant's `[licence] jwt` keys \
                     (`docs/licences.md`)",
                ),
            ),
            (
                "entitlement_query",
                SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                    "token",
                    "The entitlement token as `?token=`, for players that cannot set headers",
                ))),
            ),
        ];
        for (name, scheme) in schemes {
            components.add_security_scheme(name, scheme);
        }
    }
}

/// The Widevine API carries JSON inside base64 strings: `contentSchema` names it.
struct WidevineEncodedContent;

impl Modify for WidevineEncodedContent {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::OneOfBuilder;
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        let reference =
            |name: &str| RefOr::<Schema>::Ref(utoipa::openapi::Ref::from_schema_name(name));
        let encoded: [(&str, &str, RefOr<Schema>); 2] = [
            (
                "WidevineSignedRequest",
                "request",
                reference("CommonEncryptionRequest"),
            ),
            (
                "SignedResponse",
                "response",
                OneOfBuilder::new()
                    .item(reference("CommonEncryptionResponse"))
                    .item(reference("WidevineStatus"))
                    .into(),
            ),
        ];
        for (schema, property, content) in encoded {
            if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(schema)
                && let Some(RefOr::T(Schema::Object(field))) = object.properties.get_mut(property)
            {
                field.content_schema = Some(Box::new(content));
            }
        }
    }
}

/// What the document gets once every route is in it: the security schemes, and the
/// Widevine API's encoded contents (whose schemas come with its handlers).
pub fn finish(document: &mut utoipa::openapi::OpenApi) {
    SecuritySchemes.modify(document);
    WidevineEncodedContent.modify(document);
}

/// The JSON text of the document (the route table's), built on first use.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    crate::routes::document().to_json().unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot write the OpenAPI document");
        String::from("{}")
    })
});

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "operations",
    summary = "This OpenAPI document",
    responses((status = 200, description = "The OpenAPI 3.1 document of every route",
        body = Object, content_type = "application/json")),
    security(()),
)]
pub async fn get_openapi_json() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        DOCUMENT.as_str(),
    )
        .into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_json() {
        let doc: serde_json::Value = serde_json::from_str(&DOCUMENT).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["title"], "keyplex");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    }

    /// Every `$ref` points at a schema of the document.
    #[test]
    fn every_reference_resolves() {
        fn walk(value: &serde_json::Value, refs: &mut Vec<String>) {
            match value {
                serde_json::Value::Object(map) => {
                    if let Some(serde_json::Value::String(r)) = map.get("$ref") {
                        refs.push(r.clone());
                    }
                    map.values().for_each(|v| walk(v, refs));
                }
                serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, refs)),
                _ => {}
            }
        }
        let doc: serde_json::Value = serde_json::from_str(&DOCUMENT).unwrap();
        let mut refs = Vec::new();
        walk(&doc, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let name = r.strip_prefix("#/components/schemas/").unwrap();
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "{r} does not resolve"
            );
        }
    }

    /// Operations name only security schemes the document defines.
    #[test]
    fn every_security_requirement_is_defined() {
        let doc: serde_json::Value = serde_json::from_str(&DOCUMENT).unwrap();
        let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let security = operation["security"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{method} {path} names no security"));
                for requirement in security {
                    for name in requirement.as_object().unwrap().keys() {
                        assert!(schemes.contains_key(name), "{method} {path}: {name}");
                    }
                }
            }
        }
    }
}
