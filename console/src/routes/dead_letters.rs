//! `GET /dead-letters` (every source's letters, parked ones unless
//! `?all=true`), `GET /dead-letters/{source}/{id}` (one letter: payload,
//! headers, reason), and the console's only writes, which need the admin
//! token: `POST /dead-letters/{source}/{id}/redrive` (one letter) and
//! `POST /dead-letters/{source}/redrive` (every parked one, oldest first).

use std::fmt::Write as _;

use axum::extract::rejection::{FormRejection, PathRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use crate::dead_letters::{Letter, Redrive, Redriven, Source};
use crate::error::ConsoleError;
use crate::html::{esc, pretty, time, Page, Section};
use crate::AppState;

/// The dead-letter pages.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dead-letters", get(list))
        .route("/dead-letters/{source}/{id}", get(show))
        .route("/dead-letters/{source}/{id}/redrive", post(redrive))
        .route("/dead-letters/{source}/redrive", post(redrive_all))
}

/// `?all=true` also lists re-driven letters.
#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    #[serde(default)]
    all: bool,
}

/// The re-drive form.
#[derive(Debug, Default, Deserialize)]
struct RedriveForm {
    /// The admin token (or send `Authorization: Bearer`).
    token: Option<String>,
}

async fn find(state: &AppState, source: Source, id: i64) -> Result<Letter, ConsoleError> {
    source
        .show(state.reader(), id)
        .await?
        .ok_or_else(|| ConsoleError::NotFound(format!("no {} dead letter #{id}", source.slug())))
}

