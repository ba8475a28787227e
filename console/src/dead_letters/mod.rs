//! Dead letters of every consumer that parks them, behind one shape so the
//! pages do not care whose they are. Each source is its own module:
//! [`saga`] (the saga worker's `saga.dead_letters`) and [`projector`] (the
//! live projector's `projector.dead_letters`).

pub mod projector;
pub mod saga;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::ConsoleError;

/// Whose dead letter it is (the path segment of its pages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The saga worker's.
    Saga,
    /// The projector's.
    Projector,
}

impl Source {
    /// Lists its dead letters, oldest first; re-driven ones too if `all`.
    pub async fn list(self, pool: &sqlx::PgPool, all: bool) -> Result<Vec<Letter>, ConsoleError> {
        match self {
            Source::Saga => saga::list(pool, all).await,
            Source::Projector => projector::list(pool, all).await,
        }
    }

    /// One of its dead letters.
    pub async fn show(self, pool: &sqlx::PgPool, id: i64) -> Result<Option<Letter>, ConsoleError> {
        match self {
            Source::Saga => saga::show(pool, id).await,
            Source::Projector => projector::show(pool, id).await,
        }
    }

    /// Re-drives its letter `id` (the projector: with the parked letters
    /// before it in its stream), or every parked one; writes through
    /// `writer`, the saga's letters through `saga_handler`.
    pub async fn redrive(
        self,
        writer: &sqlx::PgPool,
        saga_handler: &::saga::Handler,
        id: Option<i64>,
    ) -> Result<Vec<Redriven>, ConsoleError> {
        match self {
            Source::Saga => saga::redrive(writer, saga_handler, id).await,
            Source::Projector => projector::redrive(writer, id).await,
        }
    }

    /// Every source, in the order the list page shows them.
    pub const ALL: [Source; 2] = [Source::Saga, Source::Projector];

    /// Its path segment: `/dead-letters/{source}/{id}`.
    pub fn slug(self) -> &'static str {
        match self {
            Source::Saga => "saga",
            Source::Projector => "projector",
        }
    }

    /// Its heading.
    pub fn label(self) -> &'static str {
        match self {
            Source::Saga => "Saga worker",
            Source::Projector => "Projector",
        }
    }

    /// The source named `slug`; 404 for anything else.
    pub fn parse(slug: &str) -> Result<Self, ConsoleError> {
        Self::ALL
            .into_iter()
            .find(|source| source.slug() == slug)
            .ok_or_else(|| ConsoleError::NotFound(format!("no dead-letter source {slug:?}")))
    }
}

/// A dead letter, whoever parked it.
#[derive(Debug, Clone)]
pub struct Letter {
    /// Who parked it.
    pub source: Source,
    /// Its id, in parking order.
    pub id: i64,
    /// Source topic, partition and offset.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Message key.
    pub key: Option<String>,
    /// Message value as received.
    pub payload: String,
    /// Message headers (a JSON object).
    pub headers: serde_json::Value,
    /// The event's id, if it parsed.
    pub event_id: Option<Uuid>,
    /// The order it concerns, if known.
    pub order_id: Option<Uuid>,
    /// The event's stream (type and id), if known and not the order's.
    pub stream: Option<(String, Uuid)>,
    /// The event's position in the log, if known.
    pub global_position: Option<i64>,
    /// Why it was parked.
    pub reason: String,
    /// How often it was tried.
    pub attempts: i32,
    /// `parked` or `redriven`.
    pub status: String,
    /// When it was parked.
    pub created_at: DateTime<Utc>,
}

impl Letter {
    /// Whether it still waits for a re-drive.
    pub fn is_parked(&self) -> bool {
        self.status == "parked"
    }
}

/// What re-driving one letter did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redrive {
    /// Processed; now marked re-driven. What the handler did.
    Done(String),
    /// Failed again; still parked. Why.
    FailedAgain(String),
}

/// One re-driven letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redriven {
    /// The letter.
    pub id: i64,
    /// What happened.
    pub outcome: Redrive,
}
