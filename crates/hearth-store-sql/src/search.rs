//! Running a search: the page query (keyset paging over the sort keys), the total, includes,
//! and loading the versions of the resources found.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::DateTime;
use hearth_search::{Include, SearchQuery};
use hearth_store::{Access, Method, Op, SearchPage, SearchRequest, StoreError, Version};

use crate::compile::{Types, capped_count, driver_candidates, filter, filter_driven, sort_key};
use crate::cursor::Cursor;
use crate::{Builder, Col, Exec, Val};

/// At most this many resources are added to one page by `_include`/`_revinclude`.
pub const MAX_INCLUDED: usize = 1000;

/// `None` for a system search without `_type` (every type), else the searched types.
fn types_of(query: &SearchQuery) -> Types<'_> {
    if query.type_filter.is_empty() && query.resource_types.len() > 1 { None } else { Some(&query.resource_types) }
}

/// Live resources matching the query's clauses (its result parameters are ignored), in `rid`
/// order, at most `limit`. Used by conditional interactions inside a write transaction.
pub async fn find(
    exec: &mut dyn Exec,
    access: &Access,
    query: &SearchQuery,
    limit: u32,
) -> Result<Vec<Version>, StoreError> {
    let mut b = Builder::new(exec.dialect());
    b.push("SELECT r.rid FROM resources r WHERE ");
    filter(&mut b, types_of(query), &query.clauses, None, access)?;
    b.push(" ORDER BY r.rid LIMIT ").int(i64::from(limit));
    let rows = exec.fetch(&b.finish(), &[Col::Int]).await?;
    let rids: Vec<i64> = rows.iter().filter_map(|r| r.first().and_then(Val::as_int)).collect();
    load(exec, &rids).await
}

/// Runs a search request: one page of matches with its includes, the total when asked, and the
/// cursors of the neighbouring pages.
pub async fn search(exec: &mut dyn Exec, req: &SearchRequest) -> Result<SearchPage, StoreError> {
    let query = &req.query;
    let types = types_of(query);
    let dialect = exec.dialect();
    let mut page = SearchPage::default();
    let driver = if req.compartment.is_some() { None } else { choose_driver(exec, types, &query.clauses).await? };

    if req.count_total {
        let mut b = Builder::new(dialect);
        b.push("SELECT COUNT(*) FROM resources r WHERE ");
        filter_driven(&mut b, types, &query.clauses, req.compartment.as_ref(), &req.access, driver)?;
        let rows = exec.fetch(&b.finish(), &[Col::Int]).await?;
        let n = rows.first().and_then(|r| r.first()).and_then(Val::as_int).unwrap_or(0);
        page.total = Some(u64::try_from(n).unwrap_or(0));
    }
    if query.count == 0 {
        return Ok(page);
    }

    let (sql, cols, cursor) = page_sql(dialect, req, driver)?;
    let forward = cursor.as_ref().is_none_or(|c| c.forward);
    let mut all_cols = vec![Col::Int];
    all_cols.extend(cols.iter().copied());
    let mut rows = exec.fetch(&sql, &all_cols).await?;
    let more = rows.len() > query.count as usize;
    rows.truncate(query.count as usize);
    if !forward {
        rows.reverse();
    }
    let position = |row: &Vec<Val>, forward: bool| {
        let rid = row.first().and_then(Val::as_int).unwrap_or(0);
        Cursor { forward, rid, keys: row.iter().skip(1).cloned().collect() }.encode()
    };
    let (has_next, has_previous) = if forward { (more, cursor.is_some()) } else { (true, more) };
    if has_next {
        page.next = rows.last().map(|r| position(r, true));
    }
    if has_previous {
        page.previous = rows.first().map(|r| position(r, false));
    }
    let rids: Vec<i64> = rows.iter().filter_map(|r| r.first().and_then(Val::as_int)).collect();
    page.matches = load(exec, &rids).await?;

    if !query.include.is_empty() || !query.revinclude.is_empty() {
        let (included, truncated) = includes(exec, query, &req.access, &rids).await?;
        page.included = load(exec, &included).await?;
        page.includes_truncated = truncated;
    }
    Ok(page)
}