fn address(
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(Source, i64), ConsoleError> {
    let Path((source, id)) = path.map_err(|r| ConsoleError::BadRequest(r.body_text()))?;
    let source = Source::parse(&source)?;
    let id = id.parse().map_err(|_| {
        ConsoleError::BadRequest(format!("{id:?} is not a dead-letter id (a number)"))
    })?;
    Ok((source, id))
}

#[tracing::instrument(skip(state))]
async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Page, ConsoleError> {
    let Query(query) = query?;
    list_page(&state, query.all, String::new()).await
}

async fn list_page(state: &AppState, all: bool, notice: String) -> Result<Page, ConsoleError> {
    let mut body = notice;
    body.push_str(r#"<p class="muted">"#);
    body.push_str(if all {
        r#"Every dead letter, re-driven ones too. <a href="/dead-letters">Only parked ones</a>"#
    } else {
        r#"Parked dead letters, oldest first. <a href="/dead-letters?all=true">Include re-driven ones</a>"#
    });
    body.push_str("</p>");
    if !state.token().enabled() {
        body.push_str(DISABLED);
    }
    for source in Source::ALL {
        let letters = source.list(state.reader(), all).await?;
        let _ = write!(
            body,
            r#"<section class="card"><h2>{label} <span class="muted">({count})</span></h2>"#,
            label = esc(source.label()),
            count = letters.len()
        );
        if letters.is_empty() {
            body.push_str(r#"<p class="empty">None.</p>"#);
        } else {
            let _ = write!(
                body,
                r#"<table id="letters-{slug}"><thead><tr><th class="num">#</th><th>Status</th><th>Source</th><th>Concerns</th><th>Reason</th><th class="num">Tries</th><th>Parked</th></tr></thead><tbody>"#,
                slug = source.slug()
            );
            for letter in &letters {
                let _ = write!(
                    body,
                    r#"<tr data-letter="{id}"><td class="num"><a href="/dead-letters/{slug}/{id}">#{id}</a></td><td><span class="status status-{status}">{status}</span></td><td class="mono">{topic}[{partition}]@{offset}</td><td>{order}</td><td class="reason">{reason}</td><td class="num">{attempts}</td><td>{at}</td></tr>"#,
                    id = letter.id,
                    slug = source.slug(),
                    status = esc(&letter.status),
                    topic = esc(&letter.topic),
                    partition = letter.partition,
                    offset = letter.offset,
                    order = order_link(letter),
                    reason = esc(&letter.reason),
                    attempts = letter.attempts,
                    at = time(letter.created_at),
                );
            }
            body.push_str("</tbody></table>");
            if state.token().enabled() && letters.iter().any(Letter::is_parked) {
                let _ = write!(
                    body,
                    r#"<form method="post" action="/dead-letters/{slug}/redrive" class="redrive-all" id="redrive-all-{slug}">
<label>Admin token <input type="password" name="token" autocomplete="off" required></label>
<button type="submit">Re-drive every parked letter, oldest first</button></form>"#,
                    slug = source.slug()
                );
            }
        }
        body.push_str("</section>");
    }
    Ok(Page::new(Section::DeadLetters, "Dead letters", body))
}

const DISABLED: &str = r#"<p class="warning" id="redrive-disabled">Re-drive is disabled: the console was started without <code>CONSOLE_ADMIN_TOKEN</code>.</p>"#;

fn order_link(letter: &Letter) -> String {
    letter.order_id.map_or_else(
        || "–".to_owned(),
        |id| {
            format!(
                r#"<a class="mono" href="/orders/{id}">{}</a>"#,
                &id.to_string()[..8]
            )
        },
    )
}

#[tracing::instrument(skip(state, path))]
async fn show(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Page, ConsoleError> {
    let (source, id) = address(path)?;
    let letter = find(&state, source, id).await?;
    Ok(letter_page(&state, &letter, None))
}

fn letter_page(state: &AppState, letter: &Letter, notice: Option<String>) -> Page {
    let payload = serde_json::from_str::<serde_json::Value>(&letter.payload)
        .map_or_else(|_| letter.payload.clone(), |json| pretty(&json));
    let mut body = notice.unwrap_or_default();
    let _ = write!(
        body,
        r#"<section class="card"><dl class="facts">
<dt>Status</dt><dd><span class="status status-{status}" id="letter-status">{status}</span></dd>
<dt>Reason</dt><dd id="letter-reason">{reason}</dd>
<dt>From</dt><dd class="mono">{topic} partition {partition} offset {offset}</dd>
<dt>Key</dt><dd class="mono">{key}</dd>
<dt>Event</dt><dd class="mono">{event}</dd>
<dt>Concerns</dt><dd>{order}</dd>
<dt>Log position</dt><dd>{position}</dd>
<dt>Tries</dt><dd>{attempts}</dd>
<dt>Parked</dt><dd>{at}</dd>
</dl></section>
<div class="cards"><section class="card"><h2>Payload</h2><pre id="letter-payload">{payload}</pre></section>
<section class="card"><h2>Headers</h2><pre id="letter-headers">{headers}</pre></section></div>"#,
        status = esc(&letter.status),
        reason = esc(&letter.reason),
        topic = esc(&letter.topic),
        partition = letter.partition,
        offset = letter.offset,
        key = esc(letter.key.as_deref().unwrap_or("–")),
        event = esc(letter
            .event_id
            .map_or_else(|| "–".to_owned(), |id| id.to_string())),
        order = order_link(letter),
        position = esc(letter
            .global_position
            .map_or_else(|| "–".to_owned(), |p| p.to_string())),
        attempts = letter.attempts,
        at = time(letter.created_at),
        payload = esc(payload),
        headers = esc(pretty(&letter.headers)),
    );
    if !letter.is_parked() {
        body.push_str(r#"<p class="muted">Already re-driven.</p>"#);
    } else if !state.token().enabled() {
        body.push_str(DISABLED);
    } else {
        let _ = write!(
            body,
            r#"<section class="card"><h2>Re-drive</h2><form method="post" action="/dead-letters/{slug}/{id}/redrive" id="redrive-form">
<label>Admin token <input type="password" name="token" id="token" autocomplete="off" required></label>
<button type="submit" id="redrive">Re-drive #{id}</button></form>
<p class="muted">Processes the message again through the same handler; on success it is marked re-driven.</p></section>"#,
            slug = letter.source.slug(),
            id = letter.id,
        );
    }
    Page::new(
        Section::DeadLetters,
        format!("{} dead letter #{}", letter.source.label(), letter.id),
        body,
    )
}

#[tracing::instrument(skip(state, headers, path, form))]
async fn redrive(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    form: Result<Form<RedriveForm>, FormRejection>,
) -> Result<Page, ConsoleError> {
    let (source, id) = address(path)?;
    // A request with a bearer token may have no form body at all.
    let form = form.map(|Form(form)| form).unwrap_or_default();
    state.token().authorize(&headers, form.token.as_deref())?;
    find(&state, source, id).await?;
    let results = redrive_in(&state, source, Some(id)).await?;
    let letter = find(&state, source, id).await?;
    // The projector re-drives the parked letters before this one in its
    // stream with it: they are listed too.
    let others: String = results
        .iter()
        .filter(|r| r.id != id)
        .map(|r| match &r.outcome {
            Redrive::Done(done) => {
                format!(r#"<li class="ok">#{}: re-driven: {}</li>"#, r.id, esc(done))
            }
            Redrive::FailedAgain(error) => format!(
                r#"<li class="error">#{}: failed again, still parked: {}</li>"#,
                r.id,
                esc(error)
            ),
        })
        .collect();
    let (status, mut notice) = match results.into_iter().find(|r| r.id == id) {
        Some(Redriven {
            outcome: Redrive::Done(done),
            ..
        }) => (
            StatusCode::OK,
            format!(
                r#"<p class="ok" id="redrive-result">Re-driven: {}</p>"#,
                esc(done)
            ),
        ),
        Some(Redriven {
            outcome: Redrive::FailedAgain(error),
            ..
        }) => (
            StatusCode::CONFLICT,
            format!(
                r#"<p class="error" id="redrive-result">Failed again, still parked: {}</p>"#,
                esc(error)
            ),
        ),
        None => (
            StatusCode::CONFLICT,
            r#"<p class="error" id="redrive-result">Not parked: it was re-driven already.</p>"#
                .to_owned(),
        ),
    };
    if !others.is_empty() {
        notice.push_str(&format!(
            r#"<p>With the letters before it in its stream:</p><ul id="redrive-others">{others}</ul>"#
        ));
    }
    Ok(letter_page(&state, &letter, Some(notice)).with_status(status))
}

async fn redrive_in(
    state: &AppState,
    source: Source,
    id: Option<i64>,
) -> Result<Vec<Redriven>, ConsoleError> {
    let results = source.redrive(state.writer(), state.saga(), id).await?;
    for result in &results {
        tracing::info!(source = source.slug(), id = result.id, outcome = ?result.outcome, "re-driven from the console");
    }
    Ok(results)
}

#[tracing::instrument(skip(state, headers, path, form))]
async fn redrive_all(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    form: Result<Form<RedriveForm>, FormRejection>,
) -> Result<Page, ConsoleError> {
    let Path(source) = path.map_err(|r| ConsoleError::BadRequest(r.body_text()))?;
    let source = Source::parse(&source)?;
    let form = form.map(|Form(form)| form).unwrap_or_default();
    state.token().authorize(&headers, form.token.as_deref())?;
    let results = redrive_in(&state, source, None).await?;
    let failed = results
        .iter()
        .any(|r| matches!(r.outcome, Redrive::FailedAgain(_)));
    let mut notice =
        String::from(r#"<section class="card" id="redrive-results"><h2>Re-drive</h2>"#);
    if results.is_empty() {
        notice.push_str(r#"<p class="muted">Nothing was parked.</p>"#);
    }
    notice.push_str("<ul>");
    for result in &results {
        let _ = match &result.outcome {
            Redrive::Done(done) => write!(
                notice,
                r#"<li class="ok">#{}: re-driven: {}</li>"#,
                result.id,
                esc(done)
            ),
            Redrive::FailedAgain(error) => write!(
                notice,
                r#"<li class="error">#{}: failed again, still parked (later letters were left alone): {}</li>"#,
                result.id,
                esc(error)
            ),
        };
    }
    notice.push_str("</ul></section>");
    let status = if failed {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    Ok(list_page(&state, false, notice).await?.with_status(status))
}
