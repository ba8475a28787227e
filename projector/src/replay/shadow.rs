//! The shadow schema replay builds into, and the atomic swap into `read`.

use std::collections::HashMap;

use eventstore::scan::{self, StreamRange};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::ReplayError;
use crate::apply::{apply_batch, Verdict};
use crate::projection::{Decoded, Projection, Schema};

/// The role of the query API, which must keep reading swapped tables.
pub const QUERY_ROLE: &str = "orders_query";

/// How long the swap waits for the live tables' locks before giving up.
const SWAP_LOCK_TIMEOUT: &str = "30s";

/// Recreates the shadow schema with an empty copy of each of `tables`,
/// without indexes (they are built after loading, see [`build_indexes`]).
pub(crate) async fn create(conn: &mut PgConnection, tables: &[&str]) -> Result<(), ReplayError> {
    let shadow = Schema::Shadow.name();
    let mut statements = vec![
        format!("DROP SCHEMA IF EXISTS {shadow} CASCADE"),
        format!("CREATE SCHEMA {shadow}"),
    ];
    for table in tables {
        statements.push(format!(
            "CREATE TABLE {} (LIKE {} INCLUDING ALL EXCLUDING INDEXES)",
            Schema::Shadow.table(table),
            Schema::Live.table(table)
        ));
    }
    for statement in statements {
        sqlx::query(&statement)
            .execute(&mut *conn)
            .await
            .map_err(ReplayError::db("creating the shadow schema"))?;
    }
    Ok(())
}

/// Drops the shadow schema and everything in it.
pub(crate) async fn drop_schema(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "DROP SCHEMA IF EXISTS {} CASCADE",
        Schema::Shadow.name()
    ))
    .execute(conn)
    .await
    .map(|_| ())
}

/// Gives each loaded shadow table the live table's primary key, unique
/// constraints and indexes, with the same names, then analyzes it. Tables
/// are indexed at once, each over its own connection.
pub(crate) async fn build_indexes(pool: &PgPool, tables: &[&str]) -> Result<(), ReplayError> {
    let builds = tables.iter().map(|table| async move {
        let mut conn = pool
            .acquire()
            .await
            .map_err(ReplayError::db("indexing the shadow tables"))?;
        for statement in index_statements(&mut conn, table).await? {
            sqlx::query(&statement)
                .execute(&mut *conn)
                .await
                .map_err(ReplayError::db("indexing the shadow tables"))?;
        }
        Ok::<_, ReplayError>(())
    });
    futures::future::try_join_all(builds).await?;
    Ok(())
}

/// The statements that index the shadow copy of `table` like the live one.
async fn index_statements(
    conn: &mut PgConnection,
    table: &str,
) -> Result<Vec<String>, ReplayError> {
    let live = Schema::Live.table(table);
    let shadow = Schema::Shadow.table(table);
    let constraints: Vec<(String, String)> = sqlx::query_as(
        "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint
         WHERE conrelid = $1::regclass AND contype IN ('p', 'u', 'x') ORDER BY contype, conname",
    )
    .bind(&live)
    .fetch_all(&mut *conn)
    .await
    .map_err(ReplayError::db("reading the live constraints"))?;
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, pg_get_indexdef(i.indexrelid) FROM pg_index i
         JOIN pg_class c ON c.oid = i.indexrelid
         WHERE i.indrelid = $1::regclass
           AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = i.indexrelid)
         ORDER BY 1",
    )
    .bind(&live)
    .fetch_all(&mut *conn)
    .await
    .map_err(ReplayError::db("reading the live indexes"))?;
    let mut statements: Vec<String> = constraints
        .into_iter()
        .map(|(name, definition)| {
            format!(
                "ALTER TABLE {shadow} ADD CONSTRAINT {} {definition}",
                quote_ident(&name)
            )
        })
        .collect();
    for (name, definition) in indexes {
        let Some((head, using)) = definition.split_once(" USING ") else {
            continue;
        };
        let unique = if head.starts_with("CREATE UNIQUE") {
            "UNIQUE "
        } else {
            ""
        };
        statements.push(format!(
            "CREATE {unique}INDEX {} ON {shadow} USING {using}",
            quote_ident(&name)
        ));
    }
    statements.push(format!("ANALYZE {shadow}"));
    Ok(statements)
}

