//! Writing a resource's index rows.

use hearth_search::{IndexEntry, IndexValue};

use hearth_store::StoreError;

use crate::{Builder, Dialect, Exec, Sql, Val};

/// Index tables, in the order rows are deleted and inserted.
pub(crate) const TABLES: [&str; 9] = [
    "search_string",
    "search_text",
    "search_token",
    "search_reference",
    "search_date",
    "search_number",
    "search_quantity",
    "search_uri",
    "search_position",
];

/// Indexed text columns are limited to this many bytes (cut at a character boundary) so that
/// every row fits a B-tree entry on both backends (PostgreSQL refuses index rows over ~2.7 kB).
/// The query side cuts its values the same way, so equality and prefix tests stay exact for any
/// value shorter than the limit and can only over-match values that share their first 1,000 bytes.
pub(crate) const CLIP: usize = 1000;

pub(crate) fn clip(s: &str) -> &str {
    if s.len() <= CLIP {
        return s;
    }
    let mut end = CLIP;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or(s)
}

fn clipped(s: &Option<String>) -> Val {
    Val::Text(s.as_deref().map(|s| clip(s).to_owned()))
}

/// Parameters whose values live in `resources` itself, not in index rows.
pub(crate) fn is_builtin(param: &str) -> bool {
    param == "_id" || param == "_lastUpdated"
}

/// Parameters indexed as full text (not clipped, not in a B-tree): `_text`, `_content`.
pub(crate) fn is_full_text(param: &str) -> bool {
    param == "_text" || param == "_content"
}

/// The statements deleting every index row of resource `rid`.
pub fn delete_index(dialect: Dialect, rid: i64) -> Vec<Sql> {
    TABLES
        .iter()
        .map(|t| {
            let mut b = Builder::new(dialect);
            b.push("DELETE FROM ").push(t).push(" WHERE rid = ").int(rid);
            b.finish()
        })
        .collect()
}

struct Row {
    /// Which of the resources being indexed (position in the input).
    of: usize,
    table: usize,
    param: String,
    grp: i64,
    values: Vec<Val>,
}

const COLUMNS: [&str; 9] = [
    "norm, exact",
    "content",
    "system, code, text, type_system, type_code",
    "target_type, target_id, version, url, id_system, id_value",
    "start_ms, end_ms",
    "low, high",
    "low, high, system, code, unit, canon_unit, canon_low, canon_high",
    "value",
    "lat, lon, x, y, z",
];

fn row_of(of: usize, param: &str, grp: i64, value: &IndexValue, out: &mut Vec<Row>) {
    let (table, values) = match value {
        IndexValue::String { normalized, exact } if is_full_text(param) => (1, vec![Val::text(normalized.as_str())]),
        IndexValue::String { normalized, exact } => (0, vec![Val::text(clip(normalized)), Val::text(exact.as_str())]),
        IndexValue::Token { system, code, text, of_type } => (
            2,
            vec![
                clipped(system),
                clipped(code),
                clipped(text),
                clipped(&of_type.as_ref().and_then(|(s, _)| s.clone())),
                clipped(&of_type.as_ref().map(|(_, c)| c.clone())),
            ],
        ),
        IndexValue::Reference { target_type, target_id, version, url, identifier } => (
            3,
            vec![
                clipped(target_type),
                clipped(target_id),
                clipped(version),
                clipped(url),
                clipped(&identifier.as_ref().and_then(|(s, _)| s.clone())),
                clipped(&identifier.as_ref().map(|(_, v)| v.clone())),
            ],
        ),
        IndexValue::Date { start, end } => (4, vec![Val::int(*start), Val::int(*end)]),
        IndexValue::Number { low, high, .. } => (5, vec![Val::Real(Some(*low)), Val::Real(Some(*high))]),
        IndexValue::Quantity { low, high, system, code, unit, canonical } => (
            6,
            vec![
                Val::Real(Some(*low)),
                Val::Real(Some(*high)),
                clipped(system),
                clipped(code),
                clipped(unit),
                Val::Text(canonical.as_ref().map(|c| c.unit.clone())),
                Val::Real(canonical.as_ref().map(|c| c.low)),
                Val::Real(canonical.as_ref().map(|c| c.high)),
            ],
        ),
        IndexValue::Uri { value } => (7, vec![Val::text(clip(value))]),
        IndexValue::Position { lat, lon } => {
            let [x, y, z] = hearth_search::geo::unit_vector(*lat, *lon);
            (8, [*lat, *lon, x, y, z].into_iter().map(|v| Val::Real(Some(v))).collect())
        }
        IndexValue::Composite { .. } => return,
    };
    out.push(Row { of, table, param: param.to_owned(), grp, values });
}

/// Splits rows into statements of 256 rows and then of power-of-two sizes (128, 64, …, 1):
/// at most nine statement shapes per table, so the connection's prepared-statement cache keeps
/// them all instead of compiling a new shape for every row count.
fn chunks<T>(rows: &[T]) -> Vec<&[T]> {
    let mut out = Vec::new();
    let mut rest = rows;
    while !rest.is_empty() {
        let size = if rest.len() >= 256 { 256 } else { 1 << rest.len().ilog2() };
        let (head, tail) = rest.split_at(size);
        out.push(head);
        rest = tail;
    }
    out
}

/// Index rows of resources created in a write transaction, held back and inserted together:
/// a few multi-row statements per index table for the whole transaction (a 300-entry Bundle:
/// a few dozen statements instead of a couple of thousand). The transaction inserts them before
/// anything in it reads the index (searches, reach checks, reindexing, index deletions), before
/// it hands its connection on, before commit, and whenever more than `LIMIT` entries wait.
#[derive(Default)]
pub struct PendingIndex {
    resources: Vec<(i64, String, Vec<IndexEntry>)>,
    entries: usize,
}

