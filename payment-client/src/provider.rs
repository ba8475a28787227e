//! The provider as the saga sees it: a trait, so tests and other
//! implementations can stand in for the HTTP one.

use async_trait::async_trait;
use uuid::Uuid;

use crate::error::PaymentError;
use crate::model::{Charge, ChargeRequest};

/// A payment provider. Every method is safe to call again after any error:
/// charges and refunds are idempotent by key, lookups are reads.
#[async_trait]
pub trait PaymentProvider: Send + Sync {
    /// Charges a card: the captured charge, or `Declined` with the provider's code.
    async fn charge(&self, request: &ChargeRequest) -> Result<Charge, PaymentError>;

    /// Every charge recorded for `reference`, oldest first (to resolve an
    /// unknown outcome). `traceparent` is sent as the W3C header.
    async fn charges_for_reference(
        &self,
        reference: Uuid,
        traceparent: Option<&str>,
    ) -> Result<Vec<Charge>, PaymentError>;

    /// Refunds a captured charge in full (again is harmless); `traceparent`
    /// is sent as the W3C header.
    async fn refund(
        &self,
        charge_id: &str,
        idempotency_key: &str,
        traceparent: Option<&str>,
    ) -> Result<Charge, PaymentError>;
}
