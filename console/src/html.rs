//! Server-side HTML: escaping and the page layout. Every value that reaches
//! a page goes through [`esc`] (or [`Page`] for titles): nothing a user, an
//! event or a message header holds can inject markup.

use std::fmt::{self, Display, Write as _};

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};

/// Text escaped for HTML element content and (double-quoted) attributes.
pub struct Escaped<T>(T);

/// Escapes `value` (anything `Display`) when formatted.
pub fn esc<T: Display>(value: T) -> Escaped<T> {
    Escaped(value)
}

impl<T: Display> Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Escaper<'a, 'b>(&'a mut fmt::Formatter<'b>);
        impl fmt::Write for Escaper<'_, '_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                let mut rest = s;
                while let Some(index) = rest.find(['&', '<', '>', '"', '\'']) {
                    self.0.write_str(&rest[..index])?;
                    self.0.write_str(match rest.as_bytes()[index] {
                        b'&' => "&amp;",
                        b'<' => "&lt;",
                        b'>' => "&gt;",
                        b'"' => "&quot;",
                        _ => "&#39;",
                    })?;
                    rest = &rest[index + 1..];
                }
                self.0.write_str(rest)
            }
        }
        write!(Escaper(f), "{}", self.0)
    }
}

/// Percent-encodes `value` for a URL query component.
pub fn url_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// A time as the console shows it (UTC, milliseconds).
pub fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string()
}

/// An optional value, or a dash.
pub fn or_dash<T: Display>(value: Option<T>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| v.to_string())
}

/// JSON pretty-printed for a `<pre>` (escape it when writing it out).
pub fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// Which section of the console a page belongs to (highlighted in the nav).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Orders and timelines.
    Orders,
    /// Live figures.
    System,
    /// Dead letters.
    DeadLetters,
    /// None of them (error pages).
    None,
}

/// A whole page: the layout around `body` (already HTML), with a status.
pub struct Page {
    /// HTTP status of the response.
    pub status: StatusCode,
    /// The `<title>` and `<h1>` (escaped here).
    pub title: String,
    /// The nav entry to highlight.
    pub section: Section,
    /// The content, already escaped HTML.
    pub body: String,
}

impl Page {
    /// A 200 page.
    pub fn new(section: Section, title: impl Into<String>, body: String) -> Self {
        Self {
            status: StatusCode::OK,
            title: title.into(),
            section,
            body,
        }
    }

    /// The same page with another status.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// The full document.
    pub fn render(&self) -> String {
        let nav = [
            (Section::Orders, "/", "Orders"),
            (Section::System, "/system", "System"),
            (Section::DeadLetters, "/dead-letters", "Dead letters"),
        ]
        .iter()
        .map(|(section, href, label)| {
            let current = if *section == self.section {
                r#" aria-current="page""#
            } else {
                ""
            };
            format!(r#"<a href="{href}"{current}>{label}</a>"#)
        })
        .collect::<String>();
        format!(
            r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · orders console</title>
<link rel="stylesheet" href="/assets/console.css">
<script src="/assets/console.js" defer></script>
</head>
<body>
<header><span class="brand">orders console</span><nav>{nav}</nav></header>
<main>
<h1 id="title">{title}</h1>
{body}
</main>
</body>
</html>
"#,
            title = esc(&self.title),
            body = self.body,
        )
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let mut response = Html(self.render()).into_response();
        *response.status_mut() = self.status;
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            esc(r#"<script>alert("x") & 'y'</script>"#).to_string(),
            "&lt;script&gt;alert(&quot;x&quot;) &amp; &#39;y&#39;&lt;/script&gt;"
        );
        assert_eq!(esc("plain").to_string(), "plain");
    }

    #[test]
    fn titles_are_escaped_in_the_layout() {
        let page = Page::new(Section::Orders, "<b>", String::new()).render();
        assert!(page.contains("<h1 id=\"title\">&lt;b&gt;</h1>"));
        assert!(!page.contains("<b>"));
    }

    #[test]
    fn query_components_are_percent_encoded() {
        assert_eq!(url_component("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
