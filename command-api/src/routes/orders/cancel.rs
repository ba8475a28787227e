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
//! The payment stream is read, not written: a capture recorded after that
//! read but before the cancellation commits leaves a cancelled order with a
//! captured payment, which the saga refunds, exactly as it does for a
//! capture that arrives after a payment deadline.

use axum::extract::State;
use axum::http::StatusCode;
use domain::aggregate::{Order, Payment};
use domain::order::{self, OrderCommand, OrderEvent, OrderState, OrderStatus};
use domain::payment::{payment_id_for, PaymentStatus};
use eventstore::LoadRequest;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::docs::{self, CommandProblems};
use crate::error::ApiError;
use crate::extract::{ApiPath, CommandHeaders, NoBody};
use crate::handling::{execute, Command, Reply, StreamState, View};
use crate::state::AppState;

/// The reason recorded on an order its user cancelled.
pub const USER_CANCEL_REASON: &str = "cancelled by user";

/// Success body of `POST /orders/{id}/cancel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CancelledOrder {
    /// The order.
    pub order_id: Uuid,
    /// The order stream's version after the command (unchanged if the order
    /// was already cancelled).
    pub version: i64,
    /// Global position of the order stream's last event.
    pub position: i64,
    /// The order's status: `CANCELLED`.
    #[schema(value_type = String, example = "CANCELLED")]
    pub status: OrderStatus,
}

/// Cancel an order before its payment is captured (no body, or `{}`).
#[utoipa::path(post, path = "/orders/{id}/cancel", tag = "orders",
    params(("id" = Uuid, Path, description = "The order"), docs::CommandHeaders),
    responses(
        (status = 200, description = "Cancelled (or already was)", body = CancelledOrder),
        CommandProblems,
    ))]
#[tracing::instrument(skip(state, headers, _body))]
pub(super) async fn cancel(
    State(state): State<AppState>,
    ApiPath(order_id): ApiPath<Uuid>,
    headers: CommandHeaders,
    _body: NoBody,
) -> Result<Reply, ApiError> {
    let context = headers.into_context(NoBody::FINGERPRINT_BODY);
    execute(&state, context, CancelOrder { order_id }).await
}

/// Cancels an order on behalf of its user.
struct CancelOrder {
    order_id: Uuid,
}

impl Command for CancelOrder {
    type Aggregate = Order;
    type Response = CancelledOrder;
    const SUCCESS: StatusCode = StatusCode::OK;

    fn stream_id(&self) -> Uuid {
        self.order_id
    }

    fn reads(&self) -> Vec<LoadRequest> {
        vec![LoadRequest::of::<Payment>(payment_id_for(self.order_id))]
    }

    fn require(&self, target: &StreamState<OrderState>) -> Result<(), ApiError> {
        match target.state.order() {
            Some(_) => Ok(()),
            None => Err(ApiError::NotFound {
                kind: "order",
                id: self.order_id,
            }),
        }
    }

    fn decide(
        &self,
        target: &StreamState<OrderState>,
        view: &View<'_>,
    ) -> Result<Vec<OrderEvent>, ApiError> {
        let payment = view.load::<Payment>(payment_id_for(self.order_id))?;
        let payment_captured = matches!(
            payment.state.payment().map(|payment| payment.status),
            Some(PaymentStatus::Captured | PaymentStatus::Refunded)
        );
        Ok(order::decide(
            &target.state,
            OrderCommand::Cancel {
                reason: USER_CANCEL_REASON.to_owned(),
                payment_captured,
            },
        )?)
    }

    fn respond(&self, after: &OrderState, version: i64, position: i64) -> CancelledOrder {
        CancelledOrder {
            order_id: self.order_id,
            version,
            position,
            status: after.status().unwrap_or(OrderStatus::Cancelled),
        }
    }
}
