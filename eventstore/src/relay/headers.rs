//! The Kafka headers of a published envelope.

use rdkafka::message::{Header, OwnedHeaders};

use crate::envelope::EventEnvelope;

/// The envelope's ids as Kafka headers, so consumers can route and trace
/// without parsing the value.
pub fn envelope_headers(event: &EventEnvelope) -> OwnedHeaders {
    let event_id = event.event_id.to_string();
    let stream_id = event.stream_id.to_string();
    let version = event.stream_version.to_string();
    let position = event.global_position.to_string();
    let correlation = event.metadata.correlation_id.to_string();
    let causation = event.metadata.causation_id.to_string();
    let mut headers = OwnedHeaders::new()
        .insert(header("event_id", &event_id))
        .insert(header("event_type", &event.event_type))
        .insert(header("stream_id", &stream_id))
        .insert(header("stream_type", &event.stream_type))
        .insert(header("stream_version", &version))
        .insert(header("global_position", &position))
        .insert(header("correlation_id", &correlation))
        .insert(header("causation_id", &causation));
    if let Some(traceparent) = &event.metadata.traceparent {
        headers = headers.insert(header("traceparent", traceparent));
    }
    headers
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}
