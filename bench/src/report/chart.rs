//! The SVG chart of a run (plotters' SVG backend: text is written as SVG
//! text, so no fonts are needed to draw it): latency percentiles per stage,
//! and throughput per stage as a ratio to its baseline.

use std::ops::Range;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::results::{Results, Value};
use crate::stats::Percentiles;

const WIDTH: u32 = 1200;
const ROW: u32 = 26;
const PANEL_EXTRA: u32 = 90;
const LABEL_AREA: u32 = 470;
const LABEL_CHARS: usize = 72;

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
/// Picks one percentile.
type Pick = fn(&Percentiles) -> f64;

/// Draws the chart of `results` into `path`.
pub fn write(path: &Path, title: &str, results: &Results) -> anyhow::Result<()> {
    // Reversed: the first figure is drawn at the top.
    let latencies: Vec<(String, Percentiles)> = results
        .figures
        .iter()
        .filter_map(|f| match &f.value {
            Value::Latency(p) if p.count > 0 => Some((label(&f.stage, &f.name), *p)),
            _ => None,
        })
        .rev()
        .collect();
    let ratios: Vec<(String, f64)> = results
        .figures
        .iter()
        .filter_map(|f| Some((label(&f.stage, &f.name), f.ratio?)))
        .rev()
        .collect();
    let panel = |rows: usize| {
        if rows == 0 {
            0
        } else {
            rows as u32 * ROW + PANEL_EXTRA
        }
    };
    let (top, bottom) = (panel(latencies.len()), panel(ratios.len()));
    let root = SVGBackend::new(path, (WIDTH, 40 + top + bottom)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_error)?;
    let root = root.titled(title, ("sans-serif", 20)).map_err(draw_error)?;
    let (upper, lower) = root.split_vertically(top);
    if !latencies.is_empty() {
        latency_panel(&upper, &latencies)?;
    }
    if !ratios.is_empty() {
        ratio_panel(&lower, &ratios)?;
    }
    root.present().map_err(draw_error)?;
    Ok(())
}

fn latency_panel(area: &Area<'_>, rows: &[(String, Percentiles)]) -> anyhow::Result<()> {
    let max = rows.iter().map(|(_, p)| p.p99_ms).fold(1.0, f64::max) * 1.5;
    let min = rows
        .iter()
        .map(|(_, p)| p.p50_ms)
        .fold(max, f64::min)
        .max(0.01)
        / 2.0;
    let names: Vec<String> = rows.iter().map(|(n, _)| n.clone()).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(
            "latency per stage: p50 (dark), p95, p99 (light); ms, log scale",
            ("sans-serif", 16),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(LABEL_AREA)
        .build_cartesian_2d((min..max).log_scale(), rows_range(rows.len()))
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .y_labels(rows.len())
        .y_label_formatter(&|y| row_label(&names, *y))
        .x_desc("ms")
        .draw()
        .map_err(draw_error)?;
    // Longest first, so each shorter percentile is drawn over it.
    let shades: [(Pick, RGBColor); 3] = [
        (|p| p.p99_ms, RGBColor(189, 215, 238)),
        (|p| p.p95_ms, RGBColor(107, 174, 214)),
        (|p| p.p50_ms, RGBColor(33, 102, 172)),
    ];
    for (percentile, color) in shades {
        let bars = rows
            .iter()
            .enumerate()
            .map(|(i, (_, p))| bar(i, min, percentile(p).max(min), color));
        chart.draw_series(bars).map_err(draw_error)?;
    }
    Ok(())
}

fn ratio_panel(area: &Area<'_>, rows: &[(String, f64)]) -> anyhow::Result<()> {
    let max = rows.iter().map(|(_, r)| *r).fold(1.2, f64::max) * 1.15;
    let names: Vec<String> = rows.iter().map(|(n, _)| n.clone()).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(
            "throughput per stage as a ratio to its same-run baseline (1.0 = baseline)",
            ("sans-serif", 16),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(LABEL_AREA)
        .build_cartesian_2d(0.0..max, rows_range(rows.len()))
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .y_labels(rows.len())
        .y_label_formatter(&|y| row_label(&names, *y))
        .x_desc("× baseline")
        .draw()
        .map_err(draw_error)?;
    let color = RGBColor(49, 163, 84);
    chart
        .draw_series(
            rows.iter()
                .enumerate()
                .map(|(i, (_, r))| bar(i, 0.0, *r, color)),
        )
        .map_err(draw_error)?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, (_, r))| {
            Text::new(
                format!(" {r:.2}×"),
                (*r, i as f64 + 0.2),
                ("sans-serif", 12),
            )
        }))
        .map_err(draw_error)?;
    let top = rows.len() as f64 - 0.5;
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(1.0, -0.5), (1.0, top)],
            RED.stroke_width(2),
        )))
        .map_err(draw_error)?;
    Ok(())
}

/// Rows are centred on the integers 0..n (so the y labels land on them).
fn rows_range(rows: usize) -> Range<f64> {
    -0.5..rows as f64 - 0.5
}

fn bar(row: usize, from: f64, to: f64, color: RGBColor) -> Rectangle<(f64, f64)> {
    let y = row as f64;
    Rectangle::new([(from, y - 0.35), (to, y + 0.35)], color.filled())
}

fn row_label(names: &[String], y: f64) -> String {
    let row = y.round();
    if (y - row).abs() > 0.01 || row < 0.0 {
        return String::new();
    }
    names.get(row as usize).cloned().unwrap_or_default()
}

fn label(stage: &str, name: &str) -> String {
    let text = format!("{stage}: {name}");
    if text.chars().count() <= LABEL_CHARS {
        return text;
    }
    let cut: String = text.chars().take(LABEL_CHARS - 1).collect();
    format!("{cut}…")
}

fn draw_error<E: std::fmt::Display>(error: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the chart: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_both_panels_into_an_svg() {
        let mut results = Results::default();
        results.baseline("baselines", "tx", "raw tx", Value::rate(2000.0, "tx/s"));
        results.against(
            "commands",
            "POST /products",
            Value::rate(1500.0, "commands/s"),
            "tx",
        );
        let p = Percentiles {
            count: 10,
            p50_ms: 2.0,
            p95_ms: 5.0,
            p99_ms: 9.0,
            max_ms: 12.0,
        };
        results.add("commands", "POST /products latency", Value::Latency(p));
        let path = std::env::temp_dir().join(format!("bench-chart-{}.svg", uuid::Uuid::new_v4()));
        write(&path, "test run", &results).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        assert!(svg.contains("commands: POST /products latency") && svg.contains("0.75×"));
    }
}
