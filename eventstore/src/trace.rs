//! W3C trace context carried in event metadata: the `traceparent` of the
//! request that started a chain of events travels with every event it
//! causes, into every consumer's logs and onto outgoing calls.

/// Whether `value` is a syntactically valid W3C `traceparent`
/// (`version-traceid-parentid-flags`, lowercase hex, ids not all zero,
/// version not `ff`; versions above `00` may append `-`-separated fields).
pub fn is_valid_traceparent(value: &str) -> bool {
    let bytes = value.as_bytes();
    if bytes.len() < 55 || (bytes.len() > 55 && bytes[55] != b'-') {
        return false;
    }
    let fields = [(0, 2), (3, 35), (36, 52), (53, 55)];
    let separators_ok = [2, 35, 52].iter().all(|&i| bytes[i] == b'-');
    let hex_ok = fields.iter().all(|&(start, end)| {
        bytes[start..end]
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    });
    if !separators_ok || !hex_ok {
        return false;
    }
    let version = &value[0..2];
    let trace_id = &value[3..35];
    let parent_id = &value[36..52];
    version != "ff"
        && (version != "00" || bytes.len() == 55)
        && trace_id.bytes().any(|b| b != b'0')
        && parent_id.bytes().any(|b| b != b'0')
}

/// A fresh `traceparent` (random trace and parent ids, sampled), for a
/// request that came without one while spans are not exported: its events
/// still share one trace id in every process's logs.
pub fn new_traceparent() -> String {
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let parent_id = uuid::Uuid::new_v4().simple().to_string();
    format!("00-{trace_id}-{}-01", &parent_id[..16])
}

/// The trace id of a valid `traceparent`, for log fields.
pub fn trace_id(traceparent: Option<&str>) -> Option<&str> {
    traceparent
        .filter(|value| is_valid_traceparent(value))
        .map(|value| &value[3..35])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_the_trace_id_of_valid_values_only() {
        assert_eq!(
            trace_id(Some(VALID)),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(trace_id(Some("garbage")), None);
        assert_eq!(trace_id(None), None);
    }

    #[test]
    fn fresh_traceparents_are_valid_and_distinct() {
        let (a, b) = (new_traceparent(), new_traceparent());
        assert!(is_valid_traceparent(&a), "{a}");
        assert!(is_valid_traceparent(&b), "{b}");
        assert_ne!(trace_id(Some(&a)), trace_id(Some(&b)));
    }

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn accepts_the_w3c_example() {
        assert!(is_valid_traceparent(VALID));
    }

    #[test]
    fn accepts_future_versions_with_extra_fields() {
        assert!(is_valid_traceparent(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"
        ));
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            "",
            "garbage",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
        ] {
            assert!(!is_valid_traceparent(bad), "{bad:?} should be refused");
        }
    }
}
