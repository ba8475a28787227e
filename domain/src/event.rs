//! How domain events are written to and read back from the event log.
//!
//! In the log (and on Kafka) an event is the triple
//! `(event_type, schema_version, payload)`: `event_type` names the variant,
//! `payload` holds the variant's fields as a JSON object with snake_case keys.
//! Payload field names are a public contract read by other processes: renaming
//! one is a breaking change (each aggregate pins its payloads in a test).
//!
//! Event enums implement [`DomainEvent`] with serde's adjacently tagged
//! representation (`#[serde(tag = "event_type", content = "payload")]`) and the
//! two generic helpers [`encode_payload`] and [`decode_parts`], so no
//! per-variant (de)serialization code is written by hand.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

/// The schema version every event type is written with today.
pub const SCHEMA_VERSION: i32 = 1;

/// Name of the tag field in the adjacently tagged serde representation.
const TAG: &str = "event_type";
/// Name of the content field in the adjacently tagged serde representation.
const CONTENT: &str = "payload";

/// Implemented by each aggregate's event enum.
///
/// Serialized in the event log as `(event_type, schema_version, payload)`.
pub trait DomainEvent: Sized {
    /// The stream type of the aggregate: `"inventory"` for products, `"orders"` for orders.
    const STREAM_TYPE: &'static str;

    /// The name of this event's variant, e.g. `"ProductRegistered"`.
    fn event_type(&self) -> &'static str;

    /// The schema version this event is written with (1 for all events today).
    fn schema_version(&self) -> i32;

    /// The variant's fields as a JSON object, without the type tag.
    fn to_payload(&self) -> Value;

    /// Rebuilds an event from what was stored in the log.
    fn from_parts(
        event_type: &str,
        schema_version: i32,
        payload: &Value,
    ) -> Result<Self, EventDecodeError>;
}

/// Why a stored event could not be turned back into a domain event.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum EventDecodeError {
    /// The stream type has no event with this name.
    #[error("unknown event type {event_type:?} for stream type {stream_type:?}")]
    UnknownType {
        /// The stream type the event was decoded for.
        stream_type: String,
        /// The unrecognised event type.
        event_type: String,
    },
    /// The event type is known but not in this schema version.
    #[error("unsupported schema version {version} for event type {event_type:?}")]
    UnsupportedSchemaVersion {
        /// The event type.
        event_type: String,
        /// The schema version found in the log.
        version: i32,
    },
    /// The payload does not match the event type's fields.
    #[error("invalid payload for event type {event_type:?}: {message}")]
    InvalidPayload {
        /// The event type.
        event_type: String,
        /// What serde reported.
        message: String,
    },
}

/// Serializes an adjacently tagged event enum and returns only its payload
/// (the variant's fields), without the `event_type` tag.
///
/// # Panics
///
/// Panics if `event` cannot be represented as JSON, which cannot happen for
/// event enums made of strings, numbers, uuids, timestamps and vectors of them.
pub fn encode_payload<E: Serialize>(event: &E) -> Value {
    let tagged = serde_json::to_value(event).expect("event enums always serialize to JSON");
    match tagged {
        Value::Object(mut map) => map
            .remove(CONTENT)
            .unwrap_or_else(|| Value::Object(Map::new())),
        other => panic!("event enums must be adjacently tagged structs, got {other}"),
    }
}

/// Decodes an adjacently tagged event enum from its stored parts.
///
/// Checks, in order: that `event_type` is one of `known_types` (else
/// [`EventDecodeError::UnknownType`]), that `schema_version` is
/// [`SCHEMA_VERSION`] (else [`EventDecodeError::UnsupportedSchemaVersion`]),
/// and that the payload has the variant's fields (else
/// [`EventDecodeError::InvalidPayload`]).
pub fn decode_parts<E: DeserializeOwned>(
    stream_type: &str,
    known_types: &[&str],
    event_type: &str,
    schema_version: i32,
    payload: &Value,
) -> Result<E, EventDecodeError> {
    if !known_types.contains(&event_type) {
        return Err(EventDecodeError::UnknownType {
            stream_type: stream_type.to_owned(),
            event_type: event_type.to_owned(),
        });
    }
    if schema_version != SCHEMA_VERSION {
        return Err(EventDecodeError::UnsupportedSchemaVersion {
            event_type: event_type.to_owned(),
            version: schema_version,
        });
    }
    let mut tagged = Map::new();
    tagged.insert(TAG.to_owned(), Value::String(event_type.to_owned()));
    tagged.insert(CONTENT.to_owned(), payload.clone());
    serde_json::from_value(Value::Object(tagged)).map_err(|err| EventDecodeError::InvalidPayload {
        event_type: event_type.to_owned(),
        message: err.to_string(),
    })
}

/// Implements [`DomainEvent`] (and an `EVENT_TYPES` list) for an adjacently
/// tagged event enum whose variants all have named fields: the event type is
/// the variant's name, the schema version [`SCHEMA_VERSION`].
macro_rules! domain_event {
    ($event:ty, stream_type = $stream_type:literal, [$($variant:ident),+ $(,)?]) => {
        impl $event {
            /// Every event type of the stream, as stored in the log.
            pub const EVENT_TYPES: &'static [&'static str] = &[$(stringify!($variant)),+];
        }

        impl $crate::event::DomainEvent for $event {
            const STREAM_TYPE: &'static str = $stream_type;

            fn event_type(&self) -> &'static str {
                match self {
                    $(Self::$variant { .. } => stringify!($variant),)+
                }
            }

            fn schema_version(&self) -> i32 {
                $crate::event::SCHEMA_VERSION
            }

            fn to_payload(&self) -> serde_json::Value {
                $crate::event::encode_payload(self)
            }

            fn from_parts(
                event_type: &str,
                schema_version: i32,
                payload: &serde_json::Value,
            ) -> Result<Self, $crate::event::EventDecodeError> {
                $crate::event::decode_parts(
                    Self::STREAM_TYPE,
                    Self::EVENT_TYPES,
                    event_type,
                    schema_version,
                    payload,
                )
            }
        }
    };
}
pub(crate) use domain_event;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_errors_have_readable_messages() {
        let unknown = EventDecodeError::UnknownType {
            stream_type: "orders".into(),
            event_type: "Nope".into(),
        };
        assert_eq!(
            unknown.to_string(),
            r#"unknown event type "Nope" for stream type "orders""#
        );
        let version = EventDecodeError::UnsupportedSchemaVersion {
            event_type: "OrderPlaced".into(),
            version: 7,
        };
        assert_eq!(
            version.to_string(),
            r#"unsupported schema version 7 for event type "OrderPlaced""#
        );
    }
}
