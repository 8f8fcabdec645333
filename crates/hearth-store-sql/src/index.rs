//! Writing a resource's index rows.

use hearth_search::{IndexEntry, IndexValue};

use crate::{Builder, Dialect, Sql, Val};

/// Index tables, in the order rows are deleted and inserted.
pub(crate) const TABLES: [&str; 8] = [
    "search_string",
    "search_text",
    "search_token",
    "search_reference",
    "search_date",
    "search_number",
    "search_quantity",
    "search_uri",
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

const COLUMNS: [&str; 8] = [
    "norm, exact",
    "content",
    "system, code, text, type_system, type_code",
    "target_type, target_id, version, url, id_system, id_value",
    "start_ms, end_ms",
    "low, high",
    "low, high, system, code, unit, canon_unit, canon_low, canon_high",
    "value",
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
        IndexValue::Composite { .. } => return,
    };
    out.push(Row { of, table, param: param.to_owned(), grp, values });
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
        for chunk in of_table.chunks(200) {
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
