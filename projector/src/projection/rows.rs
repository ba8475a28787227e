//! [`Rows`]: a read model's rows held in memory, loaded and stored in bulk.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use sqlx::PgConnection;
use uuid::Uuid;

use super::sql::{self, Array};
use super::{Decoded, Fold, ReadModel, Schema, Spec};
use crate::apply::ApplyError;

/// Rows per upsert statement.
const UPSERT_CHUNK: usize = 2_000;
/// Bytes of `COPY` data sent at once.
const COPY_CHUNK: usize = 1 << 20;

/// The rows of read model `M` being folded, by stream id.
pub struct Rows<M: ReadModel> {
    slots: HashMap<Uuid, Slot<M::Row>>,
}

struct Slot<R> {
    /// The row (`None`: the stream has none).
    row: Option<R>,
    /// The last version folded in, with or without a row.
    version: i64,
    /// Changed since loaded or stored.
    dirty: bool,
}

impl<M: ReadModel> Default for Rows<M> {
    fn default() -> Self {
        Self {
            slots: HashMap::new(),
        }
    }
}

impl<M: ReadModel> Rows<M> {
    /// The row of `stream_id`, if it has one.
    pub fn get(&self, stream_id: Uuid) -> Option<&M::Row> {
        self.slots.get(&stream_id).and_then(|s| s.row.as_ref())
    }

    /// The rows to write, in key order (the order rows are locked in).
    fn rows(&self, only_dirty: bool) -> Vec<&M::Row> {
        let mut ids: Vec<(&Uuid, &M::Row)> = self
            .slots
            .iter()
            .filter(|(_, s)| s.dirty || !only_dirty)
            .filter_map(|(id, s)| Some((id, s.row.as_ref()?)))
            .collect();
        ids.sort_unstable_by_key(|(id, _)| **id);
        ids.into_iter().map(|(_, row)| row).collect()
    }
}

#[async_trait]
impl<M: ReadModel> Fold for Rows<M> {
    fn spec(&self) -> &'static Spec {
        &M::SPEC
    }

    async fn load(
        &mut self,
        conn: &mut PgConnection,
        schema: Schema,
        ids: &[Uuid],
    ) -> Result<(), sqlx::Error> {
        let mut missing: Vec<Uuid> = ids
            .iter()
            .copied()
            .filter(|id| !self.slots.contains_key(id))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        missing.sort_unstable();
        missing.dedup();
        let rows: Vec<M::Row> = sqlx::query_as(&sql::load_sql(&M::SPEC, schema))
            .bind(&missing)
            .fetch_all(&mut *conn)
            .await?;
        for row in rows {
            let mut cells = Vec::with_capacity(M::SPEC.columns.len());
            M::cells(&row, &mut cells);
            let Some(sql::Cell::Uuid(id)) = cells.first().copied() else {
                unreachable!("the key is the first column");
            };
            let version = M::version(&row);
            self.slots.insert(
                id,
                Slot {
                    row: Some(row),
                    version,
                    dirty: false,
                },
            );
        }
        for id in missing {
            self.slots.entry(id).or_insert(Slot {
                row: None,
                version: 0,
                dirty: false,
            });
        }
        Ok(())
    }

    fn version(&self, stream_id: Uuid) -> i64 {
        self.slots.get(&stream_id).map_or(0, |s| s.version)
    }

    fn apply(&mut self, event: &Decoded) -> Result<(), ApplyError> {
        let known = event
            .event
            .as_ref()
            .map_err(|source| ApplyError::decode(event, source.clone()))?;
        let slot = self.slots.entry(event.stream_id).or_insert(Slot {
            row: None,
            version: 0,
            dirty: false,
        });
        slot.row = M::evolve(slot.row.take(), event, known);
        slot.version = event.stream_version;
        slot.dirty = true;
        Ok(())
    }

    async fn store(&mut self, conn: &mut PgConnection, schema: Schema) -> Result<(), sqlx::Error> {
        let upsert = sql::upsert_sql(&M::SPEC, schema);
        {
            let rows = self.rows(true);
            let mut cells = Vec::with_capacity(M::SPEC.columns.len());
            let mut distinct = Distinct::new(&M::SPEC);
            for chunk in rows.chunks(UPSERT_CHUNK) {
                let mut arrays = Array::for_columns(&M::SPEC, chunk.len());
                for row in chunk {
                    cells.clear();
                    M::cells(row, &mut cells);
                    if distinct.admit(&cells) {
                        Array::push_row(&mut arrays, &cells);
                    }
                }
                let mut query = sqlx::query(&upsert);
                for array in arrays {
                    query = array.bind(query);
                }
                query.execute(&mut *conn).await?;
            }
        }
        for slot in self.slots.values_mut() {
            slot.dirty = false;
        }
        Ok(())
    }

    async fn copy_into(
        &mut self,
        conn: &mut PgConnection,
        schema: Schema,
    ) -> Result<u64, sqlx::Error> {
        let mut copy = conn.copy_in_raw(&sql::copy_sql(&M::SPEC, schema)).await?;
        let mut buffer = String::with_capacity(COPY_CHUNK + 4096);
        let mut cells = Vec::with_capacity(M::SPEC.columns.len());
        let mut distinct = Distinct::new(&M::SPEC);
        for row in self.rows(false) {
            cells.clear();
            M::cells(row, &mut cells);
            if !distinct.admit(&cells) {
                continue;
            }
            sql::copy_row(&cells, &mut buffer);
            if buffer.len() >= COPY_CHUNK {
                copy.send(buffer.as_bytes()).await?;
                buffer.clear();
            }
        }
        if !buffer.is_empty() {
            copy.send(buffer.as_bytes()).await?;
        }
        let written = copy.finish().await?;
        for slot in self.slots.values_mut() {
            slot.dirty = false;
        }
        Ok(written)
    }
}

/// Leaves out a row that collides with an earlier one on the spec's other
/// unique column, like the upsert's guard does against stored rows (only a
/// corrupted log has such rows).
struct Distinct {
    spec: &'static Spec,
    column: Option<usize>,
    seen: HashSet<String>,
}

impl Distinct {
    fn new(spec: &'static Spec) -> Self {
        let column = spec
            .also_unique
            .and_then(|name| spec.columns.iter().position(|c| c.name == name));
        Self {
            spec,
            column,
            seen: HashSet::new(),
        }
    }

    fn admit(&mut self, cells: &[sql::Cell<'_>]) -> bool {
        let Some(column) = self.column else {
            return true;
        };
        let fresh = self.seen.insert(format!("{:?}", cells[column]));
        if !fresh {
            tracing::warn!(
                table = self.spec.table, row = ?cells[0], column = self.spec.columns[column].name,
                "another row already has this value; row not projected"
            );
        }
        fresh
    }
}
