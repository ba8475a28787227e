//! `Idempotency-Key` support: key validation, request fingerprints, the
//! per-key advisory lock and the `command.idempotency_keys` table.
//!
//! Everything happens inside the command's transaction: the key's advisory
//! lock is taken with `pg_try_advisory_xact_lock` (so it is released at
//! commit or rollback), the stored response is looked up, and a new response
//! is inserted together with the command's events. A key is therefore
//! recorded if and only if its effect committed.

use axum::http::{HeaderValue, Method, StatusCode};
use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use crate::error::{ApiError, DbContext};

/// The request header carrying the key.
pub const HEADER: &str = "idempotency-key";

/// Longest key accepted, in characters.
pub const MAX_KEY_CHARS: usize = 255;

/// A request's key and what identifies the request it was first used with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRequest {
    /// The key as sent.
    pub key: String,
    /// Hex SHA-256 of method, path and raw body (see [`fingerprint`]).
    pub fingerprint: String,
}

/// A response recorded under a key.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct StoredResponse {
    /// Fingerprint of the request that produced it.
    pub request_hash: String,
    /// HTTP status.
    pub response_status: i16,
    /// JSON body (a success body or a problem).
    pub response_body: serde_json::Value,
}

impl StoredResponse {
    /// The stored status as a `StatusCode`.
    pub fn status(&self) -> StatusCode {
        u16::try_from(self.response_status)
            .ok()
            .and_then(|code| StatusCode::from_u16(code).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// What a command attempt found when it claimed its key.
#[derive(Debug)]
pub enum Claim {
    /// Another transaction holds the key's lock: the same key is in flight.
    InFlight,
    /// A response is already recorded under the key.
    Recorded(StoredResponse),
    /// The key is new; this transaction holds its lock until it ends.
    Fresh,
}

/// Validates an `Idempotency-Key` header: 1 to 255 visible ASCII characters.
pub fn parse_key(value: &HeaderValue) -> Result<String, ApiError> {
    let invalid = |reason: &str| ApiError::InvalidHeader {
        header: "Idempotency-Key",
        reason: reason.to_owned(),
    };
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_KEY_CHARS {
        return Err(invalid("must be 1 to 255 characters"));
    }
    if !bytes.iter().all(u8::is_ascii_graphic) {
        return Err(invalid("must contain only visible ASCII characters"));
    }
    Ok(String::from_utf8(bytes.to_vec()).expect("visible ASCII is UTF-8"))
}

/// Hex SHA-256 over the request's method, path and raw body bytes.
pub fn fingerprint(method: &Method, path: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(method.as_str().as_bytes());
    hasher.update(b" ");
    hasher.update(path.as_bytes());
    hasher.update(b"\n");
    hasher.update(body);
    hex::encode(hasher.finalize())
}

/// The 64-bit advisory lock key of an idempotency key (first 8 bytes of its SHA-256).
pub fn lock_key(key: &str) -> i64 {
    let digest = Sha256::digest(format!("idempotency-key:{key}").as_bytes());
    let mut first = [0_u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// Takes the key's transaction-scoped advisory lock (without waiting) and
/// looks up a recorded response.
#[tracing::instrument(skip(conn))]
pub async fn claim(conn: &mut PgConnection, key: &str) -> Result<Claim, ApiError> {
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(lock_key(key))
        .fetch_one(&mut *conn)
        .await
        .during(|| "locking the idempotency key".into())?;
    if !locked {
        return Ok(Claim::InFlight);
    }
    let stored: Option<StoredResponse> = sqlx::query_as(
        "SELECT request_hash, response_status, response_body
         FROM command.idempotency_keys WHERE idempotency_key = $1",
    )
    .bind(key)
    .fetch_optional(&mut *conn)
    .await
    .during(|| "looking up the idempotency key".into())?;
    Ok(stored.map_or(Claim::Fresh, Claim::Recorded))
}

/// Records the response of `request` (in the caller's transaction) and
/// returns the body as stored, so the first response is byte-identical to
/// every replay.
#[tracing::instrument(skip(conn, request, body), fields(key = %request.key))]
pub async fn record(
    conn: &mut PgConnection,
    request: &IdempotencyRequest,
    status: StatusCode,
    body: &serde_json::Value,
) -> Result<serde_json::Value, ApiError> {
    let status = i16::try_from(status.as_u16()).expect("HTTP statuses fit in i16");
    sqlx::query_scalar(
        "INSERT INTO command.idempotency_keys
             (idempotency_key, request_hash, response_status, response_body)
         VALUES ($1, $2, $3, $4)
         RETURNING response_body",
    )
    .bind(&request.key)
    .bind(&request.fingerprint)
    .bind(status)
    .bind(body)
    .fetch_one(&mut *conn)
    .await
    .during(|| "recording the idempotency key".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_up_to_255_chars() {
        assert!(parse_key(&HeaderValue::from_static("abc-123_XYZ:~")).is_ok());
        assert!(parse_key(&HeaderValue::from_str(&"k".repeat(255)).unwrap()).is_ok());
        assert!(parse_key(&HeaderValue::from_str(&"k".repeat(256)).unwrap()).is_err());
        assert!(parse_key(&HeaderValue::from_static("")).is_err());
        assert!(parse_key(&HeaderValue::from_static("has space")).is_err());
        assert!(parse_key(&HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap()).is_err());
    }

    #[test]
    fn fingerprints_cover_method_path_and_body() {
        let base = fingerprint(&Method::POST, "/orders", b"{}");
        assert_eq!(base, fingerprint(&Method::POST, "/orders", b"{}"));
        assert_ne!(base, fingerprint(&Method::PUT, "/orders", b"{}"));
        assert_ne!(base, fingerprint(&Method::POST, "/products", b"{}"));
        assert_ne!(base, fingerprint(&Method::POST, "/orders", b"{ }"));
    }

    #[test]
    fn lock_keys_are_stable_and_distinct() {
        assert_eq!(lock_key("a"), lock_key("a"));
        assert_ne!(lock_key("a"), lock_key("b"));
    }
}
