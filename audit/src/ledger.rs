//! The payment-gateway simulator's ledger (`gateway.charges`) against the
//! orders' outcomes in the log. The saga charges with the order id as the
//! charge's reference and the order's payment id
//! ([`domain::payment::payment_id_for`]) as its idempotency key, so charges
//! are joined to orders on the reference.
//!
//! Each CONFIRMED order has exactly one standing (captured, not refunded)
//! charge, of its total, the one its payment stream recorded; no order has
//! two standing charges; every capture of a CANCELLED or REJECTED order is
//! refunded; every charge names a known order, under the saga's key.

use std::collections::BTreeMap;

use domain::order::OrderStatus;
use domain::payment::payment_id_for;
use payment_gateway::ledger::{Charge, ChargeStatus};
use uuid::Uuid;

use crate::fold::Folded;
use crate::report::{AuditReport, Check};

/// Checks the ledger; one line of counts.
pub fn check(folded: &Folded, charges: &[Charge], report: &mut AuditReport) {
    let mut by_order: BTreeMap<Uuid, Vec<&Charge>> = BTreeMap::new();
    let mut by_status: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut unknown = 0;
    for charge in charges {
        *by_status.entry(charge.status.as_str()).or_default() += 1;
        let known = folded
            .orders
            .get(&charge.reference)
            .is_some_and(|f| f.order.is_some());
        if !known {
            unknown += 1;
            report.violation(
                Check::Ledger,
                "unknown-order",
                format!(
                    "charge {} ({}, {} cents) names order {}, which is not in the log",
                    charge.charge_id, charge.status, charge.amount_cents, charge.reference
                ),
            );
            continue;
        }
        let key = payment_id_for(charge.reference).to_string();
        if charge.idempotency_key != key {
            report.violation(
                Check::Ledger,
                "foreign-key",
                format!(
                    "charge {} for order {} has idempotency key {}, not the order's payment id {key}",
                    charge.charge_id, charge.reference, charge.idempotency_key
                ),
            );
        }
        by_order.entry(charge.reference).or_default().push(charge);
    }
    for (&payment_id, fold) in &folded.payments {
        if let Some(payment) = &fold.payment {
            if payment_id_for(payment.order_id) != payment_id {
                report.violation(
                    Check::Ledger,
                    "payment-stream",
                    format!(
                        "payment stream {payment_id} pays order {}, whose payment id is {}",
                        payment.order_id,
                        payment_id_for(payment.order_id)
                    ),
                );
            }
        }
    }
    let (mut confirmed, mut confirmed_ok, mut doubles, mut unrefunded) = (0, 0, 0, 0);
    let none = Vec::new();
    for (&order_id, fold) in &folded.orders {
        let Some(order) = &fold.order else {
            continue;
        };
        let standing: Vec<&Charge> = by_order
            .get(&order_id)
            .unwrap_or(&none)
            .iter()
            .copied()
            .filter(|c| c.status == ChargeStatus::Captured)
            .collect();
        let ids = || {
            standing
                .iter()
                .map(|c| format!("{} ({} cents)", c.charge_id, c.amount_cents))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if standing.len() > 1 {
            doubles += 1;
            report.violation(
                Check::Ledger,
                "double-charge",
                format!(
                    "{} order {order_id} has {} standing captures: {}",
                    order.status,
                    standing.len(),
                    ids()
                ),
            );
        }
        match order.status {
            OrderStatus::Confirmed => {
                confirmed += 1;
                let recorded = folded
                    .payments
                    .get(&payment_id_for(order_id))
                    .and_then(|f| f.payment.as_ref())
                    .and_then(|p| p.charge_id.clone());
                match standing.as_slice() {
                    [] => report.violation(
                        Check::Ledger,
                        "uncaptured",
                        format!("CONFIRMED order {order_id} has no standing capture"),
                    ),
                    [charge] if charge.amount_cents != order.total_cents => report.violation(
                        Check::Ledger,
                        "wrong-amount",
                        format!(
                            "CONFIRMED order {order_id} totals {} cents, its capture {} is {}",
                            order.total_cents, charge.charge_id, charge.amount_cents
                        ),
                    ),
                    [charge] if recorded.as_deref() != Some(charge.charge_id.as_str()) => {
                        report.violation(
                            Check::Ledger,
                            "other-charge",
                            format!(
                                "CONFIRMED order {order_id}: its payment recorded charge {}, the ledger's capture is {}",
                                recorded.as_deref().unwrap_or("none"),
                                charge.charge_id
                            ),
                        );
                    }
                    [_] => confirmed_ok += 1,
                    _ => {}
                }
            }
            OrderStatus::Cancelled | OrderStatus::Rejected if !standing.is_empty() => {
                unrefunded += 1;
                report.violation(
                    Check::Ledger,
                    "unrefunded",
                    format!(
                        "{} order {order_id} has standing captures: {}",
                        order.status,
                        ids()
                    ),
                );
            }
            _ => {}
        }
    }
    let count = |status: ChargeStatus| by_status.get(status.as_str()).copied().unwrap_or(0);
    report.line(
        Check::Ledger,
        format!(
            "ledger: {} charges (captured {}, refunded {}, declined {}) for {} orders; \
             CONFIRMED orders captured once for their total {confirmed_ok}/{confirmed}, \
             double charges {doubles}, unrefunded captures of cancelled/rejected orders {unrefunded}, \
             charges for unknown orders {unknown}",
            charges.len(),
            count(ChargeStatus::Captured),
            count(ChargeStatus::Refunded),
            count(ChargeStatus::Declined),
            by_order.len(),
        ),
    );
}
