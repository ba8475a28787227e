//! `GET /products` (catalog, by name) and `GET /products/{id}`.

use axum::extract::State;
use axum::response::Response;
use axum::Json;
use serde::Serialize;
use sqlx::PgPool;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::consistency::{read_at_least, MinVersion};
use crate::docs::QueryProblems;
use crate::error::{ApiError, DbContext};
use crate::extract::{ApiPath, ApiQuery};
use crate::model::{product_columns, Product};
use crate::pagination::{into_page, PageParams, ProductCursor};
use crate::AppState;

/// The product routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_products))
        .routes(routes!(get_product))
}

/// A page of the catalog.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProductPage {
    /// Products ordered by name, then id.
    pub products: Vec<Product>,
    /// Cursor of the next page (`?after=`), `null` on the last one.
    pub next: Option<String>,
}

/// One product with its stock levels.
#[utoipa::path(get, path = "/products/{id}", tag = "products",
    params(("id" = Uuid, Path, description = "The product"), MinVersion),
    responses(
        (status = 200, description = "The product (`ETag`/`X-Read-Model-Version` give its version)", body = Product),
        QueryProblems,
    ))]
#[tracing::instrument(skip(state))]
async fn get_product(
    State(state): State<AppState>,
    ApiPath(product_id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<MinVersion>,
) -> Result<Response, ApiError> {
    let observed = read_at_least(query.min_version, state.settings(), || {
        load_product(state.pool(), product_id)
    })
    .await?;
    Ok(observed.into_response_or(|| format!("product {product_id} does not exist")))
}

/// The catalog, by name.
#[utoipa::path(get, path = "/products", tag = "products",
    params(PageParams),
    responses((status = 200, description = "A page of products", body = ProductPage), QueryProblems))]
#[tracing::instrument(skip(state))]
async fn list_products(
    State(state): State<AppState>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<ProductPage>, ApiError> {
    let limit = page.limit()?;
    let fetch = i64::from(limit) + 1;
    let rows: Vec<Product> = match page.cursor::<ProductCursor>()? {
        None => {
            sqlx::query_as(concat!(
                "SELECT ",
                product_columns!(),
                " FROM read.products p ORDER BY p.name, p.product_id LIMIT $1"
            ))
            .bind(fetch)
            .fetch_all(state.pool())
            .await
        }
        Some(after) => {
            sqlx::query_as(concat!(
                "SELECT ",
                product_columns!(),
                " FROM read.products p WHERE (p.name, p.product_id) > ($1, $2)",
                " ORDER BY p.name, p.product_id LIMIT $3"
            ))
            .bind(after.name)
            .bind(after.product_id)
            .bind(fetch)
            .fetch_all(state.pool())
            .await
        }
    }
    .db_context(|| "listing products".to_owned())?;
    let (products, next) = into_page(rows, limit, |product| ProductCursor {
        name: product.name.clone(),
        product_id: product.product_id,
    });
    Ok(Json(ProductPage { products, next }))
}

async fn load_product(pool: &PgPool, product_id: Uuid) -> Result<Option<Product>, ApiError> {
    sqlx::query_as(concat!(
        "SELECT ",
        product_columns!(),
        " FROM read.products p WHERE p.product_id = $1"
    ))
    .bind(product_id)
    .fetch_optional(pool)
    .await
    .db_context(|| format!("loading product {product_id}"))
}