/// Sets counted past this size are "large": the choice between two of them is left to the ranks.
const DRIVER_CAP: i64 = 1000;

/// The clause to drive the search from when two or more could (see
/// [`crate::compile::driver_candidates`]): the one with the smallest set counted up to
/// [`DRIVER_CAP`] (ties to the better rank); `None` (the ranks decide) when there is no choice
/// or every set reaches the cap. Each count reads at most the cap's worth of index entries.
async fn choose_driver(
    exec: &mut dyn Exec,
    types: Option<&[String]>,
    clauses: &[hearth_search::Clause],
) -> Result<Option<usize>, StoreError> {
    let candidates = driver_candidates(clauses);
    if candidates.len() < 2 {
        return Ok(None);
    }
    let mut best: Option<(i64, u8, usize)> = None;
    for (i, rank) in candidates {
        let Some(clause) = clauses.get(i) else { continue };
        let sql = capped_count(exec.dialect(), types, clause, DRIVER_CAP)?;
        let rows = exec.fetch(&sql, &[Col::Int]).await?;
        let n = rows.first().and_then(|r| r.first()).and_then(Val::as_int).unwrap_or(DRIVER_CAP);
        if best.is_none_or(|b| (n, rank, i) < b) {
            best = Some((n, rank, i));
        }
    }
    Ok(best.filter(|&(n, _, _)| n < DRIVER_CAP).map(|(_, _, i)| i))
}

/// The page query: sort keys computed per matching resource, the keyset condition of the
/// cursor, order, limit + 1 (to know whether there is a next page). Also answers the sort
/// keys' value types and the decoded cursor.
fn page_sql(
    dialect: crate::Dialect,
    req: &SearchRequest,
    driver: Option<usize>,
) -> Result<(crate::Sql, Vec<Col>, Option<Cursor>), StoreError> {
    let query = &req.query;
    let mut b = Builder::new(dialect);
    b.push("SELECT q.rid");
    for i in 0..query.sort.len() {
        b.push(&format!(", q.k{i}"));
    }
    b.push(" FROM (SELECT r.rid AS rid");
    let mut cols = Vec::with_capacity(query.sort.len());
    for (i, key) in query.sort.iter().enumerate() {
        b.push(", ");
        cols.push(sort_key(&mut b, key)?);
        b.push(&format!(" AS k{i}"));
    }
    b.push(" FROM resources r WHERE ");
    filter_driven(&mut b, types_of(query), &query.clauses, req.compartment.as_ref(), &req.access, driver)?;
    b.push(") q");
    let cursor = req.cursor.as_deref().map(|c| Cursor::decode(c, &cols)).transpose()?;
    let forward = cursor.as_ref().is_none_or(|c| c.forward);
    if let Some(c) = &cursor {
        b.push(" WHERE ");
        keyset(&mut b, query, c, 0);
    }
    b.push(" ORDER BY ");
    for (i, key) in query.sort.iter().enumerate() {
        let asc = key.descending != forward;
        b.push(&format!("(q.k{i} IS NULL){}, q.k{i} {}, ", if forward { "" } else { " DESC" }, dir(asc)));
    }
    b.push(&format!("q.rid {} LIMIT ", dir(forward)));
    b.int(i64::from(query.count) + 1);
    Ok((b.finish(), cols, cursor))
}

