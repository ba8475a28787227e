//! `Idempotency-Key` support: key validation, request fingerprints, the
//! per-key advisory lock and the `command.idempotency_keys` table.
//!
//! Everything happens inside the transaction of the command's batch: the
//! keys' advisory locks are taken with `pg_try_advisory_xact_lock` (so they
//! are released at commit or rollback), the stored responses are looked up,
//! and new responses are inserted together with the commands' events. A key
//! is therefore recorded if and only if its effect committed.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::{HeaderValue, Method, StatusCode};
use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use crate::error::{ApiError, DbContext};

/// The request header carrying the key.
pub const HEADER: &str = "idempotency-key";

/// Longest key accepted, in characters.
pub const MAX_KEY_CHARS: usize = 255;

/// How long a key is remembered by default: 24 hours, the retry window.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

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

/// Takes each key's transaction-scoped advisory lock (without waiting) and
/// looks up the responses recorded under the keys it got within
/// `retention` (an older record is expired: the key is fresh again): one
/// claim per key, in order. Keys must be distinct (a session's advisory
/// locks are re-entrant, so a duplicate would claim its own key).
#[tracing::instrument(skip_all, fields(keys = keys.len()))]
pub async fn claim_all(
    conn: &mut PgConnection,
    keys: &[&str],
    retention: Duration,
) -> Result<Vec<Claim>, ApiError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let lock_keys: Vec<i64> = keys.iter().map(|key| lock_key(key)).collect();
    // Locks first, lookup second: the lookup's snapshot must be taken after
    // the locks are held, or a response committed in between would be missed.
    let locked: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_try_advisory_xact_lock(k) FROM UNNEST($1::bigint[]) WITH ORDINALITY AS t(k, n)
         ORDER BY n",
    )
    .bind(&lock_keys)
    .fetch_all(&mut *conn)
    .await
    .during(|| "locking the idempotency keys".into())?;
    let claimed: Vec<&str> = keys
        .iter()
        .zip(&locked)
        .filter(|(_, locked)| **locked)
        .map(|(key, _)| *key)
        .collect();
    let mut stored: HashMap<String, StoredResponse> = HashMap::new();
    if !claimed.is_empty() {
        let rows: Vec<(String, String, i16, serde_json::Value)> = sqlx::query_as(
            "SELECT idempotency_key, request_hash, response_status, response_body
             FROM command.idempotency_keys
             WHERE idempotency_key = ANY($1) AND created_at > now() - make_interval(secs => $2)",
        )
        .bind(&claimed)
        .bind(retention.as_secs_f64())
        .fetch_all(&mut *conn)
        .await
        .during(|| "looking up the idempotency keys".into())?;
        for (key, request_hash, response_status, response_body) in rows {
            let response = StoredResponse {
                request_hash,
                response_status,
                response_body,
            };
            stored.insert(key, response);
        }
    }
    Ok(keys
        .iter()
        .zip(locked)
        .map(|(key, locked)| match (locked, stored.remove(*key)) {
            (false, _) => Claim::InFlight,
            (true, Some(response)) => Claim::Recorded(response),
            (true, None) => Claim::Fresh,
        })
        .collect())
}

/// Deletes the records older than `retention` every `every` until
/// `shutdown`, at most 10 000 per statement (expired records are already
/// ignored by [`claim_all`]; this only frees the space). Counts them in
/// `idempotency_keys_pruned_total`.
pub fn spawn_pruner(
    pool: sqlx::PgPool,
    retention: Duration,
    every: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    metrics::describe_counter!(
        "idempotency_keys_pruned_total",
        "Idempotency records deleted after the retry window."
    );
    platform::metrics::spawn_sampler("idempotency_pruner", every, shutdown, move || {
        let pool = pool.clone();
        async move {
            loop {
                let pruned = prune_expired(&pool, retention, 10_000)
                    .await
                    .map_err(|error| error.to_string())?;
                metrics::counter!("idempotency_keys_pruned_total").increment(pruned);
                if pruned < 10_000 {
                    return Ok(());
                }
            }
        }
    });
}

/// Deletes up to `limit` records older than `retention`; returns how many.
pub async fn prune_expired(
    pool: &sqlx::PgPool,
    retention: Duration,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query(
        "DELETE FROM command.idempotency_keys WHERE idempotency_key IN (
             SELECT idempotency_key FROM command.idempotency_keys
             WHERE created_at <= now() - make_interval(secs => $1)
             ORDER BY created_at LIMIT $2
             FOR UPDATE SKIP LOCKED)",
    )
    .bind(retention.as_secs_f64())
    .bind(limit)
    .execute(pool)
    .await?;
    Ok(deleted.rows_affected())
}

/// Records each request's response (in the caller's transaction), in
/// place of an expired record of the same key, and returns the bodies as
/// stored, in order, so a first response is byte-identical to every replay.
#[tracing::instrument(skip_all, fields(keys = records.len()))]
pub async fn record_all(
    conn: &mut PgConnection,
    records: &[(&IdempotencyRequest, StatusCode, &serde_json::Value)],
    retention: Duration,
) -> Result<Vec<serde_json::Value>, ApiError> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<&str> = records.iter().map(|(r, _, _)| r.key.as_str()).collect();
    let hashes: Vec<&str> = records
        .iter()
        .map(|(r, _, _)| r.fingerprint.as_str())
        .collect();
    let statuses: Vec<i16> = records
        .iter()
        .map(|(_, status, _)| i16::try_from(status.as_u16()).expect("HTTP statuses fit in i16"))
        .collect();
    let bodies: Vec<&serde_json::Value> = records.iter().map(|(_, _, body)| *body).collect();
    let stored: Vec<(i64, serde_json::Value)> = sqlx::query_as(
        "WITH inserted AS (
             INSERT INTO command.idempotency_keys
                 (idempotency_key, request_hash, response_status, response_body)
             SELECT k, h, s, b FROM UNNEST($1::text[], $2::text[], $3::smallint[], $4::jsonb[])
                 AS t(k, h, s, b)
             ON CONFLICT (idempotency_key) DO UPDATE
                 SET request_hash = EXCLUDED.request_hash,
                     response_status = EXCLUDED.response_status,
                     response_body = EXCLUDED.response_body,
                     created_at = now()
                 WHERE idempotency_keys.created_at <= now() - make_interval(secs => $5)
             RETURNING idempotency_key, response_body
         )
         SELECT t.n, i.response_body
         FROM inserted i JOIN UNNEST($1::text[]) WITH ORDINALITY AS t(k, n) ON t.k = i.idempotency_key
         ORDER BY t.n",
    )
    .bind(&keys)
    .bind(&hashes)
    .bind(&statuses)
    .bind(&bodies)
    .bind(retention.as_secs_f64())
    .fetch_all(&mut *conn)
    .await
    .during(|| "recording the idempotency keys".into())?;
    Ok(stored.into_iter().map(|(_, body)| body).collect())
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
