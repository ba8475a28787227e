//! Events as the projections see them: the envelope's coordinates and the
//! domain event, decoded once whatever number of projections fold it.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use domain::order::OrderEvent;
use domain::payment::PaymentEvent;
use domain::product::ProductEvent;
use domain::{DomainEvent, EventDecodeError};
use eventstore::scan::ScannedEvent;
use eventstore::{EventEnvelope, Metadata};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;
use uuid::Uuid;

/// A domain event of one of the stream types the projections consume.
#[derive(Debug, Clone, PartialEq)]
pub enum Known {
    /// Of an `inventory` stream.
    Product(ProductEvent),
    /// Of an `orders` stream.
    Order(OrderEvent),
    /// Of a `payments` stream.
    Payment(PaymentEvent),
}

/// An event with its place in the log, decoded (or the reason it is not).
#[derive(Debug, Clone)]
pub struct Decoded {
    /// Its id.
    pub event_id: Uuid,
    /// Its stream.
    pub stream_id: Uuid,
    /// Its stream type.
    pub stream_type: String,
    /// Its version in the stream.
    pub stream_version: i64,
    /// Its position in the log.
    pub global_position: i64,
    /// Its type name.
    pub event_type: String,
    /// When the log recorded it, at the microsecond precision PostgreSQL keeps.
    pub recorded_at: DateTime<Utc>,
    /// The domain event, or why it cannot be decoded.
    pub event: Result<Known, EventDecodeError>,
    /// Its metadata's `traceparent` while spans are exported (for the
    /// projector's span in its trace); `None` otherwise.
    pub traceparent: Option<String>,
}

impl Decoded {
    /// Decodes an envelope (from Kafka or the log).
    pub fn from_envelope(envelope: &EventEnvelope) -> Self {
        let event = Known::decode(
            &envelope.stream_type,
            &envelope.event_type,
            envelope.schema_version,
            |known| decode_value(known, envelope),
        );
        Self {
            event_id: envelope.event_id,
            stream_id: envelope.stream_id,
            stream_type: envelope.stream_type.clone(),
            stream_version: envelope.stream_version,
            global_position: envelope.global_position,
            event_type: envelope.event_type.clone(),
            recorded_at: micros(envelope.recorded_at),
            event,
            traceparent: traced(&envelope.metadata),
        }
    }

    /// Decodes an envelope's JSON (a Kafka message's value) without building
    /// a JSON tree of its payload; returns its metadata beside it.
    pub fn from_json(json: &[u8]) -> Result<(Self, Metadata), serde_json::Error> {
        /// [`EventEnvelope`]'s JSON, the payload kept as text.
        #[derive(Deserialize)]
        struct Wire<'a> {
            event_id: Uuid,
            stream_id: Uuid,
            stream_type: String,
            stream_version: i64,
            global_position: i64,
            event_type: String,
            schema_version: i32,
            recorded_at: DateTime<Utc>,
            #[serde(borrow)]
            payload: &'a RawValue,
            metadata: Metadata,
        }
        let wire: Wire<'_> = serde_json::from_slice(json)?;
        let mut decoded = Self::from_scanned(ScannedEvent {
            event_id: wire.event_id,
            stream_id: wire.stream_id,
            stream_type: wire.stream_type,
            stream_version: wire.stream_version,
            global_position: wire.global_position,
            event_type: wire.event_type,
            schema_version: wire.schema_version,
            recorded_at: wire.recorded_at,
            payload: wire.payload.get().to_owned(),
        });
        decoded.traceparent = traced(&wire.metadata);
        Ok((decoded, wire.metadata))
    }

    /// Decodes an event of a log scan straight from its payload text.
    pub fn from_scanned(scanned: ScannedEvent) -> Self {
        let event = Known::decode(
            &scanned.stream_type,
            &scanned.event_type,
            scanned.schema_version,
            |known| decode_text(known, &scanned.event_type, &scanned.payload),
        );
        Self {
            event_id: scanned.event_id,
            stream_id: scanned.stream_id,
            stream_type: scanned.stream_type,
            stream_version: scanned.stream_version,
            global_position: scanned.global_position,
            event_type: scanned.event_type,
            recorded_at: micros(scanned.recorded_at),
            event,
            traceparent: None,
        }
    }
}

/// The `traceparent` to keep: only while spans are exported.
fn traced(metadata: &Metadata) -> Option<String> {
    if platform::otel::enabled() {
        metadata.traceparent.clone()
    } else {
        None
    }
}

/// Which event enum a stream type's events decode into.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Product,
    Order,
    Payment,
}

impl Known {
    fn decode(
        stream_type: &str,
        event_type: &str,
        schema_version: i32,
        decode: impl FnOnce(Kind) -> Result<Known, EventDecodeError>,
    ) -> Result<Known, EventDecodeError> {
        let (kind, types) = match stream_type {
            ProductEvent::STREAM_TYPE => (Kind::Product, ProductEvent::EVENT_TYPES),
            OrderEvent::STREAM_TYPE => (Kind::Order, OrderEvent::EVENT_TYPES),
            PaymentEvent::STREAM_TYPE => (Kind::Payment, PaymentEvent::EVENT_TYPES),
            _ => {
                return Err(EventDecodeError::UnknownType {
                    stream_type: stream_type.to_owned(),
                    event_type: event_type.to_owned(),
                })
            }
        };
        // The same checks, in the same order, as `domain::event::decode_parts`.
        if !types.contains(&event_type) {
            return Err(EventDecodeError::UnknownType {
                stream_type: stream_type.to_owned(),
                event_type: event_type.to_owned(),
            });
        }
        if schema_version != domain::event::SCHEMA_VERSION {
            return Err(EventDecodeError::UnsupportedSchemaVersion {
                event_type: event_type.to_owned(),
                version: schema_version,
            });
        }
        decode(kind)
    }
}

