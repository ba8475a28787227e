//! Request extractors whose rejections are problem+json: path parameters,
//! the command headers, a JSON body that keeps its raw bytes (the
//! idempotency fingerprint hashes exactly what the client sent), and the
//! empty body of commands that take none.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use platform::http::{ApiJson, Problem, MAX_BODY_BYTES};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::correlation::{CommandId, CommandTrace};
use crate::error::ApiError;
use crate::handling::CommandContext;
use crate::idempotency::{self, IdempotencyRequest};

/// `Path<T>` whose rejection is a 400 problem (e.g. a non-UUID id).
#[derive(Debug, Clone, Copy)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(Problem::malformed(format!(
                "invalid path parameter: {}",
                rejection.body_text()
            ))),
        }
    }
}

/// A JSON body parsed as `T`, with the raw bytes it was parsed from.
///
/// Rejections as [`ApiJson`]: 400 bad syntax or shape, 413 over
/// [`MAX_BODY_BYTES`], 415 without a JSON content type.
#[derive(Debug, Clone)]
pub struct JsonBody<T> {
    /// The parsed body.
    pub value: T,
    /// The bytes as received.
    pub raw: Bytes,
}

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let raw = read_body(Request::from_parts(parts.clone(), body), state).await?;
        let replayed = Request::from_parts(parts, Body::from(raw.clone()));
        let ApiJson(value) = ApiJson::<T>::from_request(replayed, state).await?;
        platform::http::refuse_nul_characters(&raw)?;
        Ok(Self { value, raw })
    }
}

/// The body of a command that takes none: empty (any or no content type),
/// or an empty JSON object `{}` (with a JSON content type). Anything else is
/// refused like a malformed JSON body: 400 for other JSON (a member, an
/// array), 415 for a non-empty body that is not JSON, 413 over the limit.
///
/// Both accepted forms mean the same request, so its idempotency
/// fingerprint uses [`NoBody::FINGERPRINT_BODY`] for either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoBody;

impl NoBody {
    /// The body bytes hashed into the idempotency fingerprint.
    pub const FINGERPRINT_BODY: &'static [u8] = b"";
}

impl<S: Send + Sync> FromRequest<S> for NoBody {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let raw = read_body(Request::from_parts(parts.clone(), body), state).await?;
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self);
        }
        let replayed = Request::from_parts(parts, Body::from(raw));
        let ApiJson(members) =
            ApiJson::<serde_json::Map<String, serde_json::Value>>::from_request(replayed, state)
                .await?;
        match members.keys().next() {
            None => Ok(Self),
            Some(name) => Err(Problem::malformed(format!(
                "unknown field `{name}`: this request takes no body (or an empty object)"
            ))),
        }
    }
}

/// The request's body bytes; 413 over [`MAX_BODY_BYTES`], else 400.
async fn read_body<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, Problem> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload-too-large",
                    "Payload too large",
                    format!("the request body exceeds {MAX_BODY_BYTES} bytes"),
                )
            } else {
                Problem::malformed(rejection.body_text())
            }
        })
}

/// What a command request says besides its body: its command id, the
/// optional `Idempotency-Key`, `If-Match` and `traceparent` headers, and the
/// method and path (for the idempotency fingerprint).
#[derive(Debug, Clone)]
pub struct CommandHeaders {
    /// The request's command id (from [`crate::correlation::assign_command_id`]).
    pub command_id: Uuid,
    /// A valid `Idempotency-Key`, if sent.
    pub idempotency_key: Option<String>,
    /// The version named by `If-Match`, if sent.
    pub if_match: Option<i64>,
    /// The trace context for the command's events: the request's
    /// [`CommandTrace`], else (without that middleware) the incoming
    /// `traceparent` if sent and syntactically valid.
    pub traceparent: Option<String>,
    method: Method,
    path: String,
}

impl CommandHeaders {
    /// Builds the command's context; `body` is the raw request body.
    pub fn into_context(self, body: &[u8]) -> CommandContext {
        let idempotency = self.idempotency_key.map(|key| IdempotencyRequest {
            fingerprint: idempotency::fingerprint(&self.method, &self.path, body),
            key,
        });
        CommandContext::new(
            self.command_id,
            self.if_match,
            self.traceparent,
            idempotency,
        )
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CommandHeaders {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let command_id = parts
            .extensions
            .get::<CommandId>()
            .map_or_else(Uuid::now_v7, |id| id.0);
        let idempotency_key = single(&parts.headers, idempotency::HEADER, "Idempotency-Key")?
            .map(idempotency::parse_key)
            .transpose()?;
        let if_match = single(&parts.headers, header::IF_MATCH.as_str(), "If-Match")?
            .map(|value| parse_if_match(value.as_bytes()))
            .transpose()?;
        let traceparent = match parts.extensions.get::<CommandTrace>() {
            Some(trace) => Some(trace.0.clone()),
            None => parts
                .headers
                .get(platform::otel::TRACEPARENT)
                .and_then(|value| value.to_str().ok())
                .filter(|value| eventstore::trace::is_valid_traceparent(value))
                .map(str::to_owned),
        };
        Ok(Self {
            command_id,
            idempotency_key,
            if_match,
            traceparent,
            method: parts.method.clone(),
            path: parts.uri.path().to_owned(),
        })
    }
}

/// The header's value, refusing it when sent more than once.
fn single<'a>(
    headers: &'a HeaderMap,
    name: &str,
    display: &'static str,
) -> Result<Option<&'a axum::http::HeaderValue>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(ApiError::InvalidHeader {
            header: display,
            reason: "must be sent at most once".into(),
        });
    }
    Ok(first)
}

/// Parses `If-Match: "<version>"` (quotes optional) into a version >= 0.
pub fn parse_if_match(value: &[u8]) -> Result<i64, ApiError> {
    let invalid = || ApiError::InvalidHeader {
        header: "If-Match",
        reason: r#"must be a stream version such as "3""#.into(),
    };
    let text = std::str::from_utf8(value).map_err(|_| invalid())?.trim();
    let digits = text
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    digits.parse().map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_accepts_quoted_and_bare_versions() {
        assert_eq!(parse_if_match(br#""3""#).unwrap(), 3);
        assert_eq!(parse_if_match(b"12").unwrap(), 12);
        assert_eq!(parse_if_match(br#" "0" "#).unwrap(), 0);
    }

    #[test]
    fn if_match_refuses_anything_else() {
        for bad in [
            &b""[..],
            b"\"\"",
            b"*",
            b"-1",
            b"W/\"3\"",
            b"\"3",
            b"3\"",
            b"\"1\", \"2\"",
            b"99999999999999999999",
        ] {
            assert!(parse_if_match(bad).is_err(), "{bad:?}");
        }
    }
}
