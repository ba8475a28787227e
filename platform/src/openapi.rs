//! The OpenAPI 3.1 document of an API and its interactive docs, served the
//! same way by both APIs: `GET /openapi.json` and `GET /docs` (Swagger UI,
//! vendored under `platform/assets/swagger-ui`, so nothing is loaded from a
//! CDN).
//!
//! Each API builds its routes with `utoipa_axum::OpenApiRouter` and
//! `routes!`, which registers a handler and its `#[utoipa::path]`
//! documentation together; [`document`] then adds what every API shares
//! (the problem schema and the health probes).

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use utoipa::openapi::{self, OpenApi};
use utoipa::{PartialSchema, ToSchema};

/// The schema of every error body (`application/problem+json`, RFC 9457);
/// documentation of [`crate::http::Problem`], which may carry further
/// extension members.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Problem)]
pub struct ProblemSchema {
    /// A URI naming the kind of problem, e.g. `urn:orders:problem:not-found`.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong in this case, for a human.
    pub detail: String,
}

/// Completes `api` (the paths of an API's handlers) into its published
/// document: title, version and description, the `Problem` schema and the
/// health probes.
pub fn document(mut api: OpenApi, title: &str, description: &str) -> OpenApi {
    api.info = openapi::InfoBuilder::new()
        .title(title)
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(description))
        .build();
    let components = api
        .components
        .get_or_insert_with(openapi::Components::default);
    components
        .schemas
        .insert("Problem".to_owned(), ProblemSchema::schema());
    api.paths.paths.extend(health_paths().paths);
    api
}

/// `GET /health/live` and `GET /health/ready`.
fn health_paths() -> openapi::Paths {
    use openapi::path::{OperationBuilder, PathItem};
    use openapi::{ContentBuilder, HttpMethod, ResponseBuilder};
    let status = ContentBuilder::new()
        .schema(Some(
            openapi::ObjectBuilder::new()
                .property(
                    "status",
                    openapi::ObjectBuilder::new().schema_type(openapi::Type::String),
                )
                .required("status"),
        ))
        .build();
    let ok = |what: &str| {
        ResponseBuilder::new()
            .description(what)
            .content("application/json", status.clone())
            .build()
    };
    let live = OperationBuilder::new()
        .tag("health")
        .summary(Some("Liveness: the process runs"))
        .response("200", ok("Live"))
        .build();
    let ready = OperationBuilder::new()
        .tag("health")
        .summary(Some("Readiness: the process's dependencies answer"))
        .response("200", ok("Ready"))
        .response("503", problem_response("A dependency is down"))
        .build();
    openapi::PathsBuilder::new()
        .path("/health/live", PathItem::new(HttpMethod::Get, live))
        .path("/health/ready", PathItem::new(HttpMethod::Get, ready))
        .build()
}

/// A response whose body is a [`ProblemSchema`].
fn problem_response(description: &str) -> openapi::Response {
    openapi::ResponseBuilder::new()
        .description(description)
        .content(
            crate::http::PROBLEM_JSON,
            openapi::ContentBuilder::new()
                .schema(Some(openapi::Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

const SWAGGER_UI_JS: &[u8] = include_bytes!("../assets/swagger-ui/swagger-ui-bundle.js");
const SWAGGER_UI_CSS: &[u8] = include_bytes!("../assets/swagger-ui/swagger-ui.css");

const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>API docs</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/init.js"></script>
</body>
</html>
"#;

const DOCS_INIT: &str =
    "window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#swagger-ui', deepLinking: true });\n";

/// `GET /openapi.json` (the document, rendered once) and the docs at `GET /docs`.
pub fn router(api: &OpenApi) -> Router {
    let json = api
        .to_pretty_json()
        .expect("an OpenAPI document serializes");
    Router::new()
        .route(
            "/openapi.json",
            get(move || {
                let json = json.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], json).into_response() }
            }),
        )
        .route("/docs", get(|| async { Html(DOCS_PAGE) }))
        .route(
            "/docs/init.js",
            get(|| async { asset("text/javascript", DOCS_INIT.as_bytes()) }),
        )
        .route(
            "/docs/swagger-ui-bundle.js",
            get(|| async { asset("text/javascript", SWAGGER_UI_JS) }),
        )
        .route(
            "/docs/swagger-ui.css",
            get(|| async { asset("text/css", SWAGGER_UI_CSS) }),
        )
}

fn asset(content_type: &'static str, body: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}
