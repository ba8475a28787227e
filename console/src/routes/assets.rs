//! The stylesheet and the script, embedded in the binary (no CDN, nothing
//! to deploy beside it).

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const CSS: &str = include_str!("../../assets/console.css");
const JS: &str = include_str!("../../assets/console.js");
/// Assets change only with the binary: browsers may keep them an hour.
const CACHE: &str = "public, max-age=3600";

/// `GET /assets/console.css` and `GET /assets/console.js`.
pub fn router() -> Router {
    Router::new()
        .route(
            "/assets/console.css",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/css; charset=utf-8"),
                        (header::CACHE_CONTROL, CACHE),
                    ],
                    CSS,
                )
                    .into_response()
            }),
        )
        .route(
            "/assets/console.js",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                        (header::CACHE_CONTROL, CACHE),
                    ],
                    JS,
                )
                    .into_response()
            }),
        )
}
