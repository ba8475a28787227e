use std::time::Duration;

use reqwest::StatusCode;
use testkit::{TcpProxy, TestDatabase};

use crate::helpers::{query_pool, ProductSeed, TestApp};
use query_api::Settings;

#[tokio::test]
async fn database_outage_is_a_503_and_the_api_recovers() {
    let db = TestDatabase::create().await;
    let proxy = TcpProxy::start(testkit::database::server_address(&db.query_url).await).await;
    let proxied_url = testkit::database::with_address(&db.query_url, proxy.address());
    let app = TestApp::serve(db, query_pool(&proxied_url, 500), Settings::default()).await;
    let product = ProductSeed::named("ladle");
    app.insert_product(&product).await;
    let product_path = format!("/products/{}", product.product_id);
    assert_eq!(app.get(&product_path).await.status, StatusCode::OK);
    assert_eq!(app.get("/health/ready").await.status, StatusCode::OK);

    proxy.cut();

    app.get(&product_path)
        .await
        .assert_problem(StatusCode::SERVICE_UNAVAILABLE);
    app.get("/users/alice/orders")
        .await
        .assert_problem(StatusCode::SERVICE_UNAVAILABLE);
    app.get("/health/ready")
        .await
        .assert_problem(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(app.get("/health/live").await.status, StatusCode::OK);

    proxy.restore();

    testkit::eventually("the API to recover", Duration::from_secs(10), || async {
        let ready = app.get("/health/ready").await.status == StatusCode::OK;
        let read = app.get(&product_path).await;
        (ready && read.status == StatusCode::OK).then_some(read)
    })
    .await;
}
