//! A console over a fresh database, and seeding through the real paths.

use std::net::SocketAddr;

use chrono::Utc;
use clap::Parser as _;
use domain::order::{OrderEvent, OrderLine};
use domain::product::ProductEvent;
use eventstore::{EventEnvelope, ExpectedVersion, Metadata, NewEvent};
use testkit::TestDatabase;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The admin token of consoles started with one.
pub const TOKEN: &str = "test-admin-token";

/// A running console and its database.
pub struct Console {
    /// The database.
    pub db: TestDatabase,
    /// Base URL.
    pub url: String,
    /// A client that does not follow redirects.
    pub http: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for Console {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A fetched page.
pub struct Fetched {
    /// Its status.
    pub status: u16,
    /// Its body.
    pub body: String,
}

impl Console {
    /// A console without an admin token (re-drive disabled).
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// A console with `token` as its admin token.
    pub async fn start_with(token: Option<&str>) -> Self {
        let db = TestDatabase::create().await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address: SocketAddr = listener.local_addr().unwrap();
        let config = web_console::Config::try_parse_from([
            "console",
            "--database-url",
            &db.url,
            "--admin-token",
            token.unwrap_or(""),
            "--saga-payment-deadline-ms",
            "60000",
        ])
        .unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(web_console::run_on(listener, config, shutdown.clone()));
        Self {
            db,
            url: format!("http://{address}"),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            shutdown,
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Fetched {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        Fetched {
            status,
            body: response.text().await.unwrap(),
        }
    }

    /// `GET path` as JSON, expecting 200.
    pub async fn json(&self, path: &str) -> serde_json::Value {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// `POST path` with a form (`token`, if given) and optional bearer token.
    pub async fn post_form(
        &self,
        path: &str,
        form_token: Option<&str>,
        bearer: Option<&str>,
    ) -> Fetched {
        let mut request = self.http.post(format!("{}{path}", self.url));
        if let Some(token) = form_token {
            request = request.form(&[("token", token)]);
        }
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        Fetched {
            status,
            body: response.text().await.unwrap(),
        }
    }

    async fn append(&self, stream_type: &str, stream_id: Uuid, event: NewEvent, correlation: Uuid) {
        let mut tx = self.db.pool.begin().await.unwrap();
        eventstore::append(
            &mut tx,
            stream_type,
            stream_id,
            ExpectedVersion::Any,
            &[event],
            &Metadata::for_command(correlation),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }

    /// Registers a product; its id.
    pub async fn product(&self, name: &str, price_cents: i64, stock: i64) -> Uuid {
        let id = Uuid::now_v7();
        let event = NewEvent::from_domain(&ProductEvent::ProductRegistered {
            name: name.into(),
            price_cents,
            initial_stock: stock,
        });
        self.append("inventory", id, event, Uuid::now_v7()).await;
        id
    }

    /// Places an order (one command); its id.
    pub async fn order(&self, user: &str, lines: &[(Uuid, i64, i64)], token: &str) -> Uuid {
        let id = Uuid::now_v7();
        let lines: Vec<OrderLine> = lines
            .iter()
            .map(|&(product_id, quantity, unit_price_cents)| OrderLine {
                product_id,
                quantity,
                unit_price_cents,
            })
            .collect();
        let total_cents = lines.iter().map(|l| l.quantity * l.unit_price_cents).sum();
        let event = NewEvent::from_domain(&OrderEvent::OrderPlaced {
            user_id: user.into(),
            lines,
            total_cents,
            payment_token: token.into(),
            placed_at: Utc::now(),
        });
        self.append("orders", id, event, Uuid::now_v7()).await;
        id
    }

    /// Every event of the log after `position`, in order.
    pub async fn events_after(&self, position: i64) -> Vec<EventEnvelope> {
        sqlx::query_as(
            "SELECT event_id, stream_id, stream_type, stream_version, global_position, event_type,
                    schema_version, recorded_at, payload, metadata
             FROM eventstore.events WHERE global_position > $1 ORDER BY global_position",
        )
        .bind(position)
        .fetch_all(&self.db.pool)
        .await
        .unwrap()
    }

    /// Runs the saga's real handler over the log until it appends nothing
    /// more (what the worker would do; no provider calls are made).
    pub async fn run_saga(&self) {
        let handler = saga::Handler::new(self.db.pool.clone(), policy());
        let mut position = 0;
        loop {
            let events = self.events_after(position).await;
            let Some(last) = events.last() else { return };
            position = last.global_position;
            for event in &events {
                handler.handle(event).await.unwrap();
            }
        }
    }

    /// Builds the read models from the log (the projector's replay).
    pub async fn project(&self) {
        projector::replay(
            &self.db.pool,
            &projector::ReplayOptions {
                progress: projector::ProgressMode::Hidden,
                ..projector::ReplayOptions::default()
            },
        )
        .await
        .unwrap();
    }
}

/// The saga policy the tests decide with.
pub fn policy() -> domain::saga::SagaPolicy {
    domain::saga::SagaPolicy {
        payment_deadline: chrono::Duration::seconds(60),
        currency: "EUR".into(),
    }
}

/// The text of `body` between the first `start` and the next `end` after it.
pub fn between<'a>(body: &'a str, start: &str, end: &str) -> &'a str {
    let from = body
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} not in page:\n{body}"))
        + start.len();
    let to = body[from..].find(end).map_or(body.len(), |i| from + i);
    &body[from..to]
}