/// Applies to the shadow every event of the log it does not have yet: per
/// projection, the events of every stream whose version in the log is
/// above the shadow row's. This also finds events whose transaction
/// committed late with a lower position. Returns how many events were applied.
pub(crate) async fn catch_up(
    conn: &mut PgConnection,
    projections: &[&'static dyn Projection],
) -> Result<u64, ReplayError> {
    let mut applied = 0;
    for projection in projections {
        let spec = projection.spec();
        let stream_types: Vec<String> = spec.stream_types.iter().map(|t| (*t).to_owned()).collect();
        let behind: Vec<(Uuid, i64)> = sqlx::query_as(&format!(
            "SELECT s.stream_id, COALESCE(r.version, 0) FROM eventstore.streams s
             LEFT JOIN {table} r ON r.{key} = s.stream_id
             WHERE s.stream_type = ANY($1) AND s.version > COALESCE(r.version, 0)",
            table = Schema::Shadow.table(spec.table),
            key = spec.key,
        ))
        .bind(&stream_types)
        .fetch_all(&mut *conn)
        .await
        .map_err(ReplayError::db("finding streams the shadow misses"))?;
        if behind.is_empty() {
            continue;
        }
        let ranges: Vec<StreamRange> = behind
            .iter()
            .map(|(stream_id, version)| StreamRange {
                stream_id: *stream_id,
                after_version: *version,
                up_to_version: None,
            })
            .collect();
        let missing = scan::read_ranges(conn, &ranges)
            .await
            .map_err(ReplayError::db("reading events the shadow misses"))?;
        let events: Vec<Decoded> = missing.iter().map(Decoded::from_envelope).collect();
        let verdicts = apply_batch(conn, Schema::Shadow, &[*projection], &events).await?;
        for verdict in verdicts {
            match verdict {
                Verdict::Rejected(error) => return Err(error.into()),
                Verdict::Applied => applied += 1,
                Verdict::Duplicate | Verdict::Ignored => {}
            }
        }
    }
    Ok(applied)
}

/// What the swap did.
pub(crate) struct Swapped {
    /// Events applied by the final catch-up under the lock.
    pub caught_up: u64,
    /// Rows of each swapped table, as `read.<table>`.
    pub rows: Vec<(String, i64)>,
}

/// In one transaction: locks the live tables, brings the shadow up to date,
/// replaces each live table by its shadow and drops the (then empty) shadow
/// schema. Readers and the live projector wait for the lock, then see the
/// new tables; nobody ever sees a half-built one.
pub(crate) async fn swap(
    conn: &mut PgConnection,
    projections: &[&'static dyn Projection],
    tables: &[&str],
) -> Result<Swapped, ReplayError> {
    let mut tx = sqlx::Connection::begin(&mut *conn)
        .await
        .map_err(ReplayError::db("starting the swap"))?;
    sqlx::query(&format!("SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'"))
        .execute(&mut *tx)
        .await
        .map_err(ReplayError::db("starting the swap"))?;
    let live: Vec<String> = tables.iter().map(|t| Schema::Live.table(t)).collect();
    sqlx::query(&format!(
        "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
        live.join(", ")
    ))
    .execute(&mut *tx)
    .await
    .map_err(ReplayError::db("locking the live read models"))?;

    let caught_up = catch_up(&mut tx, projections).await?;

    let mut rows = Vec::with_capacity(tables.len());
    for table in tables {
        let renames = index_renames(&mut tx, table).await?;
        let live = Schema::Live.table(table);
        let statements = [
            format!("DROP TABLE {live}"),
            format!(
                "ALTER TABLE {} SET SCHEMA {}",
                Schema::Shadow.table(table),
                Schema::Live.name()
            ),
            format!("GRANT SELECT ON {live} TO {QUERY_ROLE}"),
        ];
        for statement in statements.iter().chain(renames.iter()) {
            sqlx::query(statement)
                .execute(&mut *tx)
                .await
                .map_err(ReplayError::db("swapping in the rebuilt tables"))?;
        }
        let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {live}"))
            .fetch_one(&mut *tx)
            .await
            .map_err(ReplayError::db("counting rebuilt rows"))?;
        rows.push((live, count));
    }
    sqlx::query(&format!("DROP SCHEMA {} RESTRICT", Schema::Shadow.name()))
        .execute(&mut *tx)
        .await
        .map_err(ReplayError::db("dropping the shadow schema"))?;
    tx.commit()
        .await
        .map_err(ReplayError::db("committing the swap"))?;
    Ok(Swapped { caught_up, rows })
}

/// `ALTER INDEX` statements giving the shadow table's indexes, once moved
/// into `read`, the names of the live table's indexes they copy (`LIKE`
/// generates new names), so later migrations find them by name.
async fn index_renames(conn: &mut PgConnection, table: &str) -> Result<Vec<String>, ReplayError> {
    let indexes: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT schemaname::text, indexname::text, indexdef FROM pg_indexes
         WHERE tablename = $1 AND schemaname = ANY($2)",
    )
    .bind(table)
    .bind([Schema::Live.name(), Schema::Shadow.name()])
    .fetch_all(&mut *conn)
    .await
    .map_err(ReplayError::db("reading index names"))?;
    // An index is identified by its uniqueness and what follows "USING".
    let shape = |def: &str| {
        let unique = def.starts_with("CREATE UNIQUE");
        def.split_once(" USING ")
            .map(|(_, rest)| (unique, rest.to_owned()))
    };
    let live: HashMap<(bool, String), String> = indexes
        .iter()
        .filter(|(schema, ..)| schema == Schema::Live.name())
        .filter_map(|(_, name, def)| Some((shape(def)?, name.clone())))
        .collect();
    let renames = indexes
        .iter()
        .filter(|(schema, ..)| schema == Schema::Shadow.name())
        .filter_map(|(_, name, def)| {
            let wanted = live.get(&shape(def)?)?;
            (wanted != name).then(|| {
                format!(
                    "ALTER INDEX {}.{} RENAME TO {}",
                    Schema::Live.name(),
                    quote_ident(name),
                    quote_ident(wanted)
                )
            })
        })
        .collect();
    Ok(renames)
}

/// Quotes a catalog name as an SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::quote_ident;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(
            quote_ident("user_orders_by_user"),
            "\"user_orders_by_user\""
        );
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