fn decode_value(kind: Kind, envelope: &EventEnvelope) -> Result<Known, EventDecodeError> {
    Ok(match kind {
        Kind::Product => Known::Product(envelope.decode()?),
        Kind::Order => Known::Order(envelope.decode()?),
        Kind::Payment => Known::Payment(envelope.decode()?),
    })
}

/// Decodes a payload from its JSON text in one pass. Event enums are
/// adjacently tagged (`domain::event`): `{"event_type": …, "payload": …}`.
/// The type name was checked against the enum's list, so it needs no escaping.
fn decode_text(kind: Kind, event_type: &str, payload: &str) -> Result<Known, EventDecodeError> {
    fn parse<E: DeserializeOwned>(event_type: &str, payload: &str) -> Result<E, EventDecodeError> {
        let tagged = format!("{{\"event_type\":\"{event_type}\",\"payload\":{payload}}}");
        serde_json::from_str(&tagged).map_err(|error| EventDecodeError::InvalidPayload {
            event_type: event_type.to_owned(),
            message: error.to_string(),
        })
    }
    Ok(match kind {
        Kind::Product => Known::Product(parse(event_type, payload)?),
        Kind::Order => Known::Order(parse(event_type, payload)?),
        Kind::Payment => Known::Payment(parse(event_type, payload)?),
    })
}

/// `at` truncated to microseconds, as PostgreSQL stores it (and as sqlx
/// encodes it), so rows folded in memory equal rows read back.
pub(crate) fn micros(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::order::OrderLine;

    fn envelope(stream_type: &str, event: &impl DomainEvent) -> EventEnvelope {
        EventEnvelope {
            event_id: Uuid::now_v7(),
            stream_id: Uuid::now_v7(),
            stream_type: stream_type.to_owned(),
            stream_version: 1,
            global_position: 1,
            event_type: event.event_type().to_owned(),
            schema_version: event.schema_version(),
            recorded_at: Utc::now(),
            payload: event.to_payload(),
            metadata: eventstore::Metadata::for_command(Uuid::nil()),
        }
    }

    fn scanned(e: &EventEnvelope) -> ScannedEvent {
        ScannedEvent {
            event_id: e.event_id,
            stream_id: e.stream_id,
            stream_type: e.stream_type.clone(),
            stream_version: e.stream_version,
            global_position: e.global_position,
            event_type: e.event_type.clone(),
            schema_version: e.schema_version,
            recorded_at: e.recorded_at,
            payload: e.payload.to_string(),
        }
    }

    #[test]
    fn payload_text_decodes_like_the_domain_decoder() {
        let placed = OrderEvent::OrderPlaced {
            user_id: "u \"quoted\"".to_owned(),
            lines: vec![OrderLine {
                product_id: Uuid::now_v7(),
                quantity: 2,
                unit_price_cents: 250,
            }],
            total_cents: 500,
            payment_token: "tok".to_owned(),
            placed_at: Utc::now(),
        };
        let events = [
            envelope("orders", &placed),
            envelope("inventory", &ProductEvent::ProductRestocked { quantity: 3 }),
            envelope(
                "payments",
                &PaymentEvent::PaymentFailed {
                    order_id: Uuid::now_v7(),
                    reason: "late".to_owned(),
                },
            ),
        ];
        for e in &events {
            let from_value = Decoded::from_envelope(e);
            let from_text = Decoded::from_scanned(scanned(e));
            assert!(from_value.event.is_ok(), "{:?}", from_value.event);
            assert_eq!(from_text.event, from_value.event);
            assert_eq!(from_text.recorded_at, from_value.recorded_at);
            let json = serde_json::to_vec(e).unwrap();
            let (from_json, metadata) = Decoded::from_json(&json).unwrap();
            assert_eq!(from_json.event, from_value.event);
            assert_eq!(metadata, e.metadata);
            assert_eq!(
                (
                    from_json.event_id,
                    from_json.stream_id,
                    from_json.stream_version
                ),
                (e.event_id, e.stream_id, e.stream_version)
            );
            assert_eq!(from_json.global_position, e.global_position);
            assert_eq!(from_json.recorded_at, from_value.recorded_at);
        }
        assert!(Decoded::from_json(b"not json").is_err());
    }

    #[test]
    fn unknown_types_versions_and_payloads_are_decode_errors() {
        let mut e = envelope("inventory", &ProductEvent::ProductRestocked { quantity: 3 });
        e.event_type = "ProductDiscontinued".to_owned();
        for decoded in [
            Decoded::from_envelope(&e),
            Decoded::from_scanned(scanned(&e)),
        ] {
            assert!(matches!(
                decoded.event,
                Err(EventDecodeError::UnknownType { .. })
            ));
        }
        e.event_type = "ProductRestocked".to_owned();
        e.schema_version = 9;
        assert!(matches!(
            Decoded::from_scanned(scanned(&e)).event,
            Err(EventDecodeError::UnsupportedSchemaVersion { .. })
        ));
        e.schema_version = 1;
        e.payload = serde_json::json!({"quantity": "many"});
        for decoded in [
            Decoded::from_envelope(&e),
            Decoded::from_scanned(scanned(&e)),
        ] {
            assert!(matches!(
                decoded.event,
                Err(EventDecodeError::InvalidPayload { .. })
            ));
        }
    }
}
