//! The client the saga uses to talk to the payment provider: a declarative
//! trait ([`PaymentProvider`]), an error decoder ([`decode`]) into a typed
//! enum ([`PaymentError`]), and the fallbacks of [`HttpPaymentProvider`]:
//! connect and request timeouts, retries with exponential backoff and full
//! jitter for transient failures only (always with the same idempotency key,
//! so a retry can never charge twice), and a circuit breaker ([`breaker`]).

#![warn(missing_docs)]

pub mod backoff;
pub mod breaker;
pub mod config;
pub mod decode;
pub mod error;
pub mod http;
mod metrics;
pub mod model;
pub mod provider;

pub use breaker::{BreakerState, Clock, SystemClock, HALF_OPEN_PROBES};
pub use config::ProviderConfig;
pub use error::PaymentError;
pub use http::HttpPaymentProvider;
pub use model::{Charge, ChargeRequest, ChargeStatus};
pub use provider::PaymentProvider;
