//! The problems every read may answer, for the OpenAPI document; the
//! routes, parameters and bodies are documented on the handlers.

use platform::openapi::ProblemSchema;
use utoipa::IntoResponses;

/// The problems (`application/problem+json`) any read may answer.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum QueryProblems {
    /// A malformed id, cursor, limit or `min_version`.
    #[response(status = 400, content_type = "application/problem+json")]
    Malformed(ProblemSchema),
    /// No such entity (or not projected yet; `X-Read-Model-Stale` says so when `min_version` was not reached).
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(ProblemSchema),
    /// The database is unavailable.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(ProblemSchema),
}
