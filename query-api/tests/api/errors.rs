use reqwest::StatusCode;
use uuid::Uuid;

use crate::helpers::{get, http_client, TestApp};

#[tokio::test]
async fn malformed_uuid_in_the_path_is_a_400_problem() {
    let app = TestApp::spawn().await;

    for path in [
        "/products/not-a-uuid",
        "/orders/1234",
        "/orders/not-a-uuid?min_version=1",
    ] {
        let reply = app.get(path).await;
        reply.assert_problem(StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn bad_limit_is_a_400_problem() {
    let app = TestApp::spawn().await;

    for list in ["/products", "/users/alice/orders"] {
        for limit in ["0", "101", "abc", "-1", "", "2.5"] {
            let reply = app.get(&format!("{list}?limit={limit}")).await;
            reply.assert_problem(StatusCode::BAD_REQUEST);
        }
    }
}

#[tokio::test]
async fn bad_cursor_is_a_400_problem() {
    let app = TestApp::spawn().await;
    for i in 0..3 {
        app.insert_product(&crate::helpers::ProductSeed::named(&format!("p{i}")))
            .await;
    }
    let product_cursor = app.get("/products?limit=1").await.body["next"]
        .as_str()
        .expect("a product cursor")
        .to_owned();

    for cursor in ["!!!", "AAAA", "", product_cursor.as_str()] {
        let reply = app
            .get(&format!("/users/alice/orders?after={cursor}"))
            .await;
        reply.assert_problem(StatusCode::BAD_REQUEST);
    }
    for cursor in ["%25%25", "b3JkZXI"] {
        let reply = app.get(&format!("/products?after={cursor}")).await;
        reply.assert_problem(StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn bad_min_version_is_a_400_problem() {
    let app = TestApp::spawn().await;
    let id = Uuid::now_v7();

    for resource in ["products", "orders"] {
        for min_version in ["-1", "abc", "1.5", ""] {
            let reply = app
                .get(&format!("/{resource}/{id}?min_version={min_version}"))
                .await;
            reply.assert_problem(StatusCode::BAD_REQUEST);
        }
    }
}

#[tokio::test]
async fn unknown_product_or_order_is_a_404_problem() {
    let app = TestApp::spawn().await;

    for resource in ["products", "orders"] {
        let reply = app.get(&format!("/{resource}/{}", Uuid::now_v7())).await;
        reply.assert_problem(StatusCode::NOT_FOUND);
        assert_eq!(reply.header("x-read-model-stale"), None);
        assert_eq!(reply.header("etag"), None);
    }
}

#[tokio::test]
async fn unknown_route_is_a_404_problem_and_writes_are_405() {
    let app = TestApp::spawn().await;

    app.get("/nowhere")
        .await
        .assert_problem(StatusCode::NOT_FOUND);
    let response = http_client()
        .post(format!("http://{}/products", app.address))
        .json(&serde_json::json!({"name": "x"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}

#[tokio::test]
async fn health_probes_answer_when_the_database_is_up() {
    let app = TestApp::spawn().await;
    let http = http_client();

    let live = get(&http, app.address, "/health/live").await;
    let ready = get(&http, app.address, "/health/ready").await;

    assert_eq!(live.status, StatusCode::OK);
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
}
