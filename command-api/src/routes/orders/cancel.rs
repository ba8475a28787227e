//! `POST /orders/{id}/cancel`: the user cancels an order before its payment
//! is captured.
//!
//! The command reads the order stream and the order's payment stream
//! ([`payment_id_for`]) and lets the domain decide: a captured (or already
//! refunded) payment, or a CONFIRMED order, is 422 `payment-captured`; a
//! REJECTED order is 422 `invalid-transition`. The saga reacts to the
//! `OrderCancelled` event (releases the stock, voids the payment).
//!
//! Cancelling an order that is already CANCELLED appends nothing and answers
//! 200 with the stream as it is: its current `version` and the global
//! `position` of its last event, so `?min_version=` reads keep working.
//!
//! The payment stream is read without its lock: a capture recorded after
//! that read but before the cancellation commits leaves a cancelled order
//! with a captured payment, which the saga refunds, exactly as it does for
//! a capture that arrives after a payment deadline.

use axum::extract::State;
use axum::http::StatusCode;
use domain::order::{self, OrderCommand, OrderEvent, OrderStatus};
use domain::payment::{self, payment_id_for, PaymentEvent, PaymentStatus};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::{ApiPath, CommandHeaders, NoBody};
use crate::handling::load::load;
use crate::handling::{execute, Attempt, Command, Reply};
use crate::state::AppState;

/// The reason recorded on an order its user cancelled.
pub const USER_CANCEL_REASON: &str = "cancelled by user";

/// Success body of `POST /orders/{id}/cancel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelledOrder {
    /// The order.
    pub order_id: Uuid,
    /// The order stream's version after the command (unchanged if the order
    /// was already cancelled).
    pub version: i64,
    /// Global position of the order stream's last event.
    pub position: i64,
    /// The order's status: `CANCELLED`.
    pub status: OrderStatus,
}

/// The handler: no body, or `{}`.
#[tracing::instrument(skip(state, headers, _body))]
pub(super) async fn cancel(
    State(state): State<AppState>,
    ApiPath(order_id): ApiPath<Uuid>,
    headers: CommandHeaders,
    _body: NoBody,
) -> Result<Reply, ApiError> {
    let context = headers.into_context(NoBody::FINGERPRINT_BODY);
    execute(&state, &context, &CancelOrder { order_id }).await
}

/// Cancels an order on behalf of its user.
struct CancelOrder {
    order_id: Uuid,
}

impl Command for CancelOrder {
    type Response = CancelledOrder;
    const SUCCESS: StatusCode = StatusCode::OK;

    fn stream_id(&self) -> Uuid {
        self.order_id
    }

    async fn attempt(
        &self,
        conn: &mut PgConnection,
        attempt: &Attempt<'_>,
    ) -> Result<CancelledOrder, ApiError> {
        let not_found = ApiError::NotFound {
            kind: "order",
            id: self.order_id,
        };
        let loaded = match load(conn, self.order_id, attempt.lock_stream(), order::evolve).await {
            Err(ApiError::ForeignStream { .. }) => return Err(not_found),
            other => other?,
        };
        if loaded.state.order().is_none() {
            return Err(not_found);
        }
        attempt.check_if_match(self.order_id, loaded.version)?;
        let events = order::decide(
            &loaded.state,
            OrderCommand::Cancel {
                reason: USER_CANCEL_REASON.to_owned(),
                payment_captured: payment_captured(conn, self.order_id).await?,
            },
        )?;
        let (version, position) = if events.is_empty() {
            (loaded.version, loaded.position)
        } else {
            let appended = attempt
                .append::<OrderEvent>(conn, self.order_id, loaded.version, &events)
                .await?;
            (appended.stream_version, appended.last_position)
        };
        let state = events.iter().fold(loaded.state, order::evolve);
        Ok(CancelledOrder {
            order_id: self.order_id,
            version,
            position,
            status: state.status().unwrap_or(OrderStatus::Cancelled),
        })
    }
}

/// Whether the order's payment has been captured (or captured and refunded).
async fn payment_captured(conn: &mut PgConnection, order_id: Uuid) -> Result<bool, ApiError> {
    let payment_id = payment_id_for(order_id);
    let loaded = load::<PaymentEvent, _>(conn, payment_id, false, payment::evolve).await?;
    Ok(matches!(
        loaded.state.payment().map(|payment| payment.status),
        Some(PaymentStatus::Captured | PaymentStatus::Refunded)
    ))
}
