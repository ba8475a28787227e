//! `GET /system` (projection lag and outbox backlog) and `GET /system.json`,
//! the same figures the page's script polls to stay live.

use std::fmt::Write as _;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::error::ConsoleError;
use crate::html::{esc, time, Page, Section};
use crate::system::{self, Figures};
use crate::AppState;

/// The system page and its JSON.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/system", get(page))
        .route("/system.json", get(figures))
}

/// An age in seconds as the page shows it (the script formats the same way).
fn age(seconds: Option<f64>) -> String {
    seconds.map_or_else(|| "–".to_owned(), |s| format!("{s:.1} s"))
}

#[tracing::instrument(skip(state))]
async fn figures(State(state): State<AppState>) -> Response {
    match system::figures(state.reader()).await {
        Ok(figures) => Json(figures).into_response(),
        Err(error) => error.to_problem().into_response(),
    }
}

#[tracing::instrument(skip(state))]
async fn page(State(state): State<AppState>) -> Result<Page, ConsoleError> {
    let figures = system::figures(state.reader()).await?;
    Ok(Page::new(
        Section::System,
        "System",
        render(&figures, state.refresh().as_millis()),
    ))
}

fn render(figures: &Figures, refresh_ms: u128) -> String {
    let mut out = format!(
        r#"<div id="live" data-src="/system.json" data-refresh-ms="{refresh_ms}">
<p class="muted">Live: refreshed every {seconds:.1} s · taken <span data-field="at">{at}</span> · <span id="live-state">live</span></p>
<section class="card"><h2>Event log and outbox</h2><dl class="facts">
<dt>Log head (position)</dt><dd data-field="log_head" id="log-head">{head}</dd>
<dt>Outbox rows to publish</dt><dd data-field="outbox.rows" id="outbox-rows">{rows}</dd>
<dt>Oldest outbox row waiting</dt><dd data-field="outbox.oldest_age_seconds" data-format="age" id="outbox-age">{oldest}</dd>
<dt>Parked saga dead letters</dt><dd data-field="parked_saga_letters" id="parked-saga-letters"><a href="/dead-letters">{parked}</a></dd>
<dt>Parked projector dead letters</dt><dd data-field="parked_projector_letters" id="parked-projector-letters"><a href="/dead-letters">{parked_projector}</a></dd>
</dl></section>
<section class="card"><h2>Projection lag</h2>
<table id="projections"><thead><tr><th>Projection</th><th>Table</th><th class="num">Applied through</th><th class="num">Events behind</th><th class="num">Oldest missing</th><th class="num">Behind for</th></tr></thead><tbody>"#,
        seconds = refresh_ms as f64 / 1000.0,
        at = time(figures.at),
        head = figures.log_head,
        rows = figures.outbox.rows,
        oldest = age(figures.outbox.oldest_age_seconds),
        parked = figures.parked_saga_letters,
        parked_projector = figures.parked_projector_letters,
    );
    for (index, lag) in figures.projections.iter().enumerate() {
        let field = |name: &str| format!("projections.{index}.{name}");
        let _ = write!(
            out,
            r#"<tr data-projection="{name}"><td>{name}</td><td class="mono">{table}</td><td class="num" data-field="{f_applied}">{applied}</td><td class="num" data-field="{f_behind}">{behind}</td><td class="num" data-field="{f_oldest}">{oldest}</td><td class="num" data-field="{f_age}" data-format="age">{age}</td></tr>"#,
            name = esc(lag.projection),
            table = esc(&lag.table),
            applied = lag.applied_through,
            behind = lag.events_behind,
            oldest = lag
                .oldest_missing_position
                .map_or_else(|| "–".to_owned(), |p| p.to_string()),
            age = age(lag.oldest_missing_age_seconds),
            f_applied = field("applied_through"),
            f_behind = field("events_behind"),
            f_oldest = field("oldest_missing_position"),
            f_age = field("oldest_missing_age_seconds"),
        );
    }
    out.push_str("</tbody></table></section></div>");
    out
}
