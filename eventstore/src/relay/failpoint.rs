//! Fault injection for chaos runs (off unless configured): the relay can
//! abort its process exactly between Kafka's acknowledgement of a batch and
//! the delete of its outbox rows, the window in which a crash makes the
//! batch go out twice.

use std::io::Write;

/// Name logged when the failpoint fires (the chaos run looks for it).
pub const ABORT_AFTER_ACK: &str = "relay.abort_after_ack";

/// With `probability` (0: never, 1: always), logs an ERROR line and aborts
/// the process. Called after a batch's acknowledgements, before its delete.
pub(super) fn abort_after_ack(probability: f64) {
    if probability <= 0.0 || rand::random::<f64>() >= probability {
        return;
    }
    tracing::error!("failpoint {ABORT_AFTER_ACK} fired");
    // The log writes to stderr unbuffered; flush anyway before the abort.
    let _ = std::io::stderr().flush();
    std::process::abort();
}

/// Parses a probability in [0, 1] (for the command line).
pub(super) fn parse_probability(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|error| format!("not a number: {error}"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is not a probability in [0, 1]"))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_probability;

    #[test]
    fn probabilities_outside_zero_to_one_are_refused() {
        assert_eq!(parse_probability("0"), Ok(0.0));
        assert_eq!(parse_probability("0.25"), Ok(0.25));
        assert_eq!(parse_probability("1"), Ok(1.0));
        assert!(parse_probability("1.5").is_err());
        assert!(parse_probability("-0.1").is_err());
        assert!(parse_probability("often").is_err());
    }
}
