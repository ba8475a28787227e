//! The figures a run measured, each with the baseline it is compared with.

use std::collections::HashMap;

use serde::Serialize;

use crate::stats::{short, Percentiles};

/// What a figure measures.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Value {
    /// Something per second (higher is better).
    Rate {
        /// The rate.
        value: f64,
        /// E.g. `commands/s`.
        unit: String,
    },
    /// A wall-clock time (lower is better).
    Seconds {
        /// The time.
        value: f64,
    },
    /// Latency percentiles.
    Latency(Percentiles),
    /// A count or another plain number.
    Number {
        /// The number.
        value: f64,
        /// Its unit.
        unit: String,
    },
}

impl Value {
    /// A rate.
    pub fn rate(value: f64, unit: &str) -> Self {
        Self::Rate {
            value,
            unit: unit.to_owned(),
        }
    }

    /// A plain number.
    pub fn number(value: f64, unit: &str) -> Self {
        Self::Number {
            value,
            unit: unit.to_owned(),
        }
    }

    fn scalar(&self) -> Option<f64> {
        match self {
            Self::Rate { value, .. } | Self::Seconds { value } | Self::Number { value, .. } => {
                Some(*value)
            }
            Self::Latency(_) => None,
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Rate { value, unit } | Self::Number { value, unit } => {
                write!(f, "{} {unit}", short(*value))
            }
            Self::Seconds { value } => write!(f, "{} s", short(*value)),
            Self::Latency(p) => write!(f, "{p}"),
        }
    }
}

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// The stage that measured it.
    pub stage: String,
    /// What it is.
    pub name: String,
    /// The measurement.
    pub value: Value,
    /// The baseline it is compared with, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
    /// Speed relative to the baseline (rates: value / baseline; times:
    /// baseline / value), so above 1 is faster than the baseline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
}

/// A baseline figure as referenced by a stage's figure.
#[derive(Debug, Clone, Serialize)]
pub struct Baseline {
    /// Its key (e.g. `raw_tx`).
    pub key: String,
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: Value,
}

/// Every figure of a run, in the order measured.
#[derive(Debug, Default)]
pub struct Results {
    /// The figures.
    pub figures: Vec<Figure>,
    baselines: HashMap<String, Baseline>,
    /// Stages that failed, with their error.
    pub failures: Vec<(String, String)>,
}

impl Results {
    /// Records a figure without a baseline.
    pub fn add(&mut self, stage: &str, name: impl Into<String>, value: Value) {
        self.push(stage, name.into(), value, None);
    }

    /// Records a figure compared with the baseline `key` (no ratio if that
    /// baseline was not measured in this run).
    pub fn against(&mut self, stage: &str, name: impl Into<String>, value: Value, key: &str) {
        let baseline = self.baselines.get(key).cloned();
        self.push(stage, name.into(), value, baseline);
    }

    /// Records a baseline figure under `key`.
    pub fn baseline(&mut self, stage: &str, key: &str, name: impl Into<String>, value: Value) {
        let name = name.into();
        self.baselines.insert(
            key.to_owned(),
            Baseline {
                key: key.to_owned(),
                name: name.clone(),
                value: value.clone(),
            },
        );
        self.push(stage, name, value, None);
    }

    fn push(&mut self, stage: &str, name: String, value: Value, baseline: Option<Baseline>) {
        let ratio = baseline.as_ref().and_then(|b| ratio(&value, &b.value));
        self.figures.push(Figure {
            stage: stage.to_owned(),
            name,
            value,
            baseline,
            ratio,
        });
    }
}

/// Speed of `value` relative to `baseline` (above 1: faster).
fn ratio(value: &Value, baseline: &Value) -> Option<f64> {
    let (v, b) = (value.scalar()?, baseline.scalar()?);
    if v <= 0.0 || b <= 0.0 {
        return None;
    }
    Some(match value {
        Value::Seconds { .. } => b / v,
        _ => v / b,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_say_how_much_faster_than_the_baseline() {
        let mut results = Results::default();
        results.baseline("baselines", "tx", "raw tx", Value::rate(1000.0, "tx/s"));
        results.baseline("baselines", "scan", "scan", Value::Seconds { value: 2.0 });
        results.against(
            "commands",
            "commands",
            Value::rate(500.0, "commands/s"),
            "tx",
        );
        results.against("replay", "replay", Value::Seconds { value: 8.0 }, "scan");
        results.against(
            "relay",
            "drain",
            Value::rate(1.0, "events/s"),
            "not measured",
        );
        let ratios: Vec<Option<f64>> = results.figures.iter().map(|f| f.ratio).collect();
        assert_eq!(ratios, vec![None, None, Some(0.5), Some(0.25), None]);
    }
}