/// The database's plan for the first page of a search (SQLite's `EXPLAIN QUERY PLAN` details,
/// PostgreSQL's `EXPLAIN` lines): what `hearth admin explain-search` prints, and what tests
/// check to keep selective searches on indexes.
pub async fn explain(exec: &mut dyn Exec, req: &SearchRequest) -> Result<Vec<String>, StoreError> {
    let dialect = exec.dialect();
    let driver = if req.compartment.is_some() {
        None
    } else {
        choose_driver(exec, types_of(&req.query), &req.query.clauses).await?
    };
    let (sql, _, _) = page_sql(dialect, req, driver)?;
    let (prefix, cols, at) = match dialect {
        crate::Dialect::Sqlite => ("EXPLAIN QUERY PLAN ", vec![Col::Int, Col::Int, Col::Int, Col::Text], 3),
        crate::Dialect::Postgres => ("EXPLAIN ", vec![Col::Text], 0),
    };
    let explained = crate::Sql { text: format!("{prefix}{}", sql.text), binds: sql.binds };
    let rows = exec.fetch(&explained, &cols).await?;
    Ok(rows.iter().filter_map(|r| r.get(at).and_then(Val::as_text).map(str::to_owned)).collect())
}

fn dir(asc: bool) -> &'static str {
    if asc { "ASC" } else { "DESC" }
}

/// The rows strictly after (forward) or before the cursor position in result order, where each
/// key sorts ascending or descending as asked and an absent key sorts last.
fn keyset(b: &mut Builder, query: &SearchQuery, c: &Cursor, i: usize) {
    let (Some(key), Some(v)) = (query.sort.get(i), c.keys.get(i)) else {
        b.push(if c.forward { "q.rid > " } else { "q.rid < " }).int(c.rid);
        return;
    };
    let k = format!("q.k{i}");
    if v.is_null() {
        if c.forward {
            b.push(&format!("({k} IS NULL AND ("));
        } else {
            b.push(&format!("({k} IS NOT NULL OR ({k} IS NULL AND ("));
        }
        keyset(b, query, c, i + 1);
        b.push(if c.forward { "))" } else { ")))" });
        return;
    }
    let op = if key.descending == c.forward { " < " } else { " > " };
    if c.forward {
        b.push(&format!("({k} IS NULL OR {k}{op}")).bind(v.clone());
    } else {
        b.push(&format!("(({k} IS NOT NULL AND {k}{op}")).bind(v.clone()).push(")");
    }
    b.push(&format!(" OR ({k} = ")).bind(v.clone()).push(" AND (");
    keyset(b, query, c, i + 1);
    b.push(")))");
}

/// Follows `_include` and `_revinclude` from the matches (and, for `:iterate`, from what they
/// added, until nothing new is found), returning the included `rid`s in discovery order.
async fn includes(
    exec: &mut dyn Exec,
    query: &SearchQuery,
    access: &Access,
    matches: &[i64],
) -> Result<(Vec<i64>, bool), StoreError> {
    let mut seen: HashSet<i64> = matches.iter().copied().collect();
    let mut out = Vec::new();
    let mut frontier = matches.to_vec();
    let mut first = true;
    while !frontier.is_empty() {
        let mut found = Vec::new();
        for (rev, list) in [(false, &query.include), (true, &query.revinclude)] {
            for inc in list.iter().filter(|i| first || i.iterate) {
                for chunk in frontier.chunks(500) {
                    let sql = include_sql(exec.dialect(), inc, rev, chunk, access);
                    for row in exec.fetch(&sql, &[Col::Int]).await? {
                        if let Some(rid) = row.first().and_then(Val::as_int)
                            && seen.insert(rid)
                        {
                            found.push(rid);
                        }
                    }
                }
            }
        }
        first = false;
        out.extend(found.iter().copied());
        if out.len() >= MAX_INCLUDED {
            out.truncate(MAX_INCLUDED);
            return Ok((out, true));
        }
        frontier = found;
    }
    Ok((out, false))
}

