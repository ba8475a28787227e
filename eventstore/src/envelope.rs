//! The event envelope: what the log stores, Kafka carries and consumers see.

use chrono::{DateTime, Utc};
use domain::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where an event came from: the command that caused it and its trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Id of the originating command, shared by everything it set off.
    pub correlation_id: Uuid,
    /// Id of the command or event that directly caused this event.
    pub causation_id: Uuid,
    /// W3C trace context of the request that caused the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The `Idempotency-Key` of the originating request, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

impl Metadata {
    /// Metadata of events caused directly by the command `command_id`.
    pub fn for_command(command_id: Uuid) -> Self {
        Self {
            correlation_id: command_id,
            causation_id: command_id,
            traceparent: None,
            idempotency_key: None,
        }
    }
}

/// An event about to be appended.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Its id (UUIDv7, so ids sort by creation time).
    pub event_id: Uuid,
    /// Its type name, e.g. `OrderPlaced`.
    pub event_type: String,
    /// Version of the payload's schema.
    pub schema_version: i32,
    /// The event's data.
    pub payload: serde_json::Value,
}

impl NewEvent {
    /// Wraps a domain event with a fresh UUIDv7 id.
    pub fn from_domain<E: DomainEvent>(event: &E) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            event_type: event.event_type().to_owned(),
            schema_version: event.schema_version(),
            payload: event.to_payload(),
        }
    }
}

/// A recorded event with its position in its stream and in the whole log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct EventEnvelope {
    /// Unique id (UUIDv7).
    pub event_id: Uuid,
    /// The aggregate's id.
    pub stream_id: Uuid,
    /// The aggregate's kind: `orders`, `inventory` or `payments`.
    pub stream_type: String,
    /// Position in its stream: 1, 2, 3… without gaps.
    pub stream_version: i64,
    /// Position in the whole log (increasing, may have gaps).
    pub global_position: i64,
    /// Type name of the payload.
    pub event_type: String,
    /// Version of the payload's schema.
    pub schema_version: i32,
    /// When the log recorded it.
    pub recorded_at: DateTime<Utc>,
    /// The event's data.
    pub payload: serde_json::Value,
    /// Correlation, causation and trace ids.
    #[sqlx(json)]
    pub metadata: Metadata,
}

impl EventEnvelope {
    /// Decodes the payload as a domain event of type `E`.
    pub fn decode<E: DomainEvent>(&self) -> Result<E, domain::EventDecodeError> {
        E::from_parts(&self.event_type, self.schema_version, &self.payload)
    }
}
