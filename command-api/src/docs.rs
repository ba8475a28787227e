//! What the OpenAPI document says about every command: its headers and the
//! problems any command may answer. The routes and their bodies are
//! documented on the handlers (`#[utoipa::path]`).

use platform::openapi::ProblemSchema;
use utoipa::{IntoParams, IntoResponses};

/// The headers every command accepts.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct CommandHeaders {
    /// Makes the command safe to retry: the same key with the same body
    /// answers the first outcome again (within the retry window); with
    /// another body, 422 `idempotency-key-reused`.
    #[param(
        rename = "Idempotency-Key",
        nullable = false,
        pattern = "^[!-~]{1,255}$"
    )]
    idempotency_key: Option<String>,
    /// The version the command's stream must be at (`"0"` for creations),
    /// or 412.
    #[param(
        rename = "If-Match",
        nullable = false,
        pattern = r#"^\s*("[0-9]{1,18}"|[0-9]{1,18})\s*$"#
    )]
    if_match: Option<String>,
}

/// The problems (`application/problem+json`) any command may answer.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum CommandProblems {
    /// Malformed JSON, a body of the wrong shape, unknown fields, a bad id or header.
    #[response(status = 400, content_type = "application/problem+json")]
    Malformed(ProblemSchema),
    /// The addressed product or order does not exist.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(ProblemSchema),
    /// Lost the optimistic race on its stream every time it was retried.
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(ProblemSchema),
    /// `If-Match` names another version than the stream's.
    #[response(status = 412, content_type = "application/problem+json")]
    PreconditionFailed(ProblemSchema),
    /// The body is larger than 64 KiB.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(ProblemSchema),
    /// The body is not `application/json`.
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(ProblemSchema),
    /// A business rule refused the command (nothing was written).
    #[response(status = 422, content_type = "application/problem+json")]
    Refused(ProblemSchema),
    /// The database is unavailable (nothing was written).
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(ProblemSchema),
}
