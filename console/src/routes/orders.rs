//! `GET /`: search the orders (read models) by id, user and status, newest
//! first, a page at a time (`?after=` is the next page's cursor).

use std::fmt::Write as _;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use query_api::pagination::{Cursor as _, OrderCursor};
use serde::Deserialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::{ConsoleError, DbContext};
use crate::html::{esc, or_dash, time, url_component, Page, Section};
use crate::AppState;

/// Orders per page unless `?limit=` says otherwise.
pub const DEFAULT_LIMIT: i64 = 20;
/// Largest `?limit=`.
pub const MAX_LIMIT: i64 = 100;
/// The statuses an order can have, for the filter.
pub const STATUSES: [&str; 5] = [
    "PENDING",
    "AWAITING_PAYMENT",
    "CONFIRMED",
    "REJECTED",
    "CANCELLED",
];

/// The orders page.
pub fn router() -> Router<AppState> {
    Router::new().route("/", get(search))
}

/// The search form's fields (empty ones mean "any").
#[derive(Debug, Default, Deserialize)]
pub struct Search {
    /// Exactly this order.
    pub order_id: Option<String>,
    /// Orders of this user.
    pub user_id: Option<String>,
    /// Orders in this status.
    pub status: Option<String>,
    /// The cursor of the page's start (the previous page's last order).
    pub after: Option<String>,
    /// Orders per page.
    pub limit: Option<i64>,
}

/// A validated search.
struct Filter {
    order_id: Option<Uuid>,
    user_id: Option<String>,
    status: Option<String>,
    after: Option<OrderCursor>,
    limit: i64,
}

fn given(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

impl Search {
    fn filter(&self) -> Result<Filter, ConsoleError> {
        let order_id = given(&self.order_id)
            .map(|raw| {
                raw.parse::<Uuid>().map_err(|_| {
                    ConsoleError::BadRequest(format!("{raw:?} is not a valid order id (a UUID)"))
                })
            })
            .transpose()?;
        let status = given(&self.status).map(|s| s.to_ascii_uppercase());
        if let Some(status) = &status {
            if !STATUSES.contains(&status.as_str()) {
                return Err(ConsoleError::BadRequest(format!(
                    "unknown status {status:?}; one of {}",
                    STATUSES.join(", ")
                )));
            }
        }
        let after = given(&self.after)
            .map(|token| {
                OrderCursor::decode(&token)
                    .map_err(|_| ConsoleError::BadRequest("invalid page cursor".to_owned()))
            })
            .transpose()?;
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ConsoleError::BadRequest(format!(
                "limit must be between 1 and {MAX_LIMIT}"
            )));
        }
        Ok(Filter {
            order_id,
            user_id: given(&self.user_id),
            status,
            after,
            limit,
        })
    }
}

/// One row of the result.
#[derive(Debug, sqlx::FromRow)]
struct Row {
    order_id: Uuid,
    user_id: String,
    status: String,
    reason: Option<String>,
    total_cents: i64,
    placed_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    payment_status: Option<String>,
}

async fn find(pool: &PgPool, filter: &Filter) -> Result<Vec<Row>, ConsoleError> {
    // A user's orders through read.user_orders (indexed by user, newest first).
    sqlx::query_as(
        "SELECT o.order_id, o.user_id, o.status, o.reason, o.total_cents, o.placed_at,
                o.updated_at, p.status AS payment_status
         FROM read.orders o
         LEFT JOIN read.payments p ON p.order_id = o.order_id
         WHERE ($1::uuid IS NULL OR o.order_id = $1)
           AND ($2::text IS NULL
                OR o.order_id IN (SELECT u.order_id FROM read.user_orders u WHERE u.user_id = $2))
           AND ($3::text IS NULL OR o.status = $3)
           AND ($4::timestamptz IS NULL OR (o.placed_at, o.order_id) < ($4, $5))
         ORDER BY o.placed_at DESC, o.order_id DESC
         LIMIT $6",
    )
    .bind(filter.order_id)
    .bind(&filter.user_id)
    .bind(&filter.status)
    .bind(filter.after.map(|c| c.placed_at))
    .bind(filter.after.map(|c| c.order_id))
    .bind(filter.limit + 1)
    .fetch_all(pool)
    .await
    .db_context(|| "searching orders".to_owned())
}

