//! Stock conservation per product, in the log fold and in `read.products`:
//! initial + restocks = available + reserved + sold, no level negative (in
//! the fold: at no point), units sold = the units of the confirmed orders,
//! and no stock held for an order that is over.

use std::collections::HashMap;

use domain::order::OrderStatus;
use uuid::Uuid;

use crate::fold::Folded;
use crate::read_models::ReadRows;
use crate::report::{AuditReport, Check};

/// Sums of stock levels over products.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Levels {
    available: i64,
    reserved: i64,
    sold: i64,
}

impl Levels {
    fn total(self) -> i64 {
        self.available + self.reserved + self.sold
    }

    fn negative(self) -> bool {
        self.available < 0 || self.reserved < 0 || self.sold < 0
    }

    fn add(&mut self, other: Levels) {
        self.available += other.available;
        self.reserved += other.reserved;
        self.sold += other.sold;
    }
}

/// Checks every product; one line of totals.
pub fn check(folded: &Folded, read: &ReadRows, report: &mut AuditReport) {
    // Units of confirmed orders, per product.
    let mut confirmed: HashMap<Uuid, i64> = HashMap::new();
    for order in folded.orders.values().filter_map(|f| f.order.as_ref()) {
        if order.status == OrderStatus::Confirmed {
            for line in &order.lines {
                *confirmed.entry(line.product_id).or_default() += line.quantity;
            }
        }
    }
    let (mut stocked, mut in_log, mut in_read) = (0_i64, Levels::default(), Levels::default());
    let (mut products, mut unbalanced, mut negative, mut unsold, mut held) = (0, 0, 0, 0, 0);
    let mut violation = |kind: &'static str, detail: String, count: &mut usize| {
        *count += 1;
        report.violation(Check::Stock, kind, detail);
    };
    for (&id, fold) in &folded.products {
        let Some(product) = &fold.product else {
            continue;
        };
        products += 1;
        let supplied = fold.initial + fold.restocked;
        stocked += supplied;
        let logged = Levels {
            available: product.available,
            reserved: product.reserved,
            sold: product.sold,
        };
        in_log.add(logged);
        if logged.total() != supplied {
            let detail = format!(
                "product {id} in the log: initial {} + restocked {} ≠ available {} + reserved {} + sold {}",
                fold.initial, fold.restocked, logged.available, logged.reserved, logged.sold
            );
            violation("unbalanced", detail, &mut unbalanced);
        }
        if let Some(point) = fold.first_negative {
            let detail = format!(
                "product {id} in the log at v{}: available {}, reserved {}, sold {}",
                point.version, point.available, point.reserved, point.sold
            );
            violation("negative", detail, &mut negative);
        }
        if let Some(row) = read.products.get(&id) {
            let shown = Levels {
                available: row.available,
                reserved: row.reserved,
                sold: row.sold,
            };
            in_read.add(shown);
            if shown.total() != supplied {
                let detail = format!(
                    "product {id} in read.products: initial {} + restocked {} ≠ available {} + reserved {} + sold {}",
                    fold.initial, fold.restocked, shown.available, shown.reserved, shown.sold
                );
                violation("unbalanced", detail, &mut unbalanced);
            }
            if shown.negative() {
                let detail = format!(
                    "product {id} in read.products: available {}, reserved {}, sold {}",
                    shown.available, shown.reserved, shown.sold
                );
                violation("negative", detail, &mut negative);
            }
        }
        let want_sold = confirmed.get(&id).copied().unwrap_or(0);
        if product.sold != want_sold {
            let detail = format!(
                "product {id}: sold {} in the log, confirmed orders hold {want_sold}",
                product.sold
            );
            violation("sold-not-confirmed", detail, &mut unsold);
        }
        for (order_id, reservation) in &product.reservations {
            let status = folded
                .orders
                .get(order_id)
                .and_then(|f| f.order.as_ref())
                .map(|o| o.status);
            match status {
                Some(status) if !status.is_terminal() => {}
                _ => {
                    let what = status.map_or_else(|| "unknown".to_owned(), |s| s.to_string());
                    let detail = format!(
                        "product {id}: {} units still reserved for {what} order {order_id}",
                        reservation.quantity
                    );
                    violation("held-for-finished-order", detail, &mut held);
                }
            }
        }
    }
    report.line(
        Check::Stock,
        format!(
            "stock: {products} products, initial + restocks {stocked} = available {} + reserved {} + sold {} \
             in the log fold, {} + {} + {} in read.products; unbalanced {unbalanced}, negative {negative}, \
             sold ≠ confirmed {unsold}, held for finished orders {held}",
            in_log.available, in_log.reserved, in_log.sold,
            in_read.available, in_read.reserved, in_read.sold
        ),
    );
}
