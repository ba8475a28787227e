//! A strict reader of the Prometheus text exposition format (version 0.0.4),
//! for tests that scrape `/metrics`: every line must be a `# HELP`, a
//! `# TYPE`, a comment or a well-formed sample, label values must be
//! properly escaped, a family's `# TYPE` must come before its samples, and
//! histograms must have their `_bucket` (with `le`, ending at `+Inf`), `_sum`
//! and `_count` series.

use std::collections::{BTreeMap, HashMap};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series name (with `_bucket`/`_sum`/`_count` for histograms).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// A parsed exposition.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    /// `# TYPE` of each family.
    pub types: HashMap<String, String>,
    /// Every sample, in order.
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// Parses `text`, or says which line is wrong and why.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut exposition = Self::default();
        let mut sampled_families: Vec<String> = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let fail = |why: &str| format!("line {}: {why}: {line:?}", number + 1);
            if line.trim().is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest
                    .split_once(' ')
                    .ok_or_else(|| fail("TYPE without a type"))?;
                check_name(name).map_err(|why| fail(&why))?;
                if !matches!(
                    kind,
                    "counter" | "gauge" | "histogram" | "summary" | "untyped"
                ) {
                    return Err(fail("unknown type"));
                }
                if sampled_families.iter().any(|f| f == name) {
                    return Err(fail("TYPE after the family's samples"));
                }
                if exposition
                    .types
                    .insert(name.to_owned(), kind.to_owned())
                    .is_some()
                {
                    return Err(fail("second TYPE for a family"));
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or_default();
                check_name(name).map_err(|why| fail(&why))?;
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let sample = parse_sample(line).map_err(|why| fail(&why))?;
            sampled_families.push(exposition.family_of(&sample.name).to_owned());
            exposition.samples.push(sample);
        }
        exposition.check_histograms()?;
        Ok(exposition)
    }

    /// The family a series belongs to (`x` for `x_bucket` of histogram `x`).
    fn family_of<'a>(&self, series: &'a str) -> &'a str {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = series.strip_suffix(suffix) {
                if matches!(
                    self.types.get(base).map(String::as_str),
                    Some("histogram" | "summary")
                ) {
                    return base;
                }
            }
        }
        series
    }

    fn check_histograms(&self) -> Result<(), String> {
        for (family, kind) in &self.types {
            if kind != "histogram" {
                continue;
            }
            let bucket_series = format!("{family}_bucket");
            let buckets: Vec<&Sample> = self.series(&bucket_series).collect();
            if buckets.is_empty() {
                continue;
            }
            if buckets.iter().any(|b| !b.labels.contains_key("le")) {
                return Err(format!("histogram {family}: a bucket without `le`"));
            }
            if !buckets.iter().any(|b| b.labels["le"] == "+Inf") {
                return Err(format!("histogram {family}: no +Inf bucket"));
            }
            let (count, sum) = (format!("{family}_count"), format!("{family}_sum"));
            if self.series(&count).next().is_none() || self.series(&sum).next().is_none() {
                return Err(format!("histogram {family}: _sum or _count missing"));
            }
        }
        Ok(())
    }

    /// The samples of series `name`.
    pub fn series<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// The samples of series `name` whose labels include every pair of `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.series(name).filter(move |s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The sum of the samples [`matching`](Self::matching), `None` if there is none.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = self.matching(name, labels).peekable();
        found.peek()?;
        Some(found.map(|s| s.value).sum())
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("invalid metric name {name:?}"))
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| "a sample without a value".to_owned())?;
    let name = &line[..name_end];
    check_name(name)?;
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, &mut labels)?;
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("a sample without a value")?;
    let value = parse_value(value)?;
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .map_err(|_| format!("invalid timestamp {timestamp:?}"))?;
    }
    if fields.next().is_some() {
        return Err("trailing fields after the sample".to_owned());
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `k="v",...}` and returns what follows the closing brace.
fn parse_labels<'a>(
    mut text: &'a str,
    labels: &mut BTreeMap<String, String>,
) -> Result<&'a str, String> {
    loop {
        text = text.trim_start();
        if let Some(after) = text.strip_prefix('}') {
            return Ok(after);
        }
        let (key, after) = text.split_once("=\"").ok_or("a label without =\"")?;
        let key = key.trim();
        check_name(key).map_err(|_| format!("invalid label name {key:?}"))?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("an unterminated label value".to_owned()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    _ => return Err("an invalid escape in a label value".to_owned()),
                },
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(key.to_owned(), value).is_some() {
            return Err(format!("label {key:?} twice"));
        }
        text = &after[end + 1..];
        text = text.strip_prefix(',').unwrap_or(text);
    }
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text
            .parse::<f64>()
            .map_err(|_| format!("invalid value {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_well_formed_exposition_parses() {
        let text = "# HELP http_requests_total Requests.\n\
                    # TYPE http_requests_total counter\n\
                    http_requests_total{route=\"/orders/{order_id}\",status=\"200\"} 3\n\
                    # TYPE lat_seconds histogram\n\
                    lat_seconds_bucket{le=\"0.1\"} 1\n\
                    lat_seconds_bucket{le=\"+Inf\"} 2\n\
                    lat_seconds_sum 0.3\n\
                    lat_seconds_count 2\n\
                    up 1 1700000000000\n";
        let parsed = Exposition::parse(text).unwrap();
        assert_eq!(
            parsed.value("http_requests_total", &[("status", "200")]),
            Some(3.0)
        );
        assert_eq!(parsed.value("lat_seconds_count", &[]), Some(2.0));
        assert_eq!(parsed.types["lat_seconds"], "histogram");
    }

    #[test]
    fn malformed_lines_are_refused() {
        for bad in [
            "1bad_name 1",
            "name{label=\"unterminated} 1",
            "name{label=\"x\"} notanumber",
            "name{label=\"x\",label=\"y\"} 1",
            "name{label=\"bad \\q escape\"} 1",
            "name 1 2 3",
            "# TYPE name flavour",
            "name 1\n# TYPE name counter",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1",
        ] {
            assert!(Exposition::parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
