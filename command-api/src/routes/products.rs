//! `POST /products` and `POST /products/{id}/restock`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use domain::aggregate::Product;
use domain::product::{self, ProductCommand, ProductEvent, ProductState};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::{ApiPath, CommandHeaders, JsonBody};
use crate::handling::{execute, Command, Reply, StreamState, View};
use crate::state::AppState;

/// The product routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/products", post(register))
        .route("/products/{id}/restock", post(restock))
}

/// Body of `POST /products`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterProductRequest {
    /// Display name.
    pub name: String,
    /// Unit price in cents (> 0).
    pub price_cents: i64,
    /// Units on hand (>= 0).
    pub initial_stock: i64,
    /// The id to use; a UUIDv7 is generated when absent.
    #[serde(default)]
    pub product_id: Option<Uuid>,
}

/// Body of `POST /products/{id}/restock`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestockRequest {
    /// Units to add (> 0).
    pub quantity: i64,
}

/// Success body of both product commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductWritten {
    /// The product.
    pub product_id: Uuid,
    /// The product stream's version after the append.
    pub version: i64,
    /// Global position of the last appended event.
    pub position: i64,
}

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