#[tracing::instrument(skip(state))]
async fn search(
    State(state): State<AppState>,
    query: Result<Query<Search>, QueryRejection>,
) -> Result<Page, ConsoleError> {
    let Query(search) = query?;
    let form = form(&search);
    let filter = match search.filter() {
        Ok(filter) => filter,
        Err(error) => {
            let page = error.to_page();
            let body = format!("{form}{}", page.body);
            return Ok(Page::new(Section::Orders, "Orders", body).with_status(page.status));
        }
    };
    let mut rows = find(state.reader(), &filter).await?;
    let more = rows.len() > usize::try_from(filter.limit).unwrap_or(usize::MAX);
    rows.truncate(usize::try_from(filter.limit).unwrap_or(usize::MAX));
    let mut body = form;
    if rows.is_empty() {
        body.push_str(r#"<p class="empty" id="no-orders">No orders match.</p>"#);
    } else {
        body.push_str(
            r#"<table id="orders"><thead><tr><th>Order</th><th>User</th><th>Status</th><th>Payment</th><th class="num">Total</th><th>Placed</th><th>Updated</th></tr></thead><tbody>"#,
        );
        for row in &rows {
            let _ = write!(
                body,
                r#"<tr><td><a class="mono" href="/orders/{id}">{id}</a></td><td>{user}</td><td><span class="status status-{status}" title="{reason}">{status}</span></td><td>{payment}</td><td class="num">{total}</td><td>{placed}</td><td>{updated}</td></tr>"#,
                id = row.order_id,
                user = esc(&row.user_id),
                status = esc(&row.status),
                reason = esc(row.reason.as_deref().unwrap_or("")),
                payment = esc(or_dash(row.payment_status.as_deref())),
                total = cents(row.total_cents),
                placed = time(row.placed_at),
                updated = time(row.updated_at),
            );
        }
        body.push_str("</tbody></table>");
    }
    body.push_str(r#"<p class="pager">"#);
    if filter.after.is_some() {
        let _ = write!(
            body,
            r#"<a href="{}">First page</a> "#,
            page_url(&filter, None)
        );
    }
    if let (true, Some(last)) = (more, rows.last()) {
        let cursor = OrderCursor {
            placed_at: last.placed_at,
            order_id: last.order_id,
        };
        let _ = write!(
            body,
            r#"<a id="next-page" href="{}">Next page →</a>"#,
            page_url(&filter, Some(&cursor))
        );
    }
    body.push_str("</p>");
    Ok(Page::new(Section::Orders, "Orders", body))
}

/// An amount in cents as `12.50`.
pub fn cents(amount: i64) -> String {
    let sign = if amount < 0 { "-" } else { "" };
    let amount = amount.unsigned_abs();
    format!("{sign}{}.{:02}", amount / 100, amount % 100)
}

fn page_url(filter: &Filter, after: Option<&OrderCursor>) -> String {
    let mut url = format!("/?limit={}", filter.limit);
    if let Some(id) = filter.order_id {
        let _ = write!(url, "&order_id={id}");
    }
    if let Some(user) = &filter.user_id {
        let _ = write!(url, "&user_id={}", url_component(user));
    }
    if let Some(status) = &filter.status {
        let _ = write!(url, "&status={}", url_component(status));
    }
    if let Some(cursor) = after {
        let _ = write!(url, "&after={}", url_component(&cursor.encode()));
    }
    esc(url).to_string()
}

fn form(search: &Search) -> String {
    let value = |v: &Option<String>| esc(v.as_deref().unwrap_or("")).to_string();
    let chosen = given(&search.status).map(|s| s.to_ascii_uppercase());
    let options: String = std::iter::once(("", "any status"))
        .chain(STATUSES.iter().map(|s| (*s, *s)))
        .map(|(value, label)| {
            let selected = if chosen.as_deref() == Some(value) {
                " selected"
            } else {
                ""
            };
            format!(r#"<option value="{value}"{selected}>{label}</option>"#)
        })
        .collect();
    format!(
        r#"<form class="search" method="get" action="/">
<label>Order id <input name="order_id" id="order_id" value="{order}" placeholder="uuid" size="38"></label>
<label>User <input name="user_id" id="user_id" value="{user}" placeholder="user id"></label>
<label>Status <select name="status" id="status">{options}</select></label>
<button type="submit">Search</button>
</form>
"#,
        order = value(&search.order_id),
        user = value(&search.user_id),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_shown_in_units() {
        assert_eq!(cents(1250), "12.50");
        assert_eq!(cents(5), "0.05");
        assert_eq!(cents(-100), "-1.00");
    }

    #[test]
    fn searches_are_validated() {
        let bad = |search: Search| search.filter().err().map(|e| e.to_problem().status);
        assert_eq!(
            bad(Search {
                order_id: Some("nope".into()),
                ..Search::default()
            }),
            Some(400)
        );
        assert_eq!(
            bad(Search {
                status: Some("SHIPPED".into()),
                ..Search::default()
            }),
            Some(400)
        );
        assert_eq!(
            bad(Search {
                limit: Some(0),
                ..Search::default()
            }),
            Some(400)
        );
        assert_eq!(
            bad(Search {
                after: Some("garbage".into()),
                ..Search::default()
            }),
            Some(400)
        );
        let filter = Search {
            user_id: Some("  ".into()),
            status: Some("confirmed".into()),
            ..Search::default()
        }
        .filter()
        .unwrap();
        assert_eq!(filter.user_id, None);
        assert_eq!(filter.status.as_deref(), Some("CONFIRMED"));
    }
}
