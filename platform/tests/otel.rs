//! With `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans join the trace of a given
//! `traceparent` and hand on their own. (Its own test binary: it sets the
//! variable for the whole process.)

use platform::otel;
use platform::telemetry::{self, LogFormat, TelemetryConfig};

const INCOMING: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn fields(traceparent: &str) -> Vec<&str> {
    traceparent.split('-').collect()
}

#[test]
fn spans_continue_a_traceparent_and_hand_on_their_own() {
    // Nothing listens there: export fails quietly, which is not what this checks.
    std::env::set_var(otel::ENDPOINT_VAR, "http://127.0.0.1:9");
    let guard = telemetry::init(
        "otel-test",
        &TelemetryConfig {
            log_format: LogFormat::Plain,
        },
    );
    assert!(guard.exporting() && otel::enabled());

    let span = tracing::info_span!("continued");
    otel::set_parent(&span, Some(INCOMING));
    let own = otel::traceparent_of(&span).expect("an exported span has a traceparent");
    let (own_fields, incoming) = (fields(&own), fields(INCOMING));
    assert_eq!(own_fields.len(), 4, "{own}");
    assert_eq!(own_fields[0], "00");
    assert_eq!(own_fields[1], incoming[1], "same trace");
    assert_ne!(own_fields[2], incoming[2], "its own span id");
    assert_eq!(own_fields[3], "01", "the sampled flag is kept");
    assert_eq!(
        span.in_scope(otel::current_traceparent).as_deref(),
        Some(own.as_str())
    );
    let child = span.in_scope(|| tracing::info_span!("child"));
    let child_traceparent = otel::traceparent_of(&child).unwrap();
    assert_eq!(fields(&child_traceparent)[1], incoming[1]);

    for bad in [None, Some("garbage")] {
        let root = tracing::info_span!("root");
        otel::set_parent(&root, bad);
        let fresh = otel::traceparent_of(&root).unwrap();
        assert_ne!(fields(&fresh)[1], incoming[1], "{bad:?} starts a new trace");
    }
    assert_eq!(otel::current_traceparent(), None, "no span is current");

    drop(guard);
    assert!(!otel::enabled(), "dropping the guard stops export");
    assert_eq!(otel::traceparent_of(&span), None);
}
