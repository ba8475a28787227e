//! Idempotency: every `Idempotency-Key` answered one way (same status, same
//! body every time), and as `command.idempotency_keys` recorded it while the
//! record still exists.
//!
//! The answers come from a file of JSON lines the workload writes, one per
//! HTTP answer it got that was not a transport error:
//! `{"key":"…","method":"POST","path":"/orders","status":201,"body":{…}}`.
//! 5xx (a dependency down) and 409 (the key still in flight, or a
//! concurrency conflict) are transient, not answers, and are skipped.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

use crate::log::IdempotencyRecord;
use crate::report::{AuditReport, Check};

/// One HTTP answer the workload got.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Answer {
    /// The `Idempotency-Key` sent.
    pub key: String,
    /// The request's method.
    pub method: String,
    /// The request's path.
    pub path: String,
    /// The status answered.
    pub status: u16,
    /// The body answered (`null` if none).
    #[serde(default)]
    pub body: serde_json::Value,
}

impl Answer {
    /// Whether this is an answer (not a transient 5xx or 409).
    pub fn counts(&self) -> bool {
        self.status < 500 && self.status != 409
    }
}

/// The answers of a workload, by key in the order they were written.
#[derive(Debug, Clone, Default)]
pub struct Answers {
    /// Every answer, per key, in file order.
    pub by_key: BTreeMap<String, Vec<Answer>>,
}

impl Answers {
    /// Parses JSON lines (blank lines ignored).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut answers = Self::default();
        for (number, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let answer: Answer = serde_json::from_str(line)
                .with_context(|| format!("line {} is not an answer", number + 1))?;
            answers
                .by_key
                .entry(answer.key.clone())
                .or_default()
                .push(answer);
        }
        Ok(answers)
    }

    /// The keys answered.
    pub fn keys(&self) -> Vec<String> {
        self.by_key.keys().cloned().collect()
    }
}

/// Reads an answers file.
pub fn read_file(path: &Path) -> anyhow::Result<Answers> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the answers file {}", path.display()))?;
    Answers::parse(&text).with_context(|| format!("parsing {}", path.display()))
}

fn brief(answer_status: impl std::fmt::Display, body: &serde_json::Value) -> String {
    let mut text = body.to_string();
    if text.len() > 160 {
        let cut = (0..=160)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
    format!("{answer_status} {text}")
}

/// Checks every key; one line of counts.
pub fn check(
    answers: &Answers,
    records: &HashMap<String, IdempotencyRecord>,
    report: &mut AuditReport,
) {
    let (mut counted, mut replays, mut skipped, mut unanswered) = (0, 0, 0, 0);
    let (mut two_ways, mut compared, mut differing) = (0, 0, 0);
    for (key, all) in &answers.by_key {
        let real: Vec<&Answer> = all.iter().filter(|a| a.counts()).collect();
        skipped += all.len() - real.len();
        let Some(first) = real.first() else {
            unanswered += 1;
            continue;
        };
        counted += real.len();
        replays += real.len() - 1;
        if let Some(other) = real
            .iter()
            .find(|a| (a.status, &a.body) != (first.status, &first.body))
        {
            two_ways += 1;
            report.violation(
                Check::Idempotency,
                "answered-two-ways",
                format!(
                    "key {key:?} ({} {}): {} then {}",
                    first.method,
                    first.path,
                    brief(first.status, &first.body),
                    brief(other.status, &other.body)
                ),
            );
        }
        if let Some(record) = records.get(key) {
            compared += 1;
            let same = i32::from(record.response_status) == i32::from(first.status)
                && record.response_body == first.body;
            if !same {
                differing += 1;
                report.violation(
                    Check::Idempotency,
                    "record-differs",
                    format!(
                        "key {key:?}: answered {}, recorded {}",
                        brief(first.status, &first.body),
                        brief(record.response_status, &record.response_body)
                    ),
                );
            }
        }
    }
    report.line(
        Check::Idempotency,
        format!(
            "idempotency: {} keys, {counted} answers ({replays} replays), {skipped} skipped (5xx, 409), \
             {unanswered} keys never answered, answered more than one way {two_ways}; \
             {compared} records in command.idempotency_keys compared, differing {differing}",
            answers.by_key.len()
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_answers_are_skipped_and_others_must_agree() {
        let text = r#"
{"key":"a","method":"POST","path":"/orders","status":503,"body":{"title":"down"}}
{"key":"a","method":"POST","path":"/orders","status":201,"body":{"order_id":"x"}}
{"key":"a","method":"POST","path":"/orders","status":409,"body":null}
{"key":"a","method":"POST","path":"/orders","status":201,"body":{"order_id":"x"}}
{"key":"b","method":"POST","path":"/products","status":201,"body":{"product_id":"p"}}
{"key":"b","method":"POST","path":"/products","status":201,"body":{"product_id":"q"}}
"#;
        let answers = Answers::parse(text).unwrap();
        let mut report = AuditReport::new(10);
        check(&answers, &HashMap::new(), &mut report);
        let found = report.of(Check::Idempotency, "answered-two-ways");
        assert_eq!(found.len(), 1, "{report}");
        assert!(found[0].detail.contains("\"b\""), "{}", found[0].detail);
        let line = report.line_of(Check::Idempotency, "idempotency:").unwrap();
        assert!(
            line.starts_with("idempotency: 2 keys, 4 answers (2 replays), 2 skipped"),
            "{line}"
        );
        assert!(Answers::parse("{not json").is_err());
    }
}
