//! `GET /orders/{id}`: one order's timeline, payment and saga. 400 for an id
//! that is not a UUID, 404 for an order nobody knows.

use std::fmt::Write as _;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::Router;
use uuid::Uuid;

use super::orders::cents;
use super::uuid_segment;
use crate::error::ConsoleError;
use crate::html::{esc, or_dash, pretty, time, Page, Section};
use crate::timeline::{self, Timeline, TimelineEvent};
use crate::AppState;

/// The timeline page.
pub fn router() -> Router<AppState> {
    Router::new().route("/orders/{order_id}", get(show))
}

#[tracing::instrument(skip(state, id))]
async fn show(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Page, ConsoleError> {
    let order_id = uuid_segment(id, "order")?;
    let timeline = timeline::load(state.reader(), order_id).await?;
    let mut body = String::from(r#"<div class="cards">"#);
    body.push_str(&summary(&timeline));
    body.push_str(&saga(&timeline));
    body.push_str(&payment(&timeline));
    body.push_str("</div>");
    body.push_str(&events(&timeline));
    Ok(Page::new(
        Section::Orders,
        format!("Order {order_id}"),
        body,
    ))
}

fn summary(timeline: &Timeline) -> String {
    let Some(order) = &timeline.order else {
        return r#"<p class="warning" id="not-projected">The read model has no row for this order yet (the projector is behind); the log's events are below.</p>"#.to_owned();
    };
    let lines = order
        .lines
        .as_array()
        .map(|lines| {
            lines
                .iter()
                .map(|line| {
                    format!(
                        r#"<li><span class="mono">{}</span> × {} at {}</li>"#,
                        esc(line["product_id"].as_str().unwrap_or("?")),
                        esc(&line["quantity"]),
                        cents(line["unit_price_cents"].as_i64().unwrap_or(0)),
                    )
                })
                .collect::<String>()
        })
        .unwrap_or_default();
    format!(
        r#"<section class="card"><h2>Order</h2><dl class="facts">
<dt>Status</dt><dd><span class="status status-{status}" id="order-status">{status}</span></dd>
<dt>Reason</dt><dd id="order-reason">{reason}</dd>
<dt>User</dt><dd id="order-user"><a href="/?user_id={user_q}">{user}</a></dd>
<dt>Total</dt><dd>{total}</dd>
<dt>Placed</dt><dd>{placed}</dd>
<dt>Updated</dt><dd>{updated} (version {version})</dd>
<dt>Lines</dt><dd><ul class="lines">{lines}</ul></dd>
</dl></section>"#,
        status = esc(&order.status),
        reason = esc(or_dash(order.reason.as_deref())),
        user_q = esc(crate::html::url_component(&order.user_id)),
        user = esc(&order.user_id),
        total = cents(order.total_cents),
        placed = time(order.placed_at),
        updated = time(order.updated_at),
        version = order.version,
    )
}

fn saga(timeline: &Timeline) -> String {
    let mut out = String::from(r#"<section class="card" id="saga"><h2>Saga</h2>"#);
    match &timeline.saga {
        None => out.push_str(r#"<p class="empty">The saga has not seen this order (yet).</p>"#),
        Some(saga) => {
            let (payment, effect, deadline, reserved) = match &saga.state {
                Some(state) => (
                    json_text(&state.payment),
                    state
                        .effect
                        .as_ref()
                        .map_or_else(|| "none".to_owned(), json_text),
                    or_dash(state.deadline.map(time)),
                    state.reserved.len().to_string(),
                ),
                None => ("?".into(), "?".into(), "?".into(), "?".into()),
            };
            let _ = write!(
                out,
                r#"<dl class="facts">
<dt>Phase</dt><dd id="saga-phase">{phase}</dd>
<dt>Next action</dt><dd id="saga-next-action">{next}</dd>
<dt>Payment deadline</dt><dd id="saga-deadline">{deadline}</dd>
<dt>Pending effect</dt><dd>{effect} (attempts {attempts})</dd>
<dt>Payment</dt><dd>{payment}</dd>
<dt>Products held</dt><dd>{reserved}</dd>
<dt>Updated</dt><dd>{updated}</dd>
</dl><details><summary>State</summary><pre>{state}</pre></details>"#,
                phase = esc(&saga.phase),
                next = esc(or_dash(saga.next_action_at.map(time))),
                deadline = esc(deadline),
                effect = esc(effect),
                attempts = saga.effect_attempts,
                payment = esc(payment),
                reserved = esc(reserved),
                updated = time(saga.updated_at),
                state = esc(pretty(&saga.raw_state)),
            );
        }
    }
    for letter in &timeline.dead_letters {
        let _ = write!(
            out,
            r#"<p class="warning">{source} dead letter <a href="/dead-letters/{source}/{id}">#{id}</a> ({status}): {reason}</p>"#,
            source = esc(&letter.source),
            id = letter.id,
            status = esc(&letter.status),
            reason = esc(&letter.reason),
        );
    }
    out.push_str("</section>");
    out
}

/// A small serialized value in one line: `CAPTURED, charge_id ch_1…`.
fn json_text<T: serde::Serialize>(value: &T) -> String {
    fn plain(value: &serde_json::Value) -> String {
        match value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
    match serde_json::to_value(value) {
        Ok(serde_json::Value::Object(fields)) => {
            // The tag (`status`, `kind`) first, then the other fields.
            let tag = |key: &str| matches!(key, "status" | "kind" | "type");
            let (tags, rest): (Vec<_>, Vec<_>) = fields.iter().partition(|(key, _)| tag(key));
            tags.iter()
                .map(|(_, value)| plain(value))
                .chain(
                    rest.iter()
                        .map(|(key, value)| format!("{key} {}", plain(value))),
                )
                .collect::<Vec<_>>()
                .join(", ")
        }
        Ok(other) => plain(&other),
        Err(_) => String::new(),
    }
}

fn payment(timeline: &Timeline) -> String {
    let mut out = String::from(r#"<section class="card" id="payment"><h2>Payment</h2>"#);
    match &timeline.payment {
        None => out.push_str(r#"<p class="empty">No payment requested.</p>"#),
        Some(p) => {
            let _ = write!(
                out,
                r#"<dl class="facts">
<dt>Status</dt><dd id="payment-status">{status}</dd>
<dt>Amount</dt><dd>{amount} {currency}</dd>
<dt>Charge</dt><dd class="mono">{charge}</dd>
<dt>Refund</dt><dd class="mono">{refund}</dd>
<dt>Declined</dt><dd>{decline}</dd>
<dt>Failure</dt><dd>{failure}</dd>
<dt>Updated</dt><dd>{updated} (version {version})</dd>
</dl>"#,
                status = esc(&p.status),
                amount = cents(p.amount_cents),
                currency = esc(&p.currency),
                charge = esc(or_dash(p.charge_id.as_deref())),
                refund = esc(or_dash(p.refund_id.as_deref())),
                decline = esc(or_dash(p.decline_code.as_deref())),
                failure = esc(or_dash(p.failure_reason.as_deref())),
                updated = time(p.updated_at),
                version = p.version,
            );
        }
    }
    let attempts: Vec<&TimelineEvent> = timeline
        .events
        .iter()
        .filter(|e| e.stream_type == "payments")
        .collect();
    if !attempts.is_empty() {
        out.push_str(r#"<h3>Attempts and outcomes</h3><ol id="payment-attempts">"#);
        for event in attempts {
            let detail = event
                .payload
                .get("decline_code")
                .or_else(|| event.payload.get("reason"))
                .or_else(|| event.payload.get("charge_id"))
                .and_then(|v| v.as_str())
                .unwrap_or("");
            let _ = write!(
                out,
                r#"<li><span class="event-type">{kind}</span> {detail} <span class="muted">{at}</span></li>"#,
                kind = esc(&event.event_type),
                detail = esc(detail),
                at = time(event.recorded_at),
            );
        }
        out.push_str("</ol>");
    }
    out.push_str("</section>");
    out
}

/// What caused `event`: an earlier event of the timeline, or the command.
fn cause(timeline: &Timeline, event: &TimelineEvent) -> String {
    match event.causation_id {
        None => "–".to_owned(),
        Some(cause) => match timeline.event(cause) {
            Some(parent) => format!(
                r##"<a href="#event-{pos}">#{pos} {kind}</a>"##,
                pos = parent.global_position,
                kind = esc(&parent.event_type)
            ),
            None if Some(cause) == event.correlation_id => {
                format!(
                    r#"command <span class="mono" title="{cause}">{}</span>"#,
                    short(cause)
                )
            }
            None => format!(
                r#"<span class="mono" title="{cause}">{}</span>"#,
                short(cause)
            ),
        },
    }
}

fn short(id: Uuid) -> String {
    id.to_string()[..8].to_owned()
}

fn events(timeline: &Timeline) -> String {
    let mut out = format!(
        r#"<section class="card"><h2>Timeline <span class="muted">({} events)</span></h2>"#,
        timeline.events.len()
    );
    out.push_str(
        r#"<table id="timeline"><thead><tr><th class="num">Position</th><th>Time</th><th>Stream</th><th class="num">Version</th><th>Event</th><th>Caused by</th><th>Payload</th></tr></thead><tbody>"#,
    );
    for event in &timeline.events {
        let stream = if event.stream_id == timeline.order_id {
            "order".to_owned()
        } else {
            format!(
                r#"{} <span class="mono" title="{id}">{}</span>"#,
                esc(&event.stream_type),
                short(event.stream_id),
                id = event.stream_id
            )
        };
        let _ = write!(
            out,
            r#"<tr id="event-{pos}" class="stream-{kind}"><td class="num">{pos}</td><td>{at}</td><td>{stream}</td><td class="num">{version}</td><td class="event-type">{event_type}</td><td>{cause}</td><td><details><summary>data</summary><pre>{payload}</pre></details></td></tr>"#,
            pos = event.global_position,
            kind = esc(&event.stream_type),
            at = time(event.recorded_at),
            version = event.stream_version,
            event_type = esc(&event.event_type),
            cause = cause(timeline, event),
            payload = esc(pretty(&event.payload)),
        );
    }
    out.push_str("</tbody></table></section>");
    out
}
