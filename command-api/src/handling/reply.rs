//! The response of a command: fresh, or replayed from an idempotency record.

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use platform::http::PROBLEM_JSON;

use super::Command;

/// Response header set on responses replayed from an idempotency record.
pub const REPLAYED_HEADER: HeaderName = HeaderName::from_static("idempotency-replayed");

/// A status, a JSON body and maybe a `Location`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body: a success body, or a problem for 4xx.
    pub body: serde_json::Value,
    /// `Location` of a created resource.
    pub location: Option<String>,
    /// Whether this is a replay of a recorded response.
    pub replayed: bool,
}

impl Reply {
    /// The success response of command `C`.
    pub fn success<C: Command>(body: serde_json::Value) -> Self {
        Self {
            status: C::SUCCESS,
            location: C::location(&body),
            body,
            replayed: false,
        }
    }

    /// A refusal (problem body) recorded under an idempotency key.
    pub fn problem(status: StatusCode, body: serde_json::Value) -> Self {
        Self {
            status,
            body,
            location: None,
            replayed: false,
        }
    }

    /// A response recorded for command `C`, replayed as it was first sent.
    pub fn replay<C: Command>(status: StatusCode, body: serde_json::Value) -> Self {
        let location = if status == C::SUCCESS {
            C::location(&body)
        } else {
            None
        };
        Self {
            status,
            body,
            location,
            replayed: true,
        }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let content_type = if self.status.is_success() {
            "application/json"
        } else {
            PROBLEM_JSON
        };
        let mut response = (self.status, self.body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Some(location) = self.location.and_then(|l| HeaderValue::try_from(l).ok()) {
            headers.insert(header::LOCATION, location);
        }
        if self.replayed {
            headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
        }
        response
    }
}
