//! The JSON file of a run: every figure, the sizes, the machine and the date.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::machine::Machine;
use crate::results::{Figure, Results};

/// What goes into the file.
#[derive(Serialize)]
struct Report<'a> {
    date: String,
    quick: bool,
    sizes: serde_json::Value,
    machine: &'a Machine,
    figures: &'a [Figure],
    failures: Vec<serde_json::Value>,
}

/// Writes `<dir>/<stamp>.json` and `<dir>/latest.json`; returns the first path.
pub fn write(
    dir: &Path,
    stamp: &str,
    sizes: serde_json::Value,
    quick: bool,
    machine: &Machine,
    results: &Results,
) -> anyhow::Result<PathBuf> {
    let report = Report {
        date: chrono::Utc::now().to_rfc3339(),
        quick,
        sizes,
        machine,
        figures: &results.figures,
        failures: results
            .failures
            .iter()
            .map(|(stage, error)| serde_json::json!({"stage": stage, "error": error}))
            .collect(),
    };
    let text = serde_json::to_string_pretty(&report)?;
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{stamp}.json"));
    std::fs::write(&path, &text)?;
    std::fs::write(dir.join("latest.json"), &text)?;
    Ok(path)
}
