//! Realistic single events for the raw baselines: produced by the domain, so
//! their size and shape are those of what the system writes.

use std::collections::HashMap;

use chrono::Utc;
use domain::aggregate::{Aggregate, Order};
use domain::order::{OrderCommand, RequestedLine};
use eventstore::{Metadata, NewEvent};
use uuid::Uuid;

/// An event ready to be inserted by hand.
pub struct SampleEvent {
    /// Its type.
    pub event_type: String,
    /// Its schema version.
    pub schema_version: i32,
    /// Its payload.
    pub payload: serde_json::Value,
    /// Its metadata as stored.
    pub metadata: serde_json::Value,
}

/// The `OrderPlaced` of a two-line order, as the command API would write it.
pub fn order_placed_event() -> SampleEvent {
    let products = [Uuid::now_v7(), Uuid::now_v7()];
    let prices: HashMap<Uuid, i64> = products.iter().map(|p| (*p, 1250)).collect();
    let command = OrderCommand::Place {
        user_id: "bench-user-42".into(),
        lines: products
            .iter()
            .map(|p| RequestedLine {
                product_id: *p,
                quantity: 2,
            })
            .collect(),
        payment_token: "tok_ok".into(),
        prices,
        placed_at: Utc::now(),
    };
    let events = Order::decide(&Default::default(), command).expect("a valid order");
    let event = NewEvent::from_domain(&events[0]);
    let mut metadata = Metadata::for_command(Uuid::now_v7());
    metadata.traceparent = Some(format!(
        "00-{}-{}-01",
        Uuid::new_v4().simple(),
        &Uuid::new_v4().simple().to_string()[..16]
    ));
    SampleEvent {
        event_type: event.event_type,
        schema_version: event.schema_version,
        payload: event.payload,
        metadata: serde_json::to_value(metadata).expect("metadata serializes"),
    }
}
