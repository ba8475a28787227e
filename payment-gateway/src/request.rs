//! The body of `POST /charges`: its validation and its fingerprint (what
//! "the same request" means for an `Idempotency-Key`).

use serde::Deserialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::GatewayError;
use crate::ledger::NewCharge;

/// `{"amount_cents", "currency", "token", "reference"}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChargeBody {
    /// Amount in minor units, > 0.
    pub amount_cents: i64,
    /// ISO 4217 code: three uppercase letters.
    pub currency: String,
    /// The card token; chooses the simulated behaviour.
    pub token: String,
    /// The merchant's reference (an order id).
    pub reference: Uuid,
}

impl ChargeBody {
    /// Checks the field rules; the error says which one is broken.
    pub fn validate(&self) -> Result<(), GatewayError> {
        if self.amount_cents <= 0 {
            return Err(GatewayError::BadRequest(
                "amount_cents must be greater than 0".into(),
            ));
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(GatewayError::BadRequest(
                "currency must be three uppercase letters (ISO 4217), e.g. EUR".into(),
            ));
        }
        if self.token.trim().is_empty() {
            return Err(GatewayError::BadRequest("token must not be empty".into()));
        }
        Ok(())
    }

    /// Hex SHA-256 over the parsed fields: the same request sent with other
    /// whitespace or field order has the same fingerprint.
    pub fn fingerprint(&self) -> String {
        let text = format!(
            "{}\n{}\n{}\n{}",
            self.amount_cents, self.currency, self.token, self.reference
        );
        hex::encode(Sha256::digest(text.as_bytes()))
    }

    /// The ledger row this request records under `idempotency_key`.
    pub fn to_new_charge(&self, idempotency_key: &str, decline_code: Option<String>) -> NewCharge {
        NewCharge {
            idempotency_key: idempotency_key.to_owned(),
            request_hash: self.fingerprint(),
            reference: self.reference,
            amount_cents: self.amount_cents,
            currency: self.currency.clone(),
            token: self.token.clone(),
            decline_code,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> ChargeBody {
        ChargeBody {
            amount_cents: 1250,
            currency: "EUR".into(),
            token: "tok_visa".into(),
            reference: Uuid::nil(),
        }
    }

    #[test]
    fn a_well_formed_body_is_valid() {
        assert!(body().validate().is_ok());
    }

    #[test]
    fn each_rule_is_checked() {
        let broken = [
            ChargeBody {
                amount_cents: 0,
                ..body()
            },
            ChargeBody {
                amount_cents: -5,
                ..body()
            },
            ChargeBody {
                currency: "eur".into(),
                ..body()
            },
            ChargeBody {
                currency: "EURO".into(),
                ..body()
            },
            ChargeBody {
                currency: "E1R".into(),
                ..body()
            },
            ChargeBody {
                token: " ".into(),
                ..body()
            },
        ];
        for invalid in broken {
            assert!(invalid.validate().is_err(), "{invalid:?}");
        }
    }

    #[test]
    fn fingerprints_cover_every_field() {
        let base = body().fingerprint();
        assert_eq!(base, body().fingerprint());
        assert_ne!(
            base,
            ChargeBody {
                amount_cents: 1251,
                ..body()
            }
            .fingerprint()
        );
        assert_ne!(
            base,
            ChargeBody {
                currency: "USD".into(),
                ..body()
            }
            .fingerprint()
        );
        assert_ne!(
            base,
            ChargeBody {
                token: "tok_other".into(),
                ..body()
            }
            .fingerprint()
        );
        assert_ne!(
            base,
            ChargeBody {
                reference: Uuid::max(),
                ..body()
            }
            .fingerprint()
        );
    }
}
