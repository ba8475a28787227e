//! What an audit found: one line of counts per check, and every violation.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The checks, in the order they print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Check {
    /// The event log itself: dense versions, decodable events.
    Log,
    /// Kafka against the log.
    Kafka,
    /// Read models against a fold of the log.
    ReadModels,
    /// Stock conservation per product.
    Stock,
    /// Every order terminal.
    Orders,
    /// The payment gateway's ledger against the outcomes.
    Ledger,
    /// `Idempotency-Key` answers.
    Idempotency,
}

impl Check {
    /// Its name, as printed.
    pub fn name(self) -> &'static str {
        match self {
            Check::Log => "log",
            Check::Kafka => "kafka",
            Check::ReadModels => "read-models",
            Check::Stock => "stock",
            Check::Orders => "orders",
            Check::Ledger => "ledger",
            Check::Idempotency => "idempotency",
        }
    }
}

/// One thing that is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The check that found it.
    pub check: Check,
    /// What kind of violation (`lost`, `reordered`, `different`, …).
    pub kind: &'static str,
    /// What exactly, naming the stream, row, key or charge.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.check.name(), self.kind, self.detail)
    }
}

/// How long each part of an audit took. The database and Kafka are read at
/// the same time, each timed from the start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    /// Reading the database snapshot.
    pub database: Duration,
    /// Reading the topics.
    pub kafka: Duration,
    /// Folding the log and comparing.
    pub checks: Duration,
}

impl Timings {
    /// The whole audit.
    pub fn total(&self) -> Duration {
        self.database.max(self.kafka) + self.checks
    }
}

impl fmt::Display for Timings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.total();
        write!(
            f,
            "{:.2}s: database {:.2}s, kafka {:.2}s, checks {:.2}s",
            total.as_secs_f64(),
            self.database.as_secs_f64(),
            self.kafka.as_secs_f64(),
            self.checks.as_secs_f64()
        )
    }
}

/// The outcome of an audit: the summary lines and every violation.
#[derive(Debug, Clone)]
pub struct AuditReport {
    lines: Vec<(Check, String)>,
    violations: Vec<Violation>,
    max_printed: usize,
    timings: Timings,
}

impl AuditReport {
    /// An empty report printing at most `max_printed` violations.
    pub fn new(max_printed: usize) -> Self {
        Self {
            lines: Vec::new(),
            violations: Vec::new(),
            max_printed,
            timings: Timings::default(),
        }
    }

    /// Adds a summary line of `check`.
    pub fn line(&mut self, check: Check, line: String) {
        self.lines.push((check, line));
    }

    /// Records a violation.
    pub fn violation(&mut self, check: Check, kind: &'static str, detail: String) {
        self.violations.push(Violation {
            check,
            kind,
            detail,
        });
    }

    /// Records how long the audit took.
    pub fn finish(&mut self, timings: Timings) {
        self.timings = timings;
    }

    /// How long the audit took.
    pub fn timings(&self) -> Timings {
        self.timings
    }

    /// Every violation found, in the order found.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// The violations of `check` of kind `kind`.
    pub fn of(&self, check: Check, kind: &str) -> Vec<&Violation> {
        self.violations
            .iter()
            .filter(|v| v.check == check && v.kind == kind)
            .collect()
    }

    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }

    /// The summary lines, in check order.
    pub fn lines(&self) -> Vec<&str> {
        let mut lines: Vec<&(Check, String)> = self.lines.iter().collect();
        lines.sort_by_key(|(check, _)| *check);
        lines.into_iter().map(|(_, line)| line.as_str()).collect()
    }

    /// The summary line of `check` that starts with `prefix`, if any.
    pub fn line_of(&self, check: Check, prefix: &str) -> Option<&str> {
        self.lines
            .iter()
            .find(|(c, line)| *c == check && line.starts_with(prefix))
            .map(|(_, line)| line.as_str())
    }
}

impl fmt::Display for AuditReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in self.lines() {
            writeln!(f, "{line}")?;
        }
        let mut by_check: BTreeMap<Check, usize> = BTreeMap::new();
        for violation in &self.violations {
            *by_check.entry(violation.check).or_default() += 1;
        }
        if self.violations.is_empty() {
            return writeln!(f, "audit: no violations ({})", self.timings);
        }
        let counts: Vec<String> = by_check
            .iter()
            .map(|(check, count)| format!("{} {count}", check.name()))
            .collect();
        writeln!(
            f,
            "audit: {} violations ({}) ({})",
            self.violations.len(),
            counts.join(", "),
            self.timings
        )?;
        for violation in self.violations.iter().take(self.max_printed) {
            writeln!(f, "  {violation}")?;
        }
        if self.violations.len() > self.max_printed {
            writeln!(
                f,
                "  … and {} more",
                self.violations.len() - self.max_printed
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_lines_in_check_order_and_caps_the_violations() {
        let mut report = AuditReport::new(2);
        report.line(Check::Orders, "orders: 3".into());
        report.line(Check::Kafka, "kafka: 9".into());
        assert!(report.is_clean());
        for n in 0..3 {
            report.violation(Check::Kafka, "lost", format!("event {n}"));
        }
        report.violation(Check::Orders, "non-terminal", "order x".into());
        let text = report.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "kafka: 9");
        assert_eq!(lines[1], "orders: 3");
        assert!(lines[2].starts_with("audit: 4 violations (kafka 3, orders 1)"));
        assert_eq!(lines[3], "  kafka lost: event 0");
        assert_eq!(lines[5], "  … and 2 more");
        assert_eq!(report.of(Check::Kafka, "lost").len(), 3);
    }
}
