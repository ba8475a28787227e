//! `POST /orders` and `POST /orders/{id}/cancel` ([`cancel`]).

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use domain::aggregate::{Order, Product};
use domain::order::{
    self, OrderCommand, OrderEvent, OrderState, OrderStatus, RequestedLine, MAX_LINES,
};
use eventstore::LoadRequest;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::docs::{self, CommandProblems};
use crate::error::ApiError;
use crate::extract::{CommandHeaders, JsonBody};
use crate::handling::{execute, Command, Reply, StreamState, View};
use crate::state::AppState;

pub mod cancel;

pub use cancel::CancelledOrder;

/// The order routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(place))
        .routes(routes!(cancel::cancel))
}

/// Body of `POST /orders`. Unit prices are never taken from the client.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrderRequest {
    /// Who orders (1..=64 characters).
    #[schema(min_length = 1, max_length = 64)]
    pub user_id: String,
    /// What is ordered (1..=50 lines, distinct products).
    #[schema(min_items = 1, max_items = 50)]
    pub lines: Vec<OrderLineRequest>,
    /// How it will be paid.
    pub payment: PaymentRequest,
}

/// One requested line.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderLineRequest {
    /// The product.
    pub product_id: Uuid,
    /// Units (1..=1000).
    #[schema(minimum = 1, maximum = 1000)]
    pub quantity: i64,
}

/// Payment details of an order.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentRequest {
    /// Opaque token the payment gateway will charge.
    pub token: String,
}

/// Success body of `POST /orders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderPlaced {
    /// The new order's id (UUIDv7).
    pub order_id: Uuid,
    /// The order stream's version after the append.
    pub version: i64,
    /// Global position of the last appended event.
    pub position: i64,
    /// The order's status (`PENDING`).
    #[schema(value_type = String, example = "PENDING")]
    pub status: OrderStatus,
}

/// Place an order (priced from the product streams; the saga reserves, charges and confirms it).
#[utoipa::path(post, path = "/orders", tag = "orders",
    params(docs::CommandHeaders),
    request_body = PlaceOrderRequest,
    responses(
        (status = 201, description = "Placed, PENDING; `Location` names the order", body = OrderPlaced),
        CommandProblems,
    ))]
#[tracing::instrument(skip_all, fields(order_id, user_id = %body.value.user_id))]
async fn place(
    State(state): State<AppState>,
    headers: CommandHeaders,
    body: JsonBody<PlaceOrderRequest>,
) -> Result<Reply, ApiError> {
    let request = body.value;
    let order_id = Uuid::now_v7();
    tracing::Span::current().record("order_id", tracing::field::display(order_id));
    let command = PlaceOrder {
        order_id,
        user_id: request.user_id,
        lines: request
            .lines
            .into_iter()
            .map(|line| RequestedLine {
                product_id: line.product_id,
                quantity: line.quantity,
            })
            .collect(),
        payment_token: request.payment.token,
        placed_at: Utc::now(),
    };
    execute(&state, headers.into_context(&body.raw), command).await
}

/// Places a new order priced from the product streams.
struct PlaceOrder {
    order_id: Uuid,
    user_id: String,
    lines: Vec<RequestedLine>,
    payment_token: String,
    placed_at: DateTime<Utc>,
}

impl Command for PlaceOrder {
    type Aggregate = Order;
    type Response = OrderPlaced;
    const SUCCESS: StatusCode = StatusCode::CREATED;

    fn stream_id(&self) -> Uuid {
        self.order_id
    }

    /// The product of each line, for its catalog price. An order with too
    /// many lines is refused by the domain before any price is needed.
    fn reads(&self) -> Vec<LoadRequest> {
        if self.lines.len() > MAX_LINES {
            return Vec::new();
        }
        self.lines
            .iter()
            .map(|line| LoadRequest::of::<Product>(line.product_id))
            .collect()
    }

    fn location(body: &serde_json::Value) -> Option<String> {
        let id = body.get("order_id")?.as_str()?;
        Some(format!("/orders/{id}"))
    }

    fn decide(
        &self,
        target: &StreamState<OrderState>,
        view: &View<'_>,
    ) -> Result<Vec<OrderEvent>, ApiError> {
        let prices = if self.lines.len() <= MAX_LINES {
            catalog_prices(view, &self.lines)?
        } else {
            HashMap::new()
        };
        Ok(order::decide(
            &target.state,
            OrderCommand::Place {
                user_id: self.user_id.clone(),
                lines: self.lines.clone(),
                payment_token: self.payment_token.clone(),
                prices,
                placed_at: self.placed_at,
            },
        )?)
    }

    fn respond(&self, after: &OrderState, version: i64, position: i64) -> OrderPlaced {
        OrderPlaced {
            order_id: self.order_id,
            version,
            position,
            status: after.status().unwrap_or(OrderStatus::Pending),
        }
    }
}

/// Current catalog price of each registered product among `lines`; products
/// that do not exist (or ids of other kinds of streams) are left out.
fn catalog_prices(
    view: &View<'_>,
    lines: &[RequestedLine],
) -> Result<HashMap<Uuid, i64>, ApiError> {
    let mut prices = HashMap::with_capacity(lines.len());
    for line in lines {
        if prices.contains_key(&line.product_id) {
            continue;
        }
        let loaded = match view.load::<Product>(line.product_id) {
            Ok(loaded) => loaded,
            Err(ApiError::ForeignStream { .. }) => continue,
            Err(error) => return Err(error),
        };
        if let Some(price) = loaded.state.price_cents() {
            prices.insert(line.product_id, price);
        }
    }
    Ok(prices)
}
