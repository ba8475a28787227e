//! `GET /orders/{id}` and `GET /users/{user_id}/orders` (newest first).

use axum::extract::State;
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::consistency::{read_at_least, MinVersion};
use crate::docs::QueryProblems;
use crate::error::{ApiError, DbContext};
use crate::extract::{ApiPath, ApiQuery};
use crate::model::{order_columns, payment_join, Order};
use crate::pagination::{into_page, OrderCursor, PageParams};
use crate::AppState;

/// The order routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_order))
        .routes(routes!(list_user_orders))
}

/// A page of one user's orders.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrderPage {
    /// Orders, newest first.
    pub orders: Vec<Order>,
    /// Cursor of the next page (`?after=`), `null` on the last one.
    pub next: Option<String>,
}

/// An order with the key it has in `read.user_orders`.
#[derive(sqlx::FromRow)]
struct UserOrderRow {
    key_placed_at: DateTime<Utc>,
    key_order_id: Uuid,
    #[sqlx(flatten)]
    order: Order,
}

/// One order, with its lines and payment.
#[utoipa::path(get, path = "/orders/{id}", tag = "orders",
    params(("id" = Uuid, Path, description = "The order"), MinVersion),
    responses(
        (status = 200, description = "The order (`ETag`/`X-Read-Model-Version` give its version)", body = Order),
        QueryProblems,
    ))]
#[tracing::instrument(skip(state))]
async fn get_order(
    State(state): State<AppState>,
    ApiPath(order_id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<MinVersion>,
) -> Result<Response, ApiError> {
    let observed = read_at_least(query.min_version, state.settings(), || {
        load_order(state.pool(), order_id)
    })
    .await?;
    Ok(observed.into_response_or(|| format!("order {order_id} does not exist")))
}

/// One user's orders, newest first.
#[utoipa::path(get, path = "/users/{user_id}/orders", tag = "orders",
    params(("user_id" = String, Path, description = "The user"), PageParams),
    responses((status = 200, description = "A page of orders", body = OrderPage), QueryProblems))]
#[tracing::instrument(skip(state))]
async fn list_user_orders(
    State(state): State<AppState>,
    ApiPath(user_id): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<OrderPage>, ApiError> {
    let limit = page.limit()?;
    let fetch = i64::from(limit) + 1;
    // Keyset over the (user_id, placed_at DESC, order_id DESC) index; the
    // details come from read.orders, the payment from read.payments.
    let rows: Vec<UserOrderRow> = match page.cursor::<OrderCursor>()? {
        None => {
            sqlx::query_as(concat!(
                "SELECT u.placed_at AS key_placed_at, u.order_id AS key_order_id, ",
                order_columns!(),
                " FROM read.user_orders u JOIN read.orders o ON o.order_id = u.order_id",
                payment_join!(),
                " WHERE u.user_id = $1",
                " ORDER BY u.placed_at DESC, u.order_id DESC LIMIT $2"
            ))
            .bind(&user_id)
            .bind(fetch)
            .fetch_all(state.pool())
            .await
        }
        Some(after) => {
            sqlx::query_as(concat!(
                "SELECT u.placed_at AS key_placed_at, u.order_id AS key_order_id, ",
                order_columns!(),
                " FROM read.user_orders u JOIN read.orders o ON o.order_id = u.order_id",
                payment_join!(),
                " WHERE u.user_id = $1 AND (u.placed_at, u.order_id) < ($2, $3)",
                " ORDER BY u.placed_at DESC, u.order_id DESC LIMIT $4"
            ))
            .bind(&user_id)
            .bind(after.placed_at)
            .bind(after.order_id)
            .bind(fetch)
            .fetch_all(state.pool())
            .await
        }
    }
    .db_context(|| format!("listing the orders of user {user_id}"))?;
    let (rows, next) = into_page(rows, limit, |row| OrderCursor {
        placed_at: row.key_placed_at,
        order_id: row.key_order_id,
    });
    let orders = rows.into_iter().map(|row| row.order).collect();
    Ok(Json(OrderPage { orders, next }))
}

async fn load_order(pool: &PgPool, order_id: Uuid) -> Result<Option<Order>, ApiError> {
    sqlx::query_as(concat!(
        "SELECT ",
        order_columns!(),
        " FROM read.orders o",
        payment_join!(),
        " WHERE o.order_id = $1"
    ))
    .bind(order_id)
    .fetch_optional(pool)
    .await
    .db_context(|| format!("loading order {order_id}"))
}
