//! The payment provider: a ledger of charges by idempotency key that
//! answers a repeated request the same way, with the behaviours of the
//! gateway's test cards (capture, decline, slow answers that lose a
//! capture's reply, hangs that record nothing, flaky 503s) and seeded
//! faults on top: lost answers, hangs, outage windows.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use payment_client::{Charge, ChargeRequest, ChargeStatus, PaymentError};
use uuid::Uuid;

use super::rng::Rng;
use super::Faults;

/// How the order's card behaves (the gateway's `tok_*` tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Card {
    /// Captures.
    Ok,
    /// Declined.
    Decline,
    /// Captured at once, every answer lost (the client times out).
    Timeout,
    /// Held, nothing recorded; the client times out.
    Hang,
    /// 503 for the first two requests of a key, then captures.
    Flaky,
}

impl Card {
    /// The token the order carries.
    pub fn token(self) -> &'static str {
        match self {
            Card::Ok => "tok_ok",
            Card::Decline => "tok_decline",
            Card::Timeout => "tok_timeout",
            Card::Hang => "tok_hang",
            Card::Flaky => "tok_flaky",
        }
    }

    fn of(token: &str) -> Self {
        [Card::Decline, Card::Timeout, Card::Hang, Card::Flaky]
            .into_iter()
            .find(|card| token == card.token())
            .unwrap_or(Card::Ok)
    }
}

/// The client's request timeout.
pub const REQUEST_TIMEOUT_MS: i64 = 2_000;

/// An answer and how long after the request it arrives.
#[derive(Debug)]
pub struct Answer<T> {
    pub result: Result<T, PaymentError>,
    pub after: Duration,
}

/// The provider's state.
#[derive(Debug, Default)]
pub struct Provider {
    /// Every charge recorded, oldest first.
    pub charges: Vec<Charge>,
    by_key: BTreeMap<String, usize>,
    flaky: BTreeMap<String, u32>,
    /// Windows in which every request fails with 503.
    pub outages: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

impl Provider {
    fn down(&self, now: DateTime<Utc>) -> bool {
        self.outages
            .iter()
            .any(|(from, to)| *from <= now && now < *to)
    }

    fn fast<T>(rng: &mut Rng, result: Result<T, PaymentError>) -> Answer<T> {
        Answer {
            result,
            after: Duration::milliseconds(rng.range(5, 400)),
        }
    }

    fn timeout<T>() -> Answer<T> {
        Answer {
            result: Err(PaymentError::Timeout),
            after: Duration::milliseconds(REQUEST_TIMEOUT_MS),
        }
    }

    /// Seeded faults common to every call: an outage, a lost answer.
    fn deliver<T>(
        &self,
        rng: &mut Rng,
        faults: &mut Faults,
        result: Result<T, PaymentError>,
    ) -> Answer<T> {
        if rng.percent(8) {
            faults.provider_lost_answers += 1;
            return Self::timeout();
        }
        Self::fast(rng, result)
    }

    fn unavailable<T>(rng: &mut Rng, faults: &mut Faults) -> Answer<T> {
        faults.provider_unavailable += 1;
        Self::fast(
            rng,
            Err(PaymentError::Unavailable {
                message: "503".into(),
            }),
        )
    }

    /// `POST /charges` with the request's idempotency key.
    pub fn charge(
        &mut self,
        request: &ChargeRequest,
        now: DateTime<Utc>,
        rng: &mut Rng,
        faults: &mut Faults,
    ) -> Answer<Charge> {
        if self.down(now) {
            return Self::unavailable(rng, faults);
        }
        if let Some(&index) = self.by_key.get(&request.idempotency_key) {
            // The same key is answered as the first time.
            let charge = self.charges[index].clone();
            let answer = match charge.status {
                ChargeStatus::Declined => Err(declined(&charge)),
                ChargeStatus::Captured | ChargeStatus::Refunded => Ok(charge),
            };
            return self.slow_card(request, rng, faults, answer);
        }
        let card = Card::of(&request.token);
        if card == Card::Hang || (card == Card::Ok && rng.percent(4)) {
            faults.provider_hangs += 1;
            return Self::timeout();
        }
        if card == Card::Flaky {
            let seen = self
                .flaky
                .entry(request.idempotency_key.clone())
                .or_default();
            *seen += 1;
            if *seen <= 2 {
                return Self::unavailable(rng, faults);
            }
        }
        let status = if card == Card::Decline {
            ChargeStatus::Declined
        } else {
            ChargeStatus::Captured
        };
        let charge = Charge {
            charge_id: format!("ch_{}", self.charges.len() + 1),
            status,
            amount_cents: request.amount_cents,
            currency: request.currency.clone(),
            reference: request.reference,
            created_at: now,
            decline_code: (status == ChargeStatus::Declined).then(|| "card_declined".into()),
            refunded_at: None,
            refund_id: None,
        };
        self.by_key
            .insert(request.idempotency_key.clone(), self.charges.len());
        self.charges.push(charge.clone());
        let answer = match status {
            ChargeStatus::Declined => Err(declined(&charge)),
            _ => Ok(charge),
        };
        self.slow_card(request, rng, faults, answer)
    }

    fn slow_card(
        &self,
        request: &ChargeRequest,
        rng: &mut Rng,
        faults: &mut Faults,
        answer: Result<Charge, PaymentError>,
    ) -> Answer<Charge> {
        if Card::of(&request.token) == Card::Timeout {
            faults.provider_lost_answers += 1;
            return Self::timeout();
        }
        self.deliver(rng, faults, answer)
    }

    /// `GET /charges?reference=`.
    pub fn charges_for_reference(
        &self,
        reference: Uuid,
        now: DateTime<Utc>,
        rng: &mut Rng,
        faults: &mut Faults,
    ) -> Answer<Vec<Charge>> {
        if self.down(now) {
            return Self::unavailable(rng, faults);
        }
        let charges = self
            .charges
            .iter()
            .filter(|c| c.reference == reference)
            .cloned()
            .collect();
        self.deliver(rng, faults, Ok(charges))
    }

    /// `POST /charges/{id}/refund` (again is harmless).
    pub fn refund(
        &mut self,
        charge_id: &str,
        now: DateTime<Utc>,
        rng: &mut Rng,
        faults: &mut Faults,
    ) -> Answer<Charge> {
        if self.down(now) {
            return Self::unavailable(rng, faults);
        }
        let Some(charge) = self.charges.iter_mut().find(|c| c.charge_id == charge_id) else {
            return Self::fast(rng, Err(PaymentError::NotFound));
        };
        let result = match charge.status {
            ChargeStatus::Declined => Err(PaymentError::Invalid {
                message: "declined charges cannot be refunded".into(),
            }),
            ChargeStatus::Captured => {
                charge.status = ChargeStatus::Refunded;
                charge.refunded_at = Some(now);
                charge.refund_id = Some(format!("re_{charge_id}"));
                Ok(charge.clone())
            }
            ChargeStatus::Refunded => Ok(charge.clone()),
        };
        self.deliver(rng, faults, result)
    }
}

fn declined(charge: &Charge) -> PaymentError {
    PaymentError::Declined {
        code: charge.decline_code.clone().unwrap_or_default(),
        message: "declined".into(),
    }
}
