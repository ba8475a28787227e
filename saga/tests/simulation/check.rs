//! The invariants: after every step (on what is committed) and at the end.

use std::collections::BTreeMap;

use domain::order::OrderStatus;
use domain::payment::PaymentStatus;
use domain::product::ReservationStatus;
use payment_client::ChargeStatus;
use uuid::Uuid;

use super::bus::Bus;
use super::provider::Provider;
use super::world::Db;

/// What must hold after every step.
pub fn always(
    db: &Db,
    provider: &Provider,
    stocked: &BTreeMap<Uuid, i64>,
    effective: &BTreeMap<Uuid, u32>,
) -> Result<(), String> {
    for (id, stream) in &db.tables.products {
        let Some(p) = stream.state.product() else {
            continue;
        };
        if p.available < 0 || p.reserved < 0 || p.sold < 0 {
            return Err(format!("product {id}: negative stock {p:?}"));
        }
        let stocked = stocked.get(id).copied().unwrap_or_default();
        if p.total_stock() != Some(stocked) {
            return Err(format!(
                "product {id}: initial + restocks = {stocked} but available {} + reserved {} + sold {}",
                p.available, p.reserved, p.sold
            ));
        }
        let held: i64 = (p.reservations.values())
            .filter(|r| r.status == ReservationStatus::Active)
            .map(|r| r.quantity)
            .sum();
        if held != p.reserved {
            return Err(format!(
                "product {id}: reserved {} but reservations hold {held}",
                p.reserved
            ));
        }
    }
    for (order_id, stream) in &db.tables.orders {
        let taken = provider
            .charges
            .iter()
            .filter(|c| c.reference == *order_id && c.status != ChargeStatus::Declined)
            .count();
        if taken > 1 {
            return Err(format!("order {order_id}: charged {taken} times"));
        }
        if stream.state.status() == Some(OrderStatus::Confirmed)
            && standing(provider, *order_id) != 1
        {
            return Err(format!(
                "order {order_id} is CONFIRMED without a standing capture"
            ));
        }
    }
    if let Some((event_id, n)) = effective.iter().find(|(_, n)| **n > 1) {
        return Err(format!("event {event_id} took effect {n} times"));
    }
    Ok(())
}

/// Captures of the order not refunded.
fn standing(provider: &Provider, order_id: Uuid) -> usize {
    provider
        .charges
        .iter()
        .filter(|c| c.reference == order_id && c.status == ChargeStatus::Captured)
        .count()
}

/// What must hold once nothing is left to happen.
pub fn at_rest(db: &Db, provider: &Provider, bus: &Bus, calls: usize) -> Result<(), String> {
    if !bus.drained(db.log.len()) || calls > 0 {
        return Err(format!(
            "not drained: outbox {}, lanes {}, uncommitted partitions {:?}, calls {calls}",
            db.log.len() - bus.published,
            bus.lanes.iter().map(|l| l.len()).sum::<usize>(),
            bus.uncommitted()
        ));
    }
    let mut sold: BTreeMap<Uuid, i64> = BTreeMap::new();
    for (order_id, stream) in &db.tables.orders {
        let Some(order) = stream.state.order() else {
            continue;
        };
        if !order.status.is_terminal() {
            return Err(format!("order {order_id} ended {}", order.status));
        }
        let saga = db.tables.sagas.get(order_id).map(|e| &e.row.saga);
        if !saga.is_some_and(|s| s.is_finished()) {
            return Err(format!("order {order_id}: saga not finished: {saga:?}"));
        }
        let confirmed = order.status == OrderStatus::Confirmed;
        let standing = standing(provider, *order_id);
        if usize::from(confirmed) != standing {
            return Err(format!(
                "order {order_id} ended {} with {standing} unrefunded captures",
                order.status
            ));
        }
        let payment = db
            .tables
            .payments
            .get(&domain::payment::payment_id_for(*order_id))
            .and_then(|s| s.state.payment())
            .map(|p| p.status);
        if confirmed != (payment == Some(PaymentStatus::Captured)) {
            return Err(format!(
                "order {order_id} ended {} with its payment {payment:?}",
                order.status
            ));
        }
        if confirmed {
            for line in &order.lines {
                *sold.entry(line.product_id).or_default() += line.quantity;
            }
        }
    }
    for (id, stream) in &db.tables.products {
        let Some(p) = stream.state.product() else {
            continue;
        };
        if p.reserved != 0 || p.sold != sold.get(id).copied().unwrap_or_default() {
            return Err(format!(
                "product {id}: reserved {} sold {} at rest; confirmed orders bought {}",
                p.reserved,
                p.sold,
                sold.get(id).copied().unwrap_or_default()
            ));
        }
    }
    Ok(())
}
