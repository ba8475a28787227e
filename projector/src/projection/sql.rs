//! SQL written once for every read model: the column list, the locked load,
//! the multi-row upsert (`INSERT … SELECT FROM UNNEST … ON CONFLICT`) and the
//! `COPY` text encoding. Table and column names come from [`super::Spec`]
//! constants only, never from input, so formatting them into SQL is safe.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::Postgres;
use uuid::Uuid;

use super::{Schema, Spec};

/// A column of a read-model table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Its name (also the row struct's field name).
    pub name: &'static str,
    /// Its type.
    pub kind: ColumnType,
}

impl Column {
    /// A column called `name` of type `kind`.
    pub const fn new(name: &'static str, kind: ColumnType) -> Self {
        Self { name, kind }
    }
}

/// The column types read models use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// `UUID`.
    Uuid,
    /// `TEXT NOT NULL`.
    Text,
    /// `TEXT`, nullable.
    OptText,
    /// `BIGINT`.
    Int,
    /// `TIMESTAMPTZ`.
    Time,
    /// `JSONB`, read and written as its JSON text.
    Json,
}

impl ColumnType {
    fn array(self) -> &'static str {
        match self {
            ColumnType::Uuid => "uuid[]",
            ColumnType::Text | ColumnType::OptText | ColumnType::Json => "text[]",
            ColumnType::Int => "int8[]",
            ColumnType::Time => "timestamptz[]",
        }
    }
}

