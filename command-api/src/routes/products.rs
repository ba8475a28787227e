//! `POST /products` and `POST /products/{id}/restock`.

use axum::extract::State;
use axum::http::StatusCode;
use domain::aggregate::Product;
use domain::product::{self, ProductCommand, ProductEvent, ProductState};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::docs::{self, CommandProblems};
use crate::error::ApiError;
use crate::extract::{ApiPath, CommandHeaders, JsonBody};
use crate::handling::{execute, Command, Reply, StreamState, View};
use crate::state::AppState;

/// The product routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(restock))
}

/// Body of `POST /products`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterProductRequest {
    /// Display name (surrounding whitespace trimmed; 1..=200 characters).
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: String,
    /// Unit price in cents (> 0).
    #[schema(minimum = 1)]
    pub price_cents: i64,
    /// Units on hand (>= 0).
    #[schema(minimum = 0)]
    pub initial_stock: i64,
    /// The id to use; a UUIDv7 is generated when absent.
    #[serde(default)]
    pub product_id: Option<Uuid>,
}

/// Body of `POST /products/{id}/restock`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestockRequest {
    /// Units to add (> 0).
    #[schema(minimum = 1)]
    pub quantity: i64,
}

/// Success body of both product commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProductWritten {
    /// The product.
    pub product_id: Uuid,
    /// The product stream's version after the append.
    pub version: i64,
    /// Global position of the last appended event.
    pub position: i64,
}

/// Register a product.
#[utoipa::path(post, path = "/products", tag = "products",
    params(docs::CommandHeaders),
    request_body = RegisterProductRequest,
    responses(
        (status = 201, description = "Registered; `Location` names the product", body = ProductWritten),
        CommandProblems,
    ))]
#[tracing::instrument(skip_all, fields(product_id))]
async fn register(
    State(state): State<AppState>,
    headers: CommandHeaders,
    body: JsonBody<RegisterProductRequest>,
) -> Result<Reply, ApiError> {
    let request = body.value;
    let product_id = request.product_id.unwrap_or_else(Uuid::now_v7);
    tracing::Span::current().record("product_id", tracing::field::display(product_id));
    let command = RegisterProduct {
        product_id,
        name: request.name,
        price_cents: request.price_cents,
        initial_stock: request.initial_stock,
    };
    execute(&state, headers.into_context(&body.raw), command).await
}

/// Add stock to a product.
#[utoipa::path(post, path = "/products/{id}/restock", tag = "products",
    params(("id" = Uuid, Path, description = "The product"), docs::CommandHeaders),
    request_body = RestockRequest,
    responses((status = 200, description = "Restocked", body = ProductWritten), CommandProblems))]
#[tracing::instrument(skip(state, headers, body))]
async fn restock(
    State(state): State<AppState>,
    ApiPath(product_id): ApiPath<Uuid>,
    headers: CommandHeaders,
    body: JsonBody<RestockRequest>,
) -> Result<Reply, ApiError> {
    let command = Restock {
        product_id,
        quantity: body.value.quantity,
    };
    execute(&state, headers.into_context(&body.raw), command).await
}

/// The success body of both product commands.
fn written(product_id: Uuid, version: i64, position: i64) -> ProductWritten {
    ProductWritten {
        product_id,
        version,
        position,
    }
}

/// Registers a new product.
struct RegisterProduct {
    product_id: Uuid,
    name: String,
    price_cents: i64,
    initial_stock: i64,
}

impl Command for RegisterProduct {
    type Aggregate = Product;
    type Response = ProductWritten;
    const SUCCESS: StatusCode = StatusCode::CREATED;

    fn stream_id(&self) -> Uuid {
        self.product_id
    }

    fn location(body: &serde_json::Value) -> Option<String> {
        let id = body.get("product_id")?.as_str()?;
        Some(format!("/products/{id}"))
    }

    fn decide(
        &self,
        target: &StreamState<ProductState>,
        _view: &View<'_>,
    ) -> Result<Vec<ProductEvent>, ApiError> {
        Ok(product::decide(
            &target.state,
            ProductCommand::Register {
                name: self.name.clone(),
                price_cents: self.price_cents,
                initial_stock: self.initial_stock,
            },
        )?)
    }

    fn respond(&self, _after: &ProductState, version: i64, position: i64) -> ProductWritten {
        written(self.product_id, version, position)
    }
}

/// Adds stock to an existing product.
struct Restock {
    product_id: Uuid,
    quantity: i64,
}

impl Command for Restock {
    type Aggregate = Product;
    type Response = ProductWritten;
    const SUCCESS: StatusCode = StatusCode::OK;

    fn stream_id(&self) -> Uuid {
        self.product_id
    }

    fn require(&self, target: &StreamState<ProductState>) -> Result<(), ApiError> {
        if target.state.is_registered() {
            Ok(())
        } else {
            Err(ApiError::NotFound {
                kind: "product",
                id: self.product_id,
            })
        }
    }

    fn decide(
        &self,
        target: &StreamState<ProductState>,
        _view: &View<'_>,
    ) -> Result<Vec<ProductEvent>, ApiError> {
        Ok(product::decide(
            &target.state,
            ProductCommand::Restock {
                quantity: self.quantity,
            },
        )?)
    }

    fn respond(&self, _after: &ProductState, version: i64, position: i64) -> ProductWritten {
        written(self.product_id, version, position)
    }
}
