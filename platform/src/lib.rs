//! Plumbing shared by every process of the system: database pools, Kafka
//! configuration and topics, dead-letter copies, telemetry (logs and
//! exported traces), Prometheus metrics, graceful shutdown and the HTTP
//! building blocks (problem+json errors, JSON extraction, health probes).

pub mod db;
pub mod dead_letter;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod openapi;
pub mod otel;
pub mod shutdown;
pub mod telemetry;
