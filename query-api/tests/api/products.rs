use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{ProductSeed, TestApp};

#[tokio::test]
async fn product_is_returned_with_exactly_the_documented_fields() {
    let app = TestApp::spawn().await;
    let product = ProductSeed {
        available: 7,
        reserved: 2,
        sold: 1,
        version: 4,
        ..ProductSeed::named("Espresso cup")
    };
    app.insert_product(&product).await;

    let reply = app.get(&format!("/products/{}", product.product_id)).await;

    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(
        reply.body,
        json!({
            "product_id": product.product_id,
            "name": "Espresso cup",
            "price_cents": 1250,
            "available": 7,
            "reserved": 2,
            "sold": 1,
            "version": 4,
        })
    );
    assert_eq!(reply.header("etag"), Some("\"4\""));
    assert_eq!(reply.header("x-read-model-version"), Some("4"));
    assert_eq!(reply.header("x-read-model-stale"), None);
}

#[tokio::test]
async fn products_are_listed_by_name_then_id_in_pages() {
    let app = TestApp::spawn().await;
    let mut seeds: Vec<ProductSeed> = ["mug", "bowl", "cup", "bowl", "plate", "cup", "bowl"]
        .into_iter()
        .map(ProductSeed::named)
        .collect();
    for seed in &seeds {
        app.insert_product(seed).await;
    }
    seeds.sort_by(|a, b| (&a.name, a.product_id).cmp(&(&b.name, b.product_id)));
    let expected: Vec<Uuid> = seeds.iter().map(|seed| seed.product_id).collect();

    let mut seen = Vec::new();
    let mut page_sizes = Vec::new();
    let mut path = "/products?limit=3".to_owned();
    loop {
        let reply = app.get(&path).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let products = reply.body["products"].as_array().expect("products array");
        page_sizes.push(products.len());
        for product in products {
            assert_eq!(product.as_object().unwrap().len(), 7, "{product}");
            seen.push(
                product["product_id"]
                    .as_str()
                    .unwrap()
                    .parse::<Uuid>()
                    .unwrap(),
            );
        }
        match reply.body["next"].as_str() {
            Some(next) => path = format!("/products?limit=3&after={next}"),
            None => {
                assert!(reply.body["next"].is_null());
                break;
            }
        }
    }

    assert_eq!(page_sizes, [3, 3, 1]);
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn product_listing_defaults_to_twenty_per_page() {
    let app = TestApp::spawn().await;
    for i in 0..25 {
        app.insert_product(&ProductSeed::named(&format!("product {i:02}")))
            .await;
    }

    let first = app.get("/products").await;
    let first_page = first.body["products"].as_array().unwrap();
    assert_eq!(first_page.len(), 20);
    assert_eq!(first_page[0]["name"], "product 00");
    let next = first.body["next"].as_str().expect("a next cursor");

    let second = app.get(&format!("/products?after={next}")).await;
    let second_page = second.body["products"].as_array().unwrap();
    assert_eq!(second_page.len(), 5);
    assert_eq!(second_page[0]["name"], "product 20");
    assert!(second.body["next"].is_null());

    let all: HashSet<_> = first_page
        .iter()
        .chain(second_page)
        .map(|p| p["product_id"].clone().to_string())
        .collect();
    assert_eq!(all.len(), 25);
}

#[tokio::test]
async fn empty_catalog_is_an_empty_last_page() {
    let app = TestApp::spawn().await;

    let reply = app.get("/products").await;

    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, json!({"products": [], "next": null}));
}
