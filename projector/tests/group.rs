//! Several projector instances in one consumer group.

mod common;

use common::Harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_split_partitions_and_match_a_replay() {
    let h = Harness::new().await;
    let group = h.group();
    let first = h.consumer(&group);
    let second = h.consumer(&group);
    let total_partitions = (h.kafka.config.partitions * 3) as usize;
    let (a, b) = (first.assignment.clone(), second.assignment.clone());
    testkit::eventually(
        "both instances to share the partitions",
        common::SETTLE,
        || {
            let (a, b) = (a.borrow().clone(), b.borrow().clone());
            async move {
                (!a.is_empty() && !b.is_empty() && a.len() + b.len() == total_partitions)
                    .then_some(())
            }
        },
    )
    .await;

    let relay = h.relay();
    h.populate(40, 80).await;
    h.wait_projected().await;
    let live = h.snapshot().await;
    relay.stop().await;
    assert!(first.stats.committed() > 0, "first instance idle");
    assert!(second.stats.committed() > 0, "second instance idle");
    first.stop().await;
    second.stop().await;

    h.replay(&[]).await;
    assert_eq!(h.snapshot().await, live);
}