impl PendingIndex {
    /// Entries held before they are written anyway (bounds the memory of a huge transaction).
    pub const LIMIT: usize = 20_000;

    /// The index rows of `version` of resource `rid`, just persisted (a deletion has none): a
    /// first version's are held, any other version's replace the resource's rows at once.
    pub async fn persisted(
        &mut self,
        exec: &mut dyn Exec,
        rid: i64,
        res_type: &str,
        index: &[IndexEntry],
        version: u64,
        deleted: bool,
    ) -> Result<(), StoreError> {
        if deleted {
            return self.replace(exec, rid, res_type, &[]).await;
        }
        if version > 1 {
            return self.replace(exec, rid, res_type, index).await;
        }
        self.entries += index.len();
        self.resources.push((rid, res_type.to_owned(), index.to_vec()));
        if self.entries > Self::LIMIT {
            self.flush(exec).await?;
        }
        Ok(())
    }

    /// Replaces the index rows of resource `rid` with `index` now (a reindex, an update), after
    /// writing the held rows, which may be its own.
    pub async fn replace(
        &mut self,
        exec: &mut dyn Exec,
        rid: i64,
        res_type: &str,
        index: &[IndexEntry],
    ) -> Result<(), StoreError> {
        self.flush(exec).await?;
        for sql in
            delete_index(exec.dialect(), rid).into_iter().chain(insert_index(exec.dialect(), rid, res_type, index))
        {
            exec.execute(&sql).await?;
        }
        Ok(())
    }

    /// Inserts everything held (nothing to do when empty).
    pub async fn flush(&mut self, exec: &mut dyn Exec) -> Result<(), StoreError> {
        if self.resources.is_empty() {
            return Ok(());
        }
        let held = std::mem::take(&mut self.resources);
        self.entries = 0;
        let refs: Vec<(i64, &str, &[IndexEntry])> =
            held.iter().map(|(rid, ty, entries)| (*rid, ty.as_str(), entries.as_slice())).collect();
        for sql in insert_index_many(exec.dialect(), &refs) {
            exec.execute(&sql).await?;
        }
        Ok(())
    }
}

/// The statements inserting the index rows of resource `rid` (of type `res_type`) for `entries`
/// (multi-row inserts, at most a few hundred rows each).
pub fn insert_index(dialect: Dialect, rid: i64, res_type: &str, entries: &[IndexEntry]) -> Vec<Sql> {
    insert_index_many(dialect, &[(rid, res_type, entries)])
}

/// The statements inserting the index rows of several resources `(rid, res_type, entries)` at
/// once: one multi-row insert per index table (and per few hundred rows), however many resources
/// there are — a batch costs a handful of statements, not a handful per resource.
pub fn insert_index_many(dialect: Dialect, resources: &[(i64, &str, &[IndexEntry])]) -> Vec<Sql> {
    let mut rows = Vec::new();
    for (of, (_, _, entries)) in resources.iter().enumerate() {
        let mut grp = 0;
        for entry in entries.iter() {
            if is_builtin(&entry.param) {
                continue;
            }
            match &entry.value {
                IndexValue::Composite { components } => {
                    grp += 1;
                    for (i, c) in components.iter().enumerate() {
                        row_of(of, &format!("{}${i}", entry.param), grp, c, &mut rows);
                    }
                }
                v => row_of(of, &entry.param, 0, v, &mut rows),
            }
        }
    }
    rows.sort_by_key(|r| r.table);
    let mut out = Vec::new();
    for (table, name) in TABLES.iter().enumerate() {
        let of_table: Vec<&Row> = rows.iter().filter(|r| r.table == table).collect();
        for chunk in chunks(&of_table) {
            let mut b = Builder::new(dialect);
            b.push("INSERT INTO ").push(name).push(" (rid, res_type, param, grp, ");
            b.push(COLUMNS.get(table).copied().unwrap_or_default()).push(") VALUES ");
            for (i, row) in chunk.iter().enumerate() {
                let Some(&(rid, res_type, _)) = resources.get(row.of) else { continue };
                if i > 0 {
                    b.push(", ");
                }
                b.push("(").int(rid).push(", ").text(res_type).push(", ").text(&row.param).push(", ").int(row.grp);
                for v in &row.values {
                    b.push(", ").bind(v.clone());
                }
                b.push(")");
            }
            out.push(b.finish());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::chunks;

    #[test]
    fn rows_are_split_into_few_statement_shapes() {
        for n in [0usize, 1, 2, 3, 200, 255, 256, 257, 1000, 4097] {
            let rows: Vec<usize> = (0..n).collect();
            let parts = chunks(&rows);
            // Every row once, in order.
            assert_eq!(parts.concat(), rows, "n = {n}");
            // 256, or a power of two (at most one of each below 256).
            let small: Vec<usize> = parts.iter().map(|p| p.len()).filter(|&l| l != 256).collect();
            assert!(small.iter().all(|l| l.is_power_of_two()), "n = {n}: {small:?}");
            let mut distinct = small.clone();
            distinct.dedup();
            assert_eq!(distinct, small, "n = {n}: a size below 256 repeats");
        }
        assert_eq!(chunks(&[0u8; 300]).iter().map(|p| p.len()).collect::<Vec<_>>(), vec![256, 32, 8, 4]);
    }
}
