//! What the client sends and receives.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A charge to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    /// Sent as `Idempotency-Key`; every retry of this charge reuses it, so
    /// the provider charges at most once.
    pub idempotency_key: String,
    /// Amount in minor units (> 0).
    pub amount_cents: i64,
    /// ISO 4217 code, e.g. `EUR`.
    pub currency: String,
    /// The card token.
    pub token: String,
    /// Our reference, e.g. the order id; charges can be looked up by it.
    pub reference: Uuid,
    /// W3C `traceparent` of the caller's trace, sent as the `traceparent` header.
    pub traceparent: Option<String>,
}

/// The JSON body of `POST /charges`.
#[derive(Debug, Serialize)]
pub(crate) struct ChargeBody<'a> {
    pub amount_cents: i64,
    pub currency: &'a str,
    pub token: &'a str,
    pub reference: Uuid,
}

impl<'a> From<&'a ChargeRequest> for ChargeBody<'a> {
    fn from(request: &'a ChargeRequest) -> Self {
        Self {
            amount_cents: request.amount_cents,
            currency: &request.currency,
            token: &request.token,
            reference: request.reference,
        }
    }
}

/// Where a charge stands at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChargeStatus {
    /// The money was taken.
    Captured,
    /// The card was declined.
    Declined,
    /// The money was taken and given back.
    Refunded,
}

/// A charge as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    /// The provider's id (`ch_...`).
    pub charge_id: String,
    /// Where it stands.
    pub status: ChargeStatus,
    /// Amount in minor units.
    pub amount_cents: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Our reference.
    pub reference: Uuid,
    /// When the provider recorded it.
    pub created_at: DateTime<Utc>,
    /// Why it was declined, if it was.
    #[serde(default)]
    pub decline_code: Option<String>,
    /// When it was refunded, if it was.
    #[serde(default)]
    pub refunded_at: Option<DateTime<Utc>>,
    /// The refund's id (`re_...`), if refunded.
    #[serde(default)]
    pub refund_id: Option<String>,
}

/// The body of `GET /charges?reference=`.
#[derive(Debug, Deserialize)]
pub(crate) struct ChargeList {
    pub charges: Vec<Charge>,
}
