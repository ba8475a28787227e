//! The error decoder: HTTP statuses, problem+json bodies and transport
//! failures become [`PaymentError`]s. An unreadable body still maps by status.

use reqwest::StatusCode;
use serde::Deserialize;

use crate::error::PaymentError;

/// Decline code used when a 402 body names none.
pub const UNKNOWN_DECLINE_CODE: &str = "unknown";

/// The members of an RFC 9457 problem the decoder reads (all optional).
#[derive(Debug, Default, Deserialize)]
struct ProblemBody {
    title: Option<String>,
    detail: Option<String>,
    decline_code: Option<String>,
}

/// Decodes a non-success response from its status and raw body.
pub fn decode_error(status: StatusCode, body: &[u8]) -> PaymentError {
    let problem: ProblemBody = serde_json::from_slice(body).unwrap_or_default();
    let message = problem
        .detail
        .clone()
        .or(problem.title.clone())
        .unwrap_or_else(|| format!("HTTP {status}"));
    match status.as_u16() {
        402 => PaymentError::Declined {
            code: problem
                .decline_code
                .filter(|code| !code.is_empty())
                .unwrap_or_else(|| UNKNOWN_DECLINE_CODE.to_owned()),
            message,
        },
        404 => PaymentError::NotFound,
        // Timed out at the provider, an in-flight duplicate, rate limited:
        // transient, and the outcome of a charge is unknown.
        408 | 409 | 429 => PaymentError::Unavailable {
            message: format!("HTTP {status}: {message}"),
        },
        400..=499 => PaymentError::Invalid { message },
        _ => PaymentError::Unavailable {
            message: format!("HTTP {status}: {message}"),
        },
    }
}

/// Decodes a failure of the transport (no usable response).
pub fn transport_error(error: &reqwest::Error) -> PaymentError {
    if error.is_builder() {
        PaymentError::Invalid {
            message: format!("cannot build the request: {error}"),
        }
    } else if error.is_connect() {
        PaymentError::Unavailable {
            message: format!("cannot connect: {error}"),
        }
    } else if error.is_timeout() {
        PaymentError::Timeout
    } else {
        PaymentError::Unavailable {
            message: format!("request failed: {error}"),
        }
    }
}

/// Decodes a success body; one that cannot be read leaves the outcome
/// unknown, which is retryable (with the same idempotency key).
pub fn decode_success<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, PaymentError> {
    serde_json::from_slice(body).map_err(|error| PaymentError::Unavailable {
        message: format!("unreadable response body: {error}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(status: u16, body: &str) -> PaymentError {
        decode_error(StatusCode::from_u16(status).unwrap(), body.as_bytes())
    }

    fn problem(status: u16, extra: &str) -> String {
        format!(r#"{{"type":"urn:x","title":"Title","status":{status},"detail":"Detail"{extra}}}"#)
    }

    #[test]
    fn a_402_is_a_decline_with_its_code() {
        assert_eq!(
            decode(
                402,
                &problem(402, r#","decline_code":"insufficient_funds""#)
            ),
            PaymentError::Declined {
                code: "insufficient_funds".into(),
                message: "Detail".into()
            }
        );
    }

    #[test]
    fn a_402_without_a_readable_code_is_still_a_decline() {
        for body in [problem(402, ""), "not json".to_owned(), String::new()] {
            assert!(
                matches!(decode(402, &body), PaymentError::Declined { code, .. } if code == UNKNOWN_DECLINE_CODE),
                "{body}"
            );
        }
    }

    #[test]
    fn refusals_are_invalid() {
        for status in [400, 401, 403, 413, 415, 422] {
            assert_eq!(
                decode(status, &problem(status, "")),
                PaymentError::Invalid {
                    message: "Detail".into()
                },
                "{status}"
            );
        }
        assert_eq!(
            decode(422, r#"{"title":"Only a title"}"#),
            PaymentError::Invalid {
                message: "Only a title".into()
            }
        );
        assert_eq!(
            decode(400, "<html>"),
            PaymentError::Invalid {
                message: "HTTP 400 Bad Request".into()
            }
        );
    }

    #[test]
    fn a_404_is_not_found() {
        assert_eq!(decode(404, &problem(404, "")), PaymentError::NotFound);
        assert_eq!(decode(404, ""), PaymentError::NotFound);
    }

    #[test]
    fn transient_statuses_are_unavailable() {
        for status in [408, 409, 429, 500, 502, 503, 504] {
            for body in [problem(status, ""), "garbage".to_owned()] {
                let error = decode(status, &body);
                assert!(
                    matches!(error, PaymentError::Unavailable { .. }),
                    "{status}: {error:?}"
                );
                assert!(error.is_retryable());
            }
        }
    }

    #[test]
    fn unexpected_statuses_are_unavailable() {
        assert!(matches!(decode(302, ""), PaymentError::Unavailable { .. }));
    }

    #[test]
    fn unreadable_success_bodies_are_retryable() {
        let error = decode_success::<crate::Charge>(b"{}").unwrap_err();
        assert!(error.is_retryable(), "{error:?}");
    }
}
