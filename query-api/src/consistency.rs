//! Read-your-writes for single-entity reads: `?min_version=N` waits (bounded)
//! until the read model has applied version N of the entity's stream, and
//! every answer says which version it shows.

use std::future::Future;

use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::config::Settings;
use crate::error::ApiError;

/// Set to `true` when the read model had not reached `min_version` in time.
pub const STALE_HEADER: HeaderName = HeaderName::from_static("x-read-model-stale");
/// The stream version the returned view was built from (also in `ETag`).
pub const VERSION_HEADER: HeaderName = HeaderName::from_static("x-read-model-version");

/// A read-model row that records the version of the stream it was built from.
pub trait Versioned {
    /// The last applied stream version.
    fn version(&self) -> i64;
}

/// The `?min_version=N` parameter of single-entity reads.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MinVersion {
    /// The stream version the client has seen (from a command response).
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub min_version: Option<u64>,
}

/// What a single-entity read found, and whether it is behind what was asked.
#[derive(Debug)]
pub struct Observed<T> {
    /// The row, if the read model has it.
    pub row: Option<T>,
    /// True when the row (or its absence) is older than `min_version`.
    pub stale: bool,
}

/// Loads a row with `load`, again every `settings.min_version_poll`, until its
/// version reaches `min_version` or `settings.min_version_wait` has passed.
pub async fn read_at_least<T, F, Fut>(
    min_version: Option<u64>,
    settings: &Settings,
    mut load: F,
) -> Result<Observed<T>, ApiError>
where
    T: Versioned,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, ApiError>>,
{
    let wanted = match min_version {
        None | Some(0) => None,
        Some(n) => Some(i64::try_from(n).map_err(|_| {
            ApiError::BadRequest(format!(
                "`min_version` must be at most {} (a stream version), got {n}",
                i64::MAX
            ))
        })?),
    };
    let deadline = Instant::now() + settings.min_version_wait;
    loop {
        let row = load().await?;
        let caught_up = match (wanted, &row) {
            (None, _) => true,
            (Some(wanted), Some(row)) => row.version() >= wanted,
            (Some(_), None) => false,
        };
        let now = Instant::now();
        if caught_up || now >= deadline {
            return Ok(Observed {
                row,
                stale: !caught_up,
            });
        }
        tokio::time::sleep(settings.min_version_poll.min(deadline - now)).await;
    }
}

impl<T: Versioned + Serialize> Observed<T> {
    /// 200 with the row, `ETag` and version headers, or a 404 problem
    /// (`not_found` gives its detail); either flagged when stale.
    pub fn into_response_or(self, not_found: impl FnOnce() -> String) -> Response {
        let mut response = match self.row {
            Some(row) => {
                let version = row.version();
                let mut response = Json(row).into_response();
                let headers = response.headers_mut();
                headers.insert(header::ETAG, header_value(format!("\"{version}\"")));
                headers.insert(VERSION_HEADER, HeaderValue::from(version));
                response
            }
            None => ApiError::NotFound(not_found()).into_response(),
        };
        if self.stale {
            response
                .headers_mut()
                .insert(STALE_HEADER, HeaderValue::from_static("true"));
        }
        response
    }
}

fn header_value(value: String) -> HeaderValue {
    HeaderValue::try_from(value).expect("digits and quotes are valid header characters")
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::time::Duration;

    use super::*;

    struct Row(i64);

    impl Versioned for Row {
        fn version(&self) -> i64 {
            self.0
        }
    }

    fn settings(wait_ms: u64) -> Settings {
        Settings {
            min_version_wait: Duration::from_millis(wait_ms),
            min_version_poll: Duration::from_millis(5),
        }
    }

    #[tokio::test]
    async fn without_min_version_reads_once() {
        let loads = &AtomicI64::new(0);
        let observed = read_at_least(None, &settings(1000), move || async move {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok(None::<Row>)
        })
        .await
        .unwrap();
        assert!(!observed.stale);
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn waits_until_the_version_is_reached() {
        let version = &AtomicI64::new(0);
        let observed = read_at_least(Some(3), &settings(1000), move || async move {
            Ok(Some(Row(version.fetch_add(1, Ordering::SeqCst) + 1)))
        })
        .await
        .unwrap();
        assert!(!observed.stale);
        assert_eq!(observed.row.unwrap().0, 3);
    }

    #[tokio::test]
    async fn gives_up_after_the_wait_and_says_stale() {
        let started = Instant::now();
        let observed = read_at_least(Some(2), &settings(50), || async { Ok(Some(Row(1))) })
            .await
            .unwrap();
        assert!(observed.stale);
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn responses_carry_version_headers() {
        struct Product {
            version: i64,
        }
        impl Versioned for Product {
            fn version(&self) -> i64 {
                self.version
            }
        }
        impl Serialize for Product {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_i64(self.version)
            }
        }
        let response = Observed {
            row: Some(Product { version: 7 }),
            stale: true,
        }
        .into_response_or(String::new);
        assert_eq!(response.headers()[header::ETAG], "\"7\"");
        assert_eq!(response.headers()[VERSION_HEADER], "7");
        assert_eq!(response.headers()[STALE_HEADER], "true");
    }
}