/// One value of a row, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    /// A uuid.
    Uuid(Uuid),
    /// A text.
    Text(&'a str),
    /// A nullable text.
    OptText(Option<&'a str>),
    /// An integer.
    Int(i64),
    /// A timestamp (already at microsecond precision).
    Time(DateTime<Utc>),
    /// JSON text.
    Json(&'a str),
}

/// `col, col::text AS col, …`: what a load selects, so rows decode by name.
pub(crate) fn select_list(spec: &Spec) -> String {
    let columns: Vec<String> = spec
        .columns
        .iter()
        .map(|c| match c.kind {
            ColumnType::Json => format!("{0}::text AS {0}", c.name),
            _ => c.name.to_owned(),
        })
        .collect();
    columns.join(", ")
}

/// Selects the rows of the ids in `$1`, locking them in key order.
pub(crate) fn load_sql(spec: &Spec, schema: Schema) -> String {
    format!(
        "SELECT {} FROM {} WHERE {key} = ANY($1) ORDER BY {key} FOR UPDATE",
        select_list(spec),
        schema.table(spec.table),
        key = spec.key,
    )
}

/// The multi-row upsert, one array parameter per column. A row never moves
/// back to an older version, whoever wrote the newer one.
pub(crate) fn upsert_sql(spec: &Spec, schema: Schema) -> String {
    let names: Vec<&str> = spec.columns.iter().map(|c| c.name).collect();
    let arrays: Vec<String> = spec
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("${}::{}", i + 1, c.kind.array()))
        .collect();
    let values: Vec<String> = spec
        .columns
        .iter()
        .map(|c| match c.kind {
            ColumnType::Json => format!("u.{}::jsonb", c.name),
            _ => format!("u.{}", c.name),
        })
        .collect();
    let updates: Vec<String> = names
        .iter()
        .skip(1)
        .map(|n| format!("{n} = EXCLUDED.{n}"))
        .collect();
    let table = schema.table(spec.table);
    let guard = spec.also_unique.map_or_else(String::new, |col| {
        format!(
            " WHERE NOT EXISTS (SELECT FROM {table} o WHERE o.{col} = u.{col} AND o.{key} <> u.{key})",
            key = spec.key
        )
    });
    format!(
        "INSERT INTO {table} AS t ({cols})
         SELECT {values} FROM UNNEST({arrays}) AS u({cols}){guard}
         ON CONFLICT ({key}) DO UPDATE SET {updates} WHERE t.version < EXCLUDED.version",
        cols = names.join(", "),
        values = values.join(", "),
        arrays = arrays.join(", "),
        key = spec.key,
        updates = updates.join(", "),
    )
}

/// `COPY` of every column from text input.
pub(crate) fn copy_sql(spec: &Spec, schema: Schema) -> String {
    let names: Vec<&str> = spec.columns.iter().map(|c| c.name).collect();
    format!(
        "COPY {} ({}) FROM STDIN",
        schema.table(spec.table),
        names.join(", ")
    )
}

/// Column-wise arrays of many rows, bound as the upsert's parameters.
pub(crate) enum Array<'a> {
    Uuid(Vec<Uuid>),
    Text(Vec<&'a str>),
    OptText(Vec<Option<&'a str>>),
    Int(Vec<i64>),
    Time(Vec<DateTime<Utc>>),
}

impl<'a> Array<'a> {
    pub(crate) fn for_columns(spec: &Spec, capacity: usize) -> Vec<Self> {
        spec.columns
            .iter()
            .map(|c| match c.kind {
                ColumnType::Uuid => Array::Uuid(Vec::with_capacity(capacity)),
                ColumnType::Text | ColumnType::Json => Array::Text(Vec::with_capacity(capacity)),
                ColumnType::OptText => Array::OptText(Vec::with_capacity(capacity)),
                ColumnType::Int => Array::Int(Vec::with_capacity(capacity)),
                ColumnType::Time => Array::Time(Vec::with_capacity(capacity)),
            })
            .collect()
    }

    /// Appends one row's cells, one per array.
    pub(crate) fn push_row(arrays: &mut [Self], cells: &[Cell<'a>]) {
        for (array, cell) in arrays.iter_mut().zip(cells) {
            match (array, *cell) {
                (Array::Uuid(v), Cell::Uuid(x)) => v.push(x),
                (Array::Text(v), Cell::Text(x) | Cell::Json(x)) => v.push(x),
                (Array::OptText(v), Cell::OptText(x)) => v.push(x),
                (Array::Int(v), Cell::Int(x)) => v.push(x),
                (Array::Time(v), Cell::Time(x)) => v.push(x),
                (_, cell) => panic!("cell {cell:?} does not match its column's type"),
            }
        }
    }

    pub(crate) fn bind(
        self,
        query: Query<'a, Postgres, PgArguments>,
    ) -> Query<'a, Postgres, PgArguments> {
        match self {
            Array::Uuid(v) => query.bind(v),
            Array::Text(v) => query.bind(v),
            Array::OptText(v) => query.bind(v),
            Array::Int(v) => query.bind(v),
            Array::Time(v) => query.bind(v),
        }
    }
}

/// Appends one row in `COPY` text format to `out`.
pub(crate) fn copy_row(cells: &[Cell<'_>], out: &mut String) {
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        match *cell {
            Cell::Uuid(id) => {
                let _ = write!(out, "{}", id.as_hyphenated());
            }
            Cell::Text(text) | Cell::Json(text) | Cell::OptText(Some(text)) => escape(text, out),
            Cell::OptText(None) => out.push_str("\\N"),
            Cell::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Cell::Time(at) => {
                let _ = write!(out, "{}", at.format("%Y-%m-%d %H:%M:%S%.6f+00"));
            }
        }
    }
    out.push('\n');
}

/// Escapes text for `COPY`'s text format.
fn escape(text: &str, out: &mut String) {
    if !text.contains(['\\', '\t', '\n', '\r']) {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn copy_rows_escape_text_and_write_nulls() {
        let at = Utc.timestamp_opt(1_700_000_000, 123_456_000).unwrap();
        let id = Uuid::nil();
        let mut out = String::new();
        copy_row(
            &[
                Cell::Uuid(id),
                Cell::Text("a\tb\\c\nd"),
                Cell::OptText(None),
                Cell::Int(-5),
                Cell::Time(at),
                Cell::Json("{\"k\":\"v\\\"\"}"),
            ],
            &mut out,
        );
        assert_eq!(
            out,
            "00000000-0000-0000-0000-000000000000\ta\\tb\\\\c\\nd\t\\N\t-5\t\
             2023-11-14 22:13:20.123456+00\t{\"k\":\"v\\\\\"\"}\n"
        );
    }
}
