//! The table printed at the end of a run.

use crate::results::Results;

/// The table: stage, figure, value, baseline, ratio (speed relative to the
/// baseline: above 1 is faster), then any failed stage.
pub fn render(results: &Results) -> String {
    let header = ["stage", "figure", "value", "baseline", "ratio"].map(str::to_owned);
    let mut rows = vec![header];
    for figure in &results.figures {
        let baseline = figure
            .baseline
            .as_ref()
            .map(|b| format!("{} ({})", b.value, b.key))
            .unwrap_or_default();
        let ratio = figure.ratio.map(|r| format!("{r:.2}×")).unwrap_or_default();
        rows.push([
            figure.stage.clone(),
            figure.name.clone(),
            figure.value.to_string(),
            baseline,
            ratio,
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&rule.join("  "));
            out.push('\n');
        }
    }
    for (stage, error) in &results.failures {
        out.push_str(&format!("FAILED {stage}: {error}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Value;

    #[test]
    fn rows_show_value_baseline_and_ratio() {
        let mut results = Results::default();
        results.baseline("baselines", "raw_tx", "raw tx", Value::rate(2000.0, "tx/s"));
        results.against(
            "commands",
            "POST /products",
            Value::rate(1000.0, "commands/s"),
            "raw_tx",
        );
        results.failures.push(("saga".into(), "boom".into()));
        let table = render(&results);
        let line = table.lines().find(|l| l.starts_with("commands")).unwrap();
        assert!(
            line.contains("1000 commands/s")
                && line.contains("2000 tx/s (raw_tx)")
                && line.ends_with("0.50×"),
            "{line}"
        );
        assert!(table.contains("FAILED saga: boom"));
    }
}
