//! Path and query extractors whose rejections are problem+json (400)
//! instead of axum's plain-text bodies.

use axum::extract::{FromRequestParts, Path, Query};

use crate::error::ApiError;

/// `Path<T>` rejecting malformed segments (a bad uuid, say) with a 400 problem.
#[derive(Debug, FromRequestParts)]
#[from_request(via(Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// `Query<T>` rejecting malformed parameters with a 400 problem.
#[derive(Debug, FromRequestParts)]
#[from_request(via(Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);
