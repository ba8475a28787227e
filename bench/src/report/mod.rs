//! What a run reports: the table on stdout, the JSON file and the chart.

pub mod chart;
pub mod json;
pub mod machine;
pub mod table;
