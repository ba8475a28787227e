//! The console's pages, one module each, and their embedded assets.

pub mod assets;
pub mod dead_letters;
pub mod order;
pub mod orders;
pub mod system;

use axum::extract::rejection::PathRejection;
use axum::Router;
use uuid::Uuid;

use crate::error::ConsoleError;
use crate::AppState;

/// Every page and asset.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(orders::router())
        .merge(order::router())
        .merge(system::router())
        .merge(dead_letters::router())
        .with_state(state)
        .merge(assets::router())
}

/// A path segment that must be a UUID: 400 otherwise.
pub(crate) fn uuid_segment(
    segment: Result<axum::extract::Path<String>, PathRejection>,
    what: &str,
) -> Result<Uuid, ConsoleError> {
    let axum::extract::Path(raw) =
        segment.map_err(|rejection| ConsoleError::BadRequest(rejection.body_text()))?;
    raw.parse()
        .map_err(|_| ConsoleError::BadRequest(format!("{raw:?} is not a valid {what} id (a UUID)")))
}
