//! Hundreds of orders' events interleaved in the topics: the worker handles
//! them across its lanes, each order's events in order, and every order is
//! settled. Prints the rate (`SAGA_TEST_ORDERS` orders, 300 by default;
//! `SAGA_LANES` and `SAGA_BATCH_SIZE` override the consumer's defaults) so
//! the same test measures the consumer: `cargo test -p saga --test
//! many_orders -- --nocapture`.

mod common;

use std::time::Instant;

use common::Rig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_orders_are_each_handled_in_order_and_all_settle() {
    let orders: usize = std::env::var("SAGA_TEST_ORDERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300);
    let rig = Rig::start().await;
    let products = rig.products(20, 1_000_000).await;
    let ids = rig.orders(orders, &products).await;
    rig.relayed().await;

    let started = Instant::now();
    let mut settings = rig.settings();
    let knob = |name: &str| std::env::var(name).ok().and_then(|n| n.parse().ok());
    settings.lanes = knob("SAGA_LANES").unwrap_or(settings.lanes);
    settings.batch_size = knob("SAGA_BATCH_SIZE").unwrap_or(settings.batch_size);
    let worker = rig.start_worker(settings);
    rig.started(orders).await;
    let reserved = started.elapsed();
    rig.settled(orders).await;
    let elapsed = started.elapsed();
    println!(
        "every OrderPlaced handled after {:.2} s: {:.0} orders/s",
        reserved.as_secs_f64(),
        orders as f64 / reserved.as_secs_f64()
    );
    println!(
        "{orders} orders placed → settled by the saga in {:.2} s: {:.0} orders/s",
        elapsed.as_secs_f64(),
        orders as f64 / elapsed.as_secs_f64()
    );
    worker.stop().await;

    for id in &ids {
        assert_eq!(
            rig.stream(*id).await,
            ["OrderPlaced", "OrderAwaitingPayment", "OrderConfirmed"],
            "order {id}"
        );
    }
    assert_eq!(
        rig.count("SELECT count(*) FROM saga.order_sagas WHERE phase = 'CONFIRMED'")
            .await,
        orders as i64
    );
    let lines: i64 = (0..orders).map(|n| 1 + (n % 2) as i64).sum();
    let mut sold = 0;
    for product in &products {
        let p = rig.product(*product).await;
        assert_eq!(p.reserved, 0, "{product} still holds stock: {p:?}");
        assert_eq!(p.available + p.sold, 1_000_000, "{product}: {p:?}");
        sold += p.sold;
    }
    assert_eq!(sold, lines, "each line sold once");
    assert_eq!(rig.count("SELECT count(*) FROM saga.dead_letters").await, 0);
}
