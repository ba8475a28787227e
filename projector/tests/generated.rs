//! A generated log of realistic orders (every path of the saga, many streams
//! per transaction): the live projector through Kafka and a replay of the
//! log build identical read models, for all four projections.

mod common;

use common::Harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_of_a_generated_log_equals_the_live_projection() {
    let h = Harness::new().await;
    let consumer = h.consumer(&h.group());
    let relay = h.relay();
    let events = common::generate::generate(h.pool(), 12_000).await;
    h.wait_projected().await;
    let live = h.snapshot().await;
    assert_eq!(consumer.stats.parked(), 0);
    relay.stop().await;
    consumer.stop().await;
    for (table, rows) in &live {
        let least = if *table == "products" { 8 } else { 1_000 };
        let count = rows.as_array().map_or(0, Vec::len);
        assert!(count >= least, "{table} has {count} rows");
    }

    let summary = h.replay(&[]).await;
    assert_eq!(summary.events, events as u64);
    assert_eq!(h.snapshot().await, live);
}
