//! W3C trace context: the `traceparent` of the request that started an
//! order travels in event metadata and Kafka headers into every consumer's
//! span and onto the calls to the payment provider.

/// Whether `value` is a syntactically valid version-00 `traceparent`.
pub fn is_valid_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    parts.len() == 4
        && hex(parts[0], 2)
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
        && parts[1] != "00000000000000000000000000000000"
        && parts[2] != "0000000000000000"
}

/// The trace id of a `traceparent`, for log fields.
pub fn trace_id(traceparent: Option<&str>) -> Option<&str> {
    traceparent
        .filter(|t| is_valid_traceparent(t))
        .and_then(|t| t.split('-').nth(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_trace_ids() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(is_valid_traceparent(tp));
        assert_eq!(trace_id(Some(tp)), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert!(!is_valid_traceparent("00-xyz-00f067aa0ba902b7-01"));
        assert_eq!(trace_id(None), None);
    }
}
