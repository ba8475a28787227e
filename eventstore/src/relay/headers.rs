//! The Kafka headers of a published envelope.

use rdkafka::message::{Header, OwnedHeaders};

use crate::envelope::EventEnvelope;

/// The envelope's ids, as header text.
pub(super) struct HeaderIds<'a> {
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub stream_id: &'a str,
    pub stream_type: &'a str,
    pub stream_version: &'a str,
    pub global_position: &'a str,
    pub correlation_id: &'a str,
    pub causation_id: &'a str,
    pub traceparent: Option<&'a str>,
}

/// The envelope's ids as Kafka headers, so consumers can route and trace
/// without parsing the value.
pub fn envelope_headers(event: &EventEnvelope) -> OwnedHeaders {
    let event_id = event.event_id.to_string();
    let stream_id = event.stream_id.to_string();
    let version = event.stream_version.to_string();
    let position = event.global_position.to_string();
    let correlation = event.metadata.correlation_id.to_string();
    let causation = event.metadata.causation_id.to_string();
    headers(&HeaderIds {
        event_id: &event_id,
        event_type: &event.event_type,
        stream_id: &stream_id,
        stream_type: &event.stream_type,
        stream_version: &version,
        global_position: &position,
        correlation_id: &correlation,
        causation_id: &causation,
        traceparent: event.metadata.traceparent.as_deref(),
    })
}

/// The headers of `ids`.
pub(super) fn headers(ids: &HeaderIds<'_>) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new_with_capacity(9)
        .insert(header("event_id", ids.event_id))
        .insert(header("event_type", ids.event_type))
        .insert(header("stream_id", ids.stream_id))
        .insert(header("stream_type", ids.stream_type))
        .insert(header("stream_version", ids.stream_version))
        .insert(header("global_position", ids.global_position))
        .insert(header("correlation_id", ids.correlation_id))
        .insert(header("causation_id", ids.causation_id));
    if let Some(traceparent) = ids.traceparent {
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
