//! Both APIs publish an OpenAPI 3.1 document of every route of the HTTP
//! contract (DESIGN.md), every documented route is served, and the docs page
//! and its assets come from the process itself (no CDN).

use std::collections::BTreeSet;

use e2e::System;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// The HTTP contract of each API, `(method, path template)`.
const COMMAND_ROUTES: &[(&str, &str)] = &[
    ("post", "/products"),
    ("post", "/products/{id}/restock"),
    ("post", "/orders"),
    ("post", "/orders/{id}/cancel"),
    ("get", "/health/live"),
    ("get", "/health/ready"),
];
const QUERY_ROUTES: &[(&str, &str)] = &[
    ("get", "/products"),
    ("get", "/products/{id}"),
    ("get", "/orders/{id}"),
    ("get", "/users/{user_id}/orders"),
    ("get", "/health/live"),
    ("get", "/health/ready"),
];

fn documented(spec: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            routes.insert((method.clone(), path.clone()));
        }
    }
    routes
}

async fn check_api(system: &System, base: &str, contract: &[(&str, &str)], in_code: Value) {
    let response = system
        .http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let spec: Value = response.json().await.unwrap();
    assert_eq!(
        spec, in_code,
        "the served document is the one built from the code"
    );
    assert!(
        spec["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        spec["openapi"]
    );
    let expected: BTreeSet<(String, String)> = contract
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    let found = documented(&spec);
    let missing: Vec<_> = expected.difference(&found).collect();
    let unknown: Vec<_> = found.difference(&expected).collect();
    assert!(
        missing.is_empty(),
        "{base}: routes missing from the spec: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "{base}: routes not in the contract: {unknown:?}"
    );
    assert!(spec["components"]["schemas"]["Problem"].is_object());

    // Every documented route is served: nothing answers with the router's
    // "no such route" fallback or 405.
    let placeholder = uuid::Uuid::now_v7().to_string();
    for (method, path) in &found {
        let concrete = path
            .replace("{id}", &placeholder)
            .replace("{user_id}", "alice");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let response = system
            .http
            .request(method.clone(), format!("{base}{concrete}"))
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_ne!(
            body["detail"], "no such route",
            "{method} {path} is not served"
        );
    }

    let page = system
        .http
        .get(format!("{base}/docs"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(
        !html.contains("://"),
        "the docs page loads nothing from elsewhere"
    );
    for (asset, kind) in [
        ("/docs/swagger-ui-bundle.js", "text/javascript"),
        ("/docs/swagger-ui.css", "text/css"),
        ("/docs/init.js", "text/javascript"),
    ] {
        let response = system
            .http
            .get(format!("{base}{asset}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
        assert_eq!(response.headers()["content-type"], kind, "{asset}");
        assert!(!response.bytes().await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn both_apis_document_every_route_of_the_contract_and_serve_their_docs() {
    let system = System::start_with(e2e::Options {
        saga: false,
        ..e2e::Options::default()
    })
    .await;
    let command = serde_json::to_value(command_api::openapi()).unwrap();
    let query = serde_json::to_value(query_api::openapi()).unwrap();
    check_api(&system, &system.command_url, COMMAND_ROUTES, command).await;
    check_api(&system, &system.query_url, QUERY_ROUTES, query).await;
}
