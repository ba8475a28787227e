//! The simulator's ledger (schema `gateway`): charges, refunds and flaky
//! attempt counters. Public so other crates' tests can check the provider's
//! side of the books ([`net_captured_by_reference`], [`charges_for`]).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// Where a charge stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChargeStatus {
    /// The money was taken.
    Captured,
    /// The card was declined; no money moved.
    Declined,
    /// The money was taken and given back.
    Refunded,
}

impl ChargeStatus {
    /// The status as stored and sent (`captured`, `declined`, `refunded`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Captured => "captured",
            Self::Declined => "declined",
            Self::Refunded => "refunded",
        }
    }
}

impl fmt::Display for ChargeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChargeStatus {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "captured" => Ok(Self::Captured),
            "declined" => Ok(Self::Declined),
            "refunded" => Ok(Self::Refunded),
            other => Err(format!("unknown charge status `{other}`")),
        }
    }
}

impl TryFrom<String> for ChargeStatus {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

/// One row of `gateway.charges`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Charge {
    /// `ch_<uuid simple>`.
    pub charge_id: String,
    /// The key the charge was created with.
    pub idempotency_key: String,
    /// Fingerprint of the request body first sent with the key.
    pub request_hash: String,
    /// The merchant's reference (an order id).
    pub reference: Uuid,
    /// Amount in minor units.
    pub amount_cents: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// The card token.
    pub token: String,
    /// Where the charge stands.
    #[sqlx(try_from = "String")]
    pub status: ChargeStatus,
    /// Why it was declined, if it was.
    pub decline_code: Option<String>,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// When it was refunded, if it was.
    pub refunded_at: Option<DateTime<Utc>>,
    /// `re_<uuid simple>`, if refunded.
    pub refund_id: Option<String>,
}

/// A charge to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCharge {
    /// The request's `Idempotency-Key`.
    pub idempotency_key: String,
    /// Fingerprint of the request body.
    pub request_hash: String,
    /// The merchant's reference.
    pub reference: Uuid,
    /// Amount in minor units.
    pub amount_cents: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// The card token.
    pub token: String,
    /// `Some(code)` to record a decline, `None` to capture.
    pub decline_code: Option<String>,
}

/// What [`record_charge`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    /// A new charge was recorded.
    Created(Charge),
    /// A charge already existed under the key (it may be for another body).
    Existing(Charge),
}

/// What [`refund`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum RefundOutcome {
    /// The charge is refunded (now, or already before).
    Refunded(Charge),
    /// The charge was declined: nothing to refund.
    Declined(Charge),
    /// No such charge.
    NotFound,
}

const COLUMNS: &str = "charge_id, idempotency_key, request_hash, reference, amount_cents, \
    currency, token, status, decline_code, created_at, refunded_at, refund_id";

/// Records `charge` unless its idempotency key is taken; exactly one charge
/// per key even under concurrent requests (unique key + `ON CONFLICT`).
#[tracing::instrument(skip(pool, charge), fields(key = %charge.idempotency_key))]
pub async fn record_charge(pool: &PgPool, charge: &NewCharge) -> Result<Recorded, sqlx::Error> {
    let status = if charge.decline_code.is_some() {
        ChargeStatus::Declined
    } else {
        ChargeStatus::Captured
    };
    let inserted: Option<Charge> = sqlx::query_as(&format!(
        "INSERT INTO gateway.charges (charge_id, idempotency_key, request_hash, reference,
             amount_cents, currency, token, status, decline_code)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (idempotency_key) DO NOTHING
         RETURNING {COLUMNS}"
    ))
    .bind(format!("ch_{}", Uuid::new_v4().simple()))
    .bind(&charge.idempotency_key)
    .bind(&charge.request_hash)
    .bind(charge.reference)
    .bind(charge.amount_cents)
    .bind(&charge.currency)
    .bind(&charge.token)
    .bind(status.as_str())
    .bind(&charge.decline_code)
    .fetch_optional(pool)
    .await?;
    if let Some(created) = inserted {
        return Ok(Recorded::Created(created));
    }
    let existing = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM gateway.charges WHERE idempotency_key = $1"
    ))
    .bind(&charge.idempotency_key)
    .fetch_one(pool)
    .await?;
    Ok(Recorded::Existing(existing))
}

/// The charge `charge_id`, if any.
#[tracing::instrument(skip(pool))]
pub async fn find(pool: &PgPool, charge_id: &str) -> Result<Option<Charge>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM gateway.charges WHERE charge_id = $1"
    ))
    .bind(charge_id)
    .fetch_optional(pool)
    .await
}

/// Every charge recorded for `reference`, oldest first.
#[tracing::instrument(skip(pool))]
pub async fn charges_for(pool: &PgPool, reference: Uuid) -> Result<Vec<Charge>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM gateway.charges WHERE reference = $1
         ORDER BY created_at, charge_id"
    ))
    .bind(reference)
    .fetch_all(pool)
    .await
}

/// Refunds a captured charge in full; refunding twice is harmless.
#[tracing::instrument(skip(pool))]
pub async fn refund(pool: &PgPool, charge_id: &str) -> Result<RefundOutcome, sqlx::Error> {
    let refunded: Option<Charge> = sqlx::query_as(&format!(
        "UPDATE gateway.charges
         SET status = 'refunded', refunded_at = clock_timestamp(), refund_id = $2
         WHERE charge_id = $1 AND status = 'captured'
         RETURNING {COLUMNS}"
    ))
    .bind(charge_id)
    .bind(format!("re_{}", Uuid::new_v4().simple()))
    .fetch_optional(pool)
    .await?;
    if let Some(charge) = refunded {
        return Ok(RefundOutcome::Refunded(charge));
    }
    Ok(match find(pool, charge_id).await? {
        None => RefundOutcome::NotFound,
        Some(charge) if charge.status == ChargeStatus::Declined => RefundOutcome::Declined(charge),
        Some(charge) => RefundOutcome::Refunded(charge),
    })
}

/// Counts one more `tok_flaky*` request under `idempotency_key` and returns
/// how many there have been, this one included.
#[tracing::instrument(skip(pool))]
pub async fn count_flaky_attempt(pool: &PgPool, idempotency_key: &str) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO gateway.flaky_attempts (idempotency_key, attempts) VALUES ($1, 1)
         ON CONFLICT (idempotency_key) DO UPDATE
         SET attempts = gateway.flaky_attempts.attempts + 1, last_attempt_at = clock_timestamp()
         RETURNING attempts",
    )
    .bind(idempotency_key)
    .fetch_one(pool)
    .await
}

/// Per reference: the amount captured and not refunded (declined and
/// refunded charges count zero). Every reference with a charge is present.
#[tracing::instrument(skip(pool))]
pub async fn net_captured_by_reference(pool: &PgPool) -> Result<HashMap<Uuid, i64>, sqlx::Error> {
    let rows: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT reference,
                COALESCE(SUM(amount_cents) FILTER (WHERE status = 'captured'), 0)::BIGINT
         FROM gateway.charges GROUP BY reference",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        for status in [
            ChargeStatus::Captured,
            ChargeStatus::Declined,
            ChargeStatus::Refunded,
        ] {
            assert_eq!(status.as_str().parse::<ChargeStatus>(), Ok(status));
        }
        assert!("voided".parse::<ChargeStatus>().is_err());
    }
}
