//! Dead letters of every consumer that parks them, behind one shape so the
//! pages do not care whose they are. Each source is its own module:
//! [`saga`] (the saga worker's `saga.dead_letters`).

pub mod saga;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::ConsoleError;

/// Whose dead letter it is (the path segment of its pages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The saga worker's.
    Saga,
}

impl Source {
    /// Every source, in the order the list page shows them.
    pub const ALL: [Source; 1] = [Source::Saga];

    /// Its path segment: `/dead-letters/{source}/{id}`.
    pub fn slug(self) -> &'static str {
        match self {
            Source::Saga => "saga",
        }
    }

    /// Its heading.
    pub fn label(self) -> &'static str {
        match self {
            Source::Saga => "Saga worker",
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
