//! Every order terminal (CONFIRMED, REJECTED or CANCELLED) in the log fold,
//! counted by status and by reason (ids and numbers in reasons generalised,
//! so that `line 2 (product …): requested 3, available 1` groups).

use std::collections::BTreeMap;

use domain::order::OrderStatus;

use crate::fold::Folded;
use crate::report::{AuditReport, Check};

/// Reasons printed at most.
const REASONS_SHOWN: usize = 12;

/// `reason` with UUIDs replaced by `<id>` and digit runs by `N`.
pub fn generalise(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut rest = reason;
    while let Some(c) = rest.chars().next() {
        if rest
            .get(..36)
            .is_some_and(|head| uuid::Uuid::try_parse(head).is_ok())
        {
            out.push_str("<id>");
            rest = &rest[36..];
        } else if c.is_ascii_digit() {
            out.push('N');
            rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// Checks that every order is terminal; one line of counts, one of reasons.
pub fn check(folded: &Folded, report: &mut AuditReport) {
    let mut by_status: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut reasons: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut open = 0;
    for (id, fold) in &folded.orders {
        let Some(order) = &fold.order else {
            continue;
        };
        *by_status.entry(order.status.as_str()).or_default() += 1;
        if let Some(reason) = &order.reason {
            let key = (order.status.to_string(), generalise(reason));
            *reasons.entry(key).or_default() += 1;
        }
        if !order.status.is_terminal() {
            open += 1;
            report.violation(
                Check::Orders,
                "non-terminal",
                format!("order {id} is {} at v{}", order.status, fold.version),
            );
        }
    }
    let count = |status: OrderStatus| by_status.get(status.as_str()).copied().unwrap_or(0);
    let total: usize = by_status.values().sum();
    report.line(
        Check::Orders,
        format!(
            "orders: {total} in the log, CONFIRMED {}, REJECTED {}, CANCELLED {}, non-terminal {open} \
             (PENDING {}, AWAITING_PAYMENT {})",
            count(OrderStatus::Confirmed),
            count(OrderStatus::Rejected),
            count(OrderStatus::Cancelled),
            count(OrderStatus::Pending),
            count(OrderStatus::AwaitingPayment),
        ),
    );
    let mut reasons: Vec<((String, String), usize)> = reasons.into_iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let shown: Vec<String> = reasons
        .iter()
        .take(REASONS_SHOWN)
        .map(|((status, reason), n)| format!("{status} \"{reason}\" {n}"))
        .collect();
    let more = reasons.len().saturating_sub(REASONS_SHOWN);
    let tail = if more > 0 {
        format!("; {more} more")
    } else {
        String::new()
    };
    let shown = if shown.is_empty() {
        "none".to_owned()
    } else {
        shown.join("; ")
    };
    report.line(Check::Orders, format!("order reasons: {shown}{tail}"));
}

#[cfg(test)]
mod tests {
    use super::generalise;

    #[test]
    fn reasons_lose_their_ids_and_numbers() {
        assert_eq!(
            generalise(
                "line 2 (product 0190a8a4-7d7e-7c4b-9b7e-2b7f2a1c9e01): requested 3, available 1"
            ),
            "line N (product <id>): requested N, available N"
        );
        assert_eq!(generalise("cancelled by user"), "cancelled by user");
        assert_eq!(
            generalise("payment timed out: 3s é"),
            "payment timed out: Ns é"
        );
    }
}