fn include_sql(dialect: crate::Dialect, inc: &Include, rev: bool, from: &[i64], access: &Access) -> crate::Sql {
    let mut b = Builder::new(dialect);
    b.push(if rev { "SELECT DISTINCT a.rid" } else { "SELECT DISTINCT t.rid" });
    // Driven from the resources already found: their references (forward) through the
    // `(rid, param)` index, or the references to them (reverse) through the target index.
    if rev {
        b.push(" FROM resources t");
        b.ordered_join().push("search_reference a").indexed_by("search_reference_target");
    } else {
        b.push(" FROM search_reference a").indexed_by("search_reference_rid");
        b.ordered_join().push("resources t");
    }
    b.push(" ON t.res_type = a.target_type AND t.res_id = a.target_id WHERE a.grp = 0 AND t.deleted = FALSE AND ");
    b.push(if rev { "t.rid IN " } else { "a.rid IN " }).int_list(from);
    if let Some(s) = &inc.source_type {
        b.push(" AND a.res_type = ").text(s);
    }
    if let Some(p) = &inc.param {
        b.push(" AND a.param = ").text(p);
    }
    if let Some(t) = &inc.target_type {
        b.push(" AND a.target_type = ").text(t);
    }
    if !access.is_unrestricted() {
        // Only what the caller may read is ever included.
        b.push(if rev {
            " AND a.rid IN (SELECT r.rid FROM resources r WHERE r.deleted = FALSE"
        } else {
            " AND t.rid IN (SELECT r.rid FROM resources r WHERE r.deleted = FALSE"
        });
        crate::access::restrict(&mut b, "r", access, Op::Read, None);
        b.push(")");
    }
    b.finish()
}

const VERSION_COLS: [Col; 7] = [Col::Int, Col::Text, Col::Text, Col::Int, Col::Int, Col::Text, Col::Text];

/// The current versions of `rids`, in the order given.
pub(crate) async fn load(exec: &mut dyn Exec, rids: &[i64]) -> Result<Vec<Version>, StoreError> {
    Ok(load_with_rids(exec, rids).await?.into_iter().map(|(_, v)| v).collect())
}

/// The current versions of `rids` with their `rid`s, in the order given.
pub(crate) async fn load_with_rids(exec: &mut dyn Exec, rids: &[i64]) -> Result<Vec<(i64, Version)>, StoreError> {
    let mut by_rid = std::collections::HashMap::with_capacity(rids.len());
    for chunk in rids.chunks(500) {
        let mut b = Builder::new(exec.dialect());
        b.push(
            "SELECT r.rid, v.res_type, v.res_id, v.version, v.last_updated, v.method, v.body \
             FROM resources r JOIN resource_versions v ON v.seq = r.seq WHERE r.rid IN ",
        )
        .int_list(chunk);
        for row in exec.fetch(&b.finish(), &VERSION_COLS).await? {
            let (rid, version) = decode(row)?;
            by_rid.insert(rid, version);
        }
    }
    let (found, mut versions): (Vec<i64>, Vec<Version>) =
        rids.iter().filter_map(|r| by_rid.remove(r).map(|v| (*r, v))).unzip();
    // Bodies sealed by the backend (PostgreSQL with a key) are opened here, for every path that
    // loads versions through shared SQL: search, includes, conditional matches, $everything, export.
    if let Some(cipher) = exec.bodies() {
        crate::crypt::reveal(exec, &cipher, &mut versions).await?;
    }
    Ok(found.into_iter().zip(versions).collect())
}

fn decode(row: Vec<Val>) -> Result<(i64, Version), StoreError> {
    let corrupt = || StoreError::Corrupt("unexpected search row".into());
    let mut it = row.into_iter();
    let mut next = || it.next().ok_or_else(corrupt);
    let rid = next()?.as_int().ok_or_else(corrupt)?;
    let resource_type = next()?.as_text().ok_or_else(corrupt)?.to_owned();
    let id = next()?.as_text().ok_or_else(corrupt)?.to_owned();
    let version_id = u64::try_from(next()?.as_int().ok_or_else(corrupt)?).map_err(|_| corrupt())?;
    let ms = next()?.as_int().ok_or_else(corrupt)?;
    let last_updated = DateTime::from_timestamp_millis(ms).ok_or_else(corrupt)?;
    let method = next()?.as_text().and_then(Method::parse).ok_or_else(corrupt)?;
    let body = match next()? {
        Val::Text(body) => body.map(Arc::from),
        _ => return Err(corrupt()),
    };
    Ok((rid, Version { resource_type, id, version_id, last_updated, method, body }))
}
