//! Support for the relay's failure tests: a proxy in front of the Kafka
//! broker that a test can cut, and the checks every relay test makes on
//! what reached Kafka.
#![allow(dead_code)]

pub mod kafka_proxy;

use std::collections::HashMap;

use testkit::kafka::Record;

/// Asserts that, per stream, no record arrives before its predecessor
/// (duplicates of older versions are allowed: delivery is at-least-once),
/// and returns the highest version seen per stream.
pub fn assert_per_stream_order(records: &[Record]) -> HashMap<String, i64> {
    let mut highest: HashMap<String, i64> = HashMap::new();
    for record in records {
        let version = record.value["stream_version"].as_i64().unwrap();
        let seen = highest.entry(record.key.clone()).or_insert(0);
        assert!(
            version <= *seen + 1,
            "stream {} version {version} arrived before version {}",
            record.key,
            *seen + 1
        );
        *seen = (*seen).max(version);
    }
    highest
}
