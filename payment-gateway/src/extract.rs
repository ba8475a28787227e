//! Request extractors whose rejections are problem+json: path and query
//! parameters, and the `Idempotency-Key` header.

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::HeaderValue;
use serde::de::DeserializeOwned;

use crate::error::GatewayError;

/// The request header carrying the key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Longest key accepted, in characters.
pub const MAX_KEY_CHARS: usize = 255;

/// `Path<T>` whose rejection is a 400 problem.
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = GatewayError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| Self(value))
            .map_err(|rejection| GatewayError::BadRequest(rejection.body_text()))
    }
}

/// `Query<T>` whose rejection is a 400 problem.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = GatewayError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Self(value))
            .map_err(|rejection| GatewayError::BadRequest(rejection.body_text()))
    }
}

/// A required, valid `Idempotency-Key` (400 when missing or malformed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(pub String);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = GatewayError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match OptionalIdempotencyKey::from_request_parts(parts, state).await? {
            OptionalIdempotencyKey(Some(key)) => Ok(Self(key)),
            OptionalIdempotencyKey(None) => Err(GatewayError::BadRequest(
                "the Idempotency-Key header is required".into(),
            )),
        }
    }
}

/// An optional `Idempotency-Key`, validated when present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionalIdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for OptionalIdempotencyKey {
    type Rejection = GatewayError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut values = parts.headers.get_all(IDEMPOTENCY_KEY).iter();
        let Some(value) = values.next() else {
            return Ok(Self(None));
        };
        if values.next().is_some() {
            return Err(GatewayError::BadRequest(
                "the Idempotency-Key header must be sent at most once".into(),
            ));
        }
        parse_key(value).map(|key| Self(Some(key)))
    }
}

/// Validates a key: 1 to 255 visible ASCII characters.
pub fn parse_key(value: &HeaderValue) -> Result<String, GatewayError> {
    let bytes = value.as_bytes();
    let valid =
        !bytes.is_empty() && bytes.len() <= MAX_KEY_CHARS && bytes.iter().all(u8::is_ascii_graphic);
    if !valid {
        return Err(GatewayError::BadRequest(
            "the Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
        ));
    }
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_up_to_255_chars() {
        assert!(parse_key(&HeaderValue::from_static("order-1:payment")).is_ok());
        assert!(parse_key(&HeaderValue::from_str(&"k".repeat(255)).unwrap()).is_ok());
        assert!(parse_key(&HeaderValue::from_str(&"k".repeat(256)).unwrap()).is_err());
        assert!(parse_key(&HeaderValue::from_static("")).is_err());
        assert!(parse_key(&HeaderValue::from_static("has space")).is_err());
    }
}
