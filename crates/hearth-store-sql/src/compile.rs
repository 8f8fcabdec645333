//! [`SearchQuery`] → SQL over the index tables.
//!
//! Every clause is a set of resource keys (`rid`s) found in one index table through its B-tree
//! (`res_type, param, value` first), or a probe of the same table's `(rid, param)` index for
//! one resource. One set drives the query (see [`filter`]); the other clauses are probes of its
//! candidates. A chain or `_has` hop is a join through `search_reference` to the set of the next
//! level. So the work of a selective query grows with its matches, not with the number of
//! stored resources.

use hearth_search::{
    ComponentValue, CompositeValue, DateValue, Hop, ParamType, Prefix, QuantityValue, ReferenceValue, SortKey, Test,
    TokenSystem, TokenValue,
};
use hearth_store::{Access, Compartment, Op, StoreError};

use crate::index::{clip, is_full_text};
use crate::{Builder, Col, invalid};

/// The upper bound of a prefix range: every string starting with `v` sorts below it (byte-wise
/// in SQLite's BINARY and PostgreSQL's "C" collations).
fn prefix_end(v: &str) -> String {
    let mut s = clip(v).to_owned();
    s.push('\u{10FFFF}');
    s
}

fn table_of(kind: ParamType, param: &str) -> Result<&'static str, StoreError> {
    Ok(match kind {
        ParamType::String if is_full_text(param) => "search_text",
        ParamType::String => "search_string",
        ParamType::Token => "search_token",
        ParamType::Reference => "search_reference",
        ParamType::Date => "search_date",
        ParamType::Number => "search_number",
        ParamType::Quantity => "search_quantity",
        ParamType::Uri => "search_uri",
        ParamType::Special if param == "near" => "search_position",
        ParamType::Composite | ParamType::Special => {
            return Err(invalid(format!("parameter '{param}' cannot be searched this way")));
        }
    })
}

fn is_negative(test: &Test) -> bool {
    matches!(test, Test::Missing(true) | Test::NotToken(_) | Test::NotIn(_))
}

/// The resource types a set is restricted to; `None` = every type (system search without `_type`).
pub(crate) type Types<'a> = Option<&'a [String]>;

fn restrict_types(b: &mut Builder, column: &str, types: Types<'_>) {
    if let Some(types) = types {
        b.push(" AND ").push(column).push(" IN ").text_list(types.iter().map(String::as_str));
    }
}

/// How well a clause narrows the result before anything is known about the data; the lowest
/// ranked positive clause drives the query. `None`: the clause cannot drive (a negative test).
fn rank(clause: &hearth_search::Clause) -> Option<u8> {
    if !clause.path.is_empty() {
        // A chain or `_has` resolves its far end first; a name or an id there is a few rows.
        return Some(2);
    }
    Some(match &clause.test {
        Test::Missing(true) | Test::NotToken(_) | Test::NotIn(_) => return None,
        Test::Token(_) if clause.param == "_id" => 0,
        Test::Reference { .. } | Test::ReferenceIdentifier(_) => 1,
        Test::Exact(_) | Test::Uri(_) | Test::OfType(_) => 3,
        Test::Token(vs) if vs.iter().all(|v| v.code.is_some() && matches!(v.system, TokenSystem::Is(_))) => 3,
        Test::StartsWith(_) | Test::Contains(_) | Test::Token(_) | Test::TokenText(_) | Test::Text(_) => 4,
        Test::List(_) => 4,
        Test::Missing(false) => 6,
        _ => 5,
    })
}

/// The clauses that could drive a query, with their [`rank`]: positive tests on the resource
/// itself (not chains). When there are two or more, the search counts each one's set up to a
/// cap ([`capped_count`]) and drives from the smallest: the ranks cannot know that one
/// patient has 100,000 Observations while a code has none (a self-care patient's latest
/// reading of a kind looked at every reading of the patient).
pub(crate) fn driver_candidates(clauses: &[hearth_search::Clause]) -> Vec<(usize, u8)> {
    clauses
        .iter()
        .enumerate()
        .filter(|(_, c)| c.path.is_empty())
        .filter_map(|(i, c)| rank(c).filter(|&r| r <= 5).map(|r| (i, r)))
        .collect()
}

/// `SELECT COUNT(*)` of at most `cap` rows of the driving set of `clause`.
pub(crate) fn capped_count(
    dialect: crate::Dialect,
    types: Types<'_>,
    clause: &hearth_search::Clause,
    cap: i64,
) -> Result<crate::Sql, StoreError> {
    let mut b = Builder::new(dialect);
    b.push("SELECT COUNT(*) FROM (");
    set(&mut b, types, &clause.path, &clause.param, clause.kind, &clause.test, None)?;
    b.push(" LIMIT ").int(cap).push(") n");
    Ok(b.finish())
}

/// Writes the WHERE conditions (after `WHERE`) selecting live resources `r` of `types` that
/// satisfy every clause and lie in the compartment.
///
/// The plan: one set drives — the compartment if there is one, else the best [`rank`]ed clause —
/// as `r.rid IN (<its rids>)`, found through a value index; every other clause is a correlated
/// `EXISTS` / `NOT EXISTS` probe of the `(rid, param)` index for each candidate. So the work
/// follows the driving set (one patient's observations, the patients with one name), never the
/// size of a broad clause's set (every vital sign) or of the database.
pub(crate) fn filter(
    b: &mut Builder,
    types: Types<'_>,
    clauses: &[hearth_search::Clause],
    compartment: Option<&Compartment>,
    access: &Access,
) -> Result<(), StoreError> {
    filter_driven(b, types, clauses, compartment, access, None)
}

/// [`filter`] with the driving clause chosen by the caller (see [`driver_candidates`]) instead
/// of by [`rank`] alone.
pub(crate) fn filter_driven(
    b: &mut Builder,
    types: Types<'_>,
    clauses: &[hearth_search::Clause],
    compartment: Option<&Compartment>,
    access: &Access,
    chosen: Option<usize>,
) -> Result<(), StoreError> {
    let driver = match compartment {
        Some(_) => None,
        None => chosen
            .filter(|&i| i < clauses.len())
            .or_else(|| clauses.iter().enumerate().filter_map(|(i, c)| rank(c).map(|r| (r, i))).min().map(|(_, i)| i)),
    };
    b.push("r.deleted = FALSE");
    if driver.is_some() || compartment.is_some() {
        // The driving set's rids are looked up by primary key; the type is then a check, not
        // a scan of every resource of the type through its index.
        let column = b.unindexed("r.res_type");
        restrict_types(b, &column, types);
    } else {
        restrict_types(b, "r.res_type", types);
    }
    crate::access::restrict(b, "r", access, Op::Search, types);
    if let Some(c) = compartment {
        b.push(" AND r.rid IN (SELECT a.rid FROM search_reference a WHERE a.target_type = ")
            .text(&c.owner_type)
            .push(" AND a.target_id = ")
            .text(&c.owner_id)
            .push(" AND a.grp = 0 AND (");
        for (i, (ty, params)) in c.params.iter().enumerate() {
            if i > 0 {
                b.push(" OR ");
            }
            b.push("(a.res_type = ").text(ty).push(" AND a.param IN ").text_list(params.iter().map(String::as_str));
            b.push(")");
        }
        if c.params.is_empty() {
            b.push("1 = 0");
        }
        b.push("))");
    }
    for (i, clause) in clauses.iter().enumerate() {
        if driver == Some(i) {
            b.push(" AND r.rid IN (");
            set(b, types, &clause.path, &clause.param, clause.kind, &clause.test, None)?;
        } else if clause.path.is_empty() && is_negative(&clause.test) {
            b.push(" AND NOT EXISTS (");
            positive(b, types, &clause.param, clause.kind, &clause.test, Some("r.rid"))?;
        } else {
            b.push(" AND EXISTS (");
            set(b, types, &clause.path, &clause.param, clause.kind, &clause.test, Some("r.rid"))?;
        }
        b.push(")");
    }
    Ok(())
}

/// A subquery of the `rid`s of live resources of `types` for which the clause holds. With
/// `outer` (a correlated probe) only the row whose `rid` is `outer` is looked at, through the
/// `(rid, param)` indexes.
fn set(
    b: &mut Builder,
    types: Types<'_>,
    path: &[Hop],
    param: &str,
    kind: ParamType,
    test: &Test,
    outer: Option<&str>,
) -> Result<(), StoreError> {
    match path.split_first() {
        None if is_negative(test) => {
            b.push("SELECT x.rid FROM resources x WHERE x.deleted = FALSE");
            if let Some(o) = outer {
                b.push(" AND x.rid = ").push(o);
            }
            restrict_types(b, "x.res_type", types);
            b.push(" AND x.rid NOT IN (");
            positive(b, types, param, kind, test, None)?;
            b.push(")");
        }
        None => positive(b, types, param, kind, test, outer)?,
        Some((Hop::Chain { param: link, target_types }, rest)) => {
            // Driving: the far end's few resources first, then the references to them.
            // Probing: this resource's references, then whether their targets are in the set.
            match outer {
                None => {
                    b.push("SELECT c.rid FROM resources t");
                    b.ordered_join();
                    b.push("search_reference c ON c.target_type = t.res_type AND c.target_id = t.res_id WHERE ");
                }
                Some(o) => {
                    b.push("SELECT c.rid FROM search_reference c").indexed_by("search_reference_rid");
                    b.ordered_join();
                    b.push("resources t ON t.res_type = c.target_type AND t.res_id = c.target_id WHERE c.rid = ");
                    b.push(o).push(" AND ");
                }
            }
            b.push("c.param = ").text(link).push(" AND c.grp = 0");
            restrict_types(b, "c.res_type", types);
            b.push(" AND t.rid IN (");
            set(b, Some(target_types), rest, param, kind, test, None)?;
            b.push(")");
        }
        Some((Hop::Has { source_type, param: link }, rest)) => {
            b.push(
                "SELECT t.rid FROM search_reference c JOIN resources t \
                 ON t.res_type = c.target_type AND t.res_id = c.target_id WHERE c.res_type = ",
            )
            .text(source_type)
            .push(" AND c.param = ")
            .text(link)
            .push(" AND c.grp = 0");
            if let Some(o) = outer {
                b.push(" AND t.rid = ").push(o);
            }
            restrict_types(b, "t.res_type", types);
            b.push(" AND c.rid IN (");
            set(b, Some(std::slice::from_ref(source_type)), rest, param, kind, test, None)?;
            b.push(")");
        }
    }
    Ok(())
}

/// `SELECT a.rid FROM <table> a WHERE a.param = … AND a.grp = 0 AND a.res_type IN …`, through
/// the `(rid, param)` index for row `outer` when given.
fn rows_of(b: &mut Builder, table: &str, types: Types<'_>, param: &str, outer: Option<&str>) {
    b.push("SELECT a.rid FROM ").push(table).push(" a");
    if let Some(o) = outer {
        b.indexed_by(&format!("{table}_rid")).push(" WHERE a.rid = ").push(o).push(" AND");
    } else {
        b.push(" WHERE");
    }
    b.push(" a.param = ").text(param).push(" AND a.grp = 0");
    restrict_types(b, "a.res_type", types);
}

/// ` AND (…)`: the values' conditions OR-ed as a balanced tree, so a long list nests
/// `log2(n)` deep, not `n` (SQLite refuses expressions nested over 1,000 deep).
fn or_each<T>(
    b: &mut Builder,
    values: &[T],
    mut each: impl FnMut(&mut Builder, &T) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    b.push(" AND ");
    if values.is_empty() {
        b.push("(1 = 0)");
        return Ok(());
    }
    or_tree(b, values, &mut each)
}

fn or_tree<T>(
    b: &mut Builder,
    values: &[T],
    each: &mut impl FnMut(&mut Builder, &T) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    b.push("(");
    match values {
        [one] => each(b, one)?,
        _ => {
            let (left, right) = values.split_at(values.len() / 2);
            or_tree(b, left, each)?;
            b.push(" OR ");
            or_tree(b, right, each)?;
        }
    }
    b.push(")");
    Ok(())
}

/// From this many values on, a list of plain codes or ids is matched as `IN (<JSON set>)`
/// (one bind, one index lookup per value) rather than OR-ed conditions.
const SET_FROM: usize = 8;

/// ` AND (…)` matching token values: codes without a system (or with the same one) grouped into
/// one `IN` set each once there are [`SET_FROM`] of them, the rest OR-ed.
fn tokens(b: &mut Builder, sys: &str, code: &str, values: &[TokenValue]) -> Result<(), StoreError> {
    if values.len() < SET_FROM {
        return or_each(b, values, |b, v| {
            token(b, sys, code, v);
            Ok(())
        });
    }
    // Groups by system (Any / Absent / Is(s)), in order of first appearance.
    let mut groups: Vec<(&TokenSystem, Vec<&str>)> = Vec::new();
    let mut rest: Vec<&TokenValue> = Vec::new();
    for v in values {
        match &v.code {
            Some(c) => match groups.iter_mut().find(|(s, _)| *s == &v.system) {
                Some((_, codes)) => codes.push(clip(c)),
                None => groups.push((&v.system, vec![clip(c)])),
            },
            None => rest.push(v),
        }
    }
    enum Part<'a> {
        Set(&'a TokenSystem, &'a [&'a str]),
        One(&'a TokenValue),
    }
    let parts: Vec<Part<'_>> =
        groups.iter().map(|(s, codes)| Part::Set(s, codes)).chain(rest.iter().map(|v| Part::One(v))).collect();
    or_each(b, &parts, |b, part| {
        match part {
            Part::Set(system, codes) => {
                b.push(code).push(" IN ").json_set(codes.iter().copied());
                match system {
                    TokenSystem::Any => {}
                    TokenSystem::Absent => {
                        b.push(" AND ").push(sys).push(" IS NULL");
                    }
                    TokenSystem::Is(s) => {
                        b.push(" AND ").push(sys).push(" = ").text(clip(s));
                    }
                }
            }
            Part::One(v) => token(b, sys, code, v),
        }
        Ok(())
    })
}

/// A `near` value on `search_position a`: the bounding box first (a range of the
/// `(res_type, param, lat, lon)` index), then the exact great-circle test on the stored unit
/// vector, which is arithmetic only (see `hearth_search::geo`).
fn near(b: &mut Builder, v: &hearth_search::geo::NearValue) {
    let bounds = v.bounds();
    b.push("a.lat BETWEEN ").real(bounds.lat.0).push(" AND ").real(bounds.lat.1);
    if let Some((west, east)) = bounds.lon {
        b.push(" AND a.lon BETWEEN ").real(west).push(" AND ").real(east);
    }
    let [x, y, z] = hearth_search::geo::unit_vector(v.lat, v.lon);
    b.push(" AND ((a.x - ").real(x).push(") * (a.x - ").real(x).push(") + (a.y - ").real(y);
    b.push(") * (a.y - ").real(y).push(") + (a.z - ").real(z).push(") * (a.z - ").real(z).push(")) <= ");
    b.real(v.chord2());
}

/// The positive form of a test: the `rid`s with at least one matching index row (for negative
/// tests, the rows they exclude).
fn positive(
    b: &mut Builder,
    types: Types<'_>,
    param: &str,
    kind: ParamType,
    test: &Test,
    outer: Option<&str>,
) -> Result<(), StoreError> {
    if param == "_id" || param == "_lastUpdated" {
        return builtin(b, types, param, test, outer);
    }
    match test {
        Test::Missing(_) => {
            if kind == ParamType::Composite {
                let first = format!("{param}$0");
                for (i, table) in crate::index::TABLES.iter().enumerate() {
                    if i > 0 {
                        b.push(" UNION ");
                    }
                    b.push("SELECT a.rid FROM ").push(table).push(" a");
                    if let Some(o) = outer {
                        b.indexed_by(&format!("{table}_rid")).push(" WHERE a.rid = ").push(o).push(" AND");
                    } else {
                        b.push(" WHERE");
                    }
                    b.push(" a.param = ").text(&first);
                    restrict_types(b, "a.res_type", types);
                }
            } else {
                rows_of(b, table_of(kind, param)?, types, param, outer);
            }
        }
        Test::StartsWith(vs) => {
            rows_of(b, "search_string", types, param, outer);
            or_each(b, vs, |b, v| {
                starts_with(b, "a.norm", v);
                Ok(())
            })?;
        }
        Test::Contains(vs) => {
            rows_of(b, "search_string", types, param, outer);
            or_each(b, vs, |b, v| {
                b.contains("a.norm", clip(v));
                Ok(())
            })?;
        }
        Test::Exact(vs) => {
            rows_of(b, "search_string", types, param, outer);
            or_each(b, vs, |b, v| {
                b.push("a.exact = ").text(v);
                Ok(())
            })?;
        }
        Test::Token(vs) | Test::NotToken(vs) => {
            rows_of(b, "search_token", types, param, outer);
            tokens(b, "a.system", "a.code", vs)?;
        }
        Test::TokenText(vs) => {
            rows_of(b, "search_token", types, param, outer);
            or_each(b, vs, |b, v| {
                starts_with(b, "a.text", v);
                Ok(())
            })?;
        }
        Test::OfType(vs) => {
            rows_of(b, "search_token", types, param, outer);
            or_each(b, vs, |b, v| {
                b.push("a.type_code = ").text(clip(&v.type_code));
                match &v.type_system {
                    Some(s) => b.push(" AND a.type_system = ").text(clip(s)),
                    None => b.push(" AND a.type_system IS NULL"),
                };
                b.push(" AND a.code = ").text(clip(&v.value));
                Ok(())
            })?;
        }
        Test::Reference { type_modifier, values } => {
            rows_of(b, "search_reference", types, param, outer);
            if let Some(t) = type_modifier {
                b.push(" AND a.target_type = ").text(t);
            }
            or_each(b, values, |b, v| {
                reference(b, "a", v);
                Ok(())
            })?;
        }
        Test::ReferenceIdentifier(vs) => {
            rows_of(b, "search_reference", types, param, outer);
            or_each(b, vs, |b, v| {
                token(b, "a.id_system", "a.id_value", v);
                Ok(())
            })?;
        }
        Test::Date(vs) => {
            rows_of(b, "search_date", types, param, outer);
            or_each(b, vs, |b, v| {
                date(b, "a.start_ms", "a.end_ms", v);
                Ok(())
            })?;
        }
        Test::Number(vs) => {
            rows_of(b, "search_number", types, param, outer);
            or_each(b, vs, |b, v| {
                range(b, "a.low", "a.high", v.prefix, v.low, v.high);
                Ok(())
            })?;
        }
        Test::Quantity(vs) => {
            rows_of(b, "search_quantity", types, param, outer);
            or_each(b, vs, |b, v| {
                quantity(b, "a", v);
                Ok(())
            })?;
        }
        Test::Uri(vs) => {
            rows_of(b, "search_uri", types, param, outer);
            or_each(b, vs, |b, v| {
                b.push("a.value = ").text(clip(v));
                Ok(())
            })?;
        }
        Test::UriBelow(vs) => {
            rows_of(b, "search_uri", types, param, outer);
            or_each(b, vs, |b, v| {
                starts_with(b, "a.value", v);
                Ok(())
            })?;
        }
        Test::UriAbove(vs) => {
            rows_of(b, "search_uri", types, param, outer);
            or_each(b, vs, |b, v| {
                b.push("substr(").text(v).push(", 1, length(a.value)) = a.value");
                Ok(())
            })?;
        }
        Test::Text(vs) => {
            rows_of(b, "search_text", types, param, outer);
            or_each(b, vs, |b, words| {
                for (i, w) in words.iter().enumerate() {
                    if i > 0 {
                        b.push(" AND ");
                    }
                    b.contains("a.content", w);
                }
                if words.is_empty() {
                    b.push("1 = 1");
                }
                Ok(())
            })?;
        }
        Test::Composite(vs) => composite(b, types, param, vs, outer)?,
        Test::Near(vs) => {
            rows_of(b, "search_position", types, param, outer);
            or_each(b, vs, |b, v| {
                near(b, v);
                Ok(())
            })?;
        }
        Test::List(ids) => {
            b.push(
                "SELECT t.rid FROM search_reference a JOIN resources l ON l.rid = a.rid \
                 JOIN resources t ON t.res_type = a.target_type AND t.res_id = a.target_id \
                 WHERE a.res_type = 'List' AND a.param = 'item' AND a.grp = 0 AND l.res_id IN ",
            )
            .text_list(ids.iter().map(String::as_str));
            if let Some(o) = outer {
                b.push(" AND t.rid = ").push(o);
            }
            restrict_types(b, "t.res_type", types);
        }
        Test::In(_)
        | Test::NotIn(_)
        | Test::TokenAbove(_)
        | Test::TokenBelow(_)
        | Test::ReferenceAbove(_)
        | Test::ReferenceBelow(_) => {
            return Err(invalid(format!(
                "the modifier on '{param}' needs terminology or hierarchy resolution the store does not do"
            )));
        }
    }
    Ok(())
}

/// `_id` and `_lastUpdated`, answered from `resources`.
fn builtin(b: &mut Builder, types: Types<'_>, param: &str, test: &Test, outer: Option<&str>) -> Result<(), StoreError> {
    b.push("SELECT a.rid FROM resources a WHERE a.deleted = FALSE");
    if let Some(o) = outer {
        b.push(" AND a.rid = ").push(o);
    }
    restrict_types(b, "a.res_type", types);
    match (param, test) {
        (_, Test::Missing(_)) => {}
        ("_id", Test::Token(vs) | Test::NotToken(vs)) if vs.len() >= SET_FROM => {
            // An id has no system: `|id` and `id` name it, `system|…` never matches.
            let ids = vs.iter().filter_map(|v| match (&v.system, &v.code) {
                (TokenSystem::Any | TokenSystem::Absent, Some(code)) => Some(code.as_str()),
                _ => None,
            });
            b.push(" AND a.res_id IN ").json_set(ids);
        }
        ("_id", Test::Token(vs) | Test::NotToken(vs)) => {
            or_each(b, vs, |b, v| {
                match (&v.system, &v.code) {
                    (TokenSystem::Any | TokenSystem::Absent, Some(code)) => b.push("a.res_id = ").text(code),
                    _ => b.push("1 = 0"),
                };
                Ok(())
            })?;
        }
        ("_lastUpdated", Test::Date(vs)) => {
            or_each(b, vs, |b, v| {
                date(b, "a.last_updated", "a.last_updated", v);
                Ok(())
            })?;
        }
        _ => return Err(invalid(format!("this modifier is not supported on '{param}'"))),
    }
    Ok(())
}

fn starts_with(b: &mut Builder, col: &str, v: &str) {
    b.push(col).push(" >= ").text(clip(v)).push(" AND ").push(col).push(" < ").text(&prefix_end(v));
}

fn token(b: &mut Builder, sys: &str, code: &str, v: &TokenValue) {
    match &v.code {
        Some(c) => b.push(code).push(" = ").text(clip(c)),
        None => b.push(code).push(" IS NOT NULL"),
    };
    match &v.system {
        TokenSystem::Any => {}
        TokenSystem::Absent => {
            b.push(" AND ").push(sys).push(" IS NULL");
        }
        TokenSystem::Is(s) => {
            b.push(" AND ").push(sys).push(" = ").text(clip(s));
        }
    }
}

fn reference(b: &mut Builder, a: &str, v: &ReferenceValue) {
    let version = match v {
        ReferenceValue::Local { target_type, id, version } => {
            b.push(a).push(".target_id = ").text(clip(id));
            if let Some(t) = target_type {
                b.push(" AND ").push(a).push(".target_type = ").text(t);
            }
            version
        }
        ReferenceValue::Url { url, version } => {
            b.push(a).push(".url = ").text(clip(url));
            version
        }
    };
    if let Some(ver) = version {
        b.push(" AND ").push(a).push(".version = ").text(clip(ver));
    }
}

/// The date table of [`DateValue`] over columns `s`/`e`.
fn date(b: &mut Builder, s: &str, e: &str, v: &DateValue) {
    let eq = |b: &mut Builder| {
        b.push(s).push(" >= ").int(v.start).push(" AND ").push(e).push(" <= ").int(v.end);
    };
    match v.prefix {
        Prefix::Eq => eq(b),
        Prefix::Ne => {
            b.push("(").push(s).push(" < ").int(v.start).push(" OR ").push(e).push(" > ").int(v.end).push(")");
        }
        Prefix::Gt => {
            b.push(e).push(" > ").int(v.end);
        }
        Prefix::Lt => {
            b.push(s).push(" < ").int(v.start);
        }
        Prefix::Ge => {
            b.push("(").push(e).push(" > ").int(v.end).push(" OR (");
            eq(b);
            b.push("))");
        }
        Prefix::Le => {
            b.push("(").push(s).push(" < ").int(v.start).push(" OR (");
            eq(b);
            b.push("))");
        }
        Prefix::Sa => {
            b.push(s).push(" > ").int(v.end);
        }
        Prefix::Eb => {
            b.push(e).push(" < ").int(v.start);
        }
        Prefix::Ap => {
            b.push(s).push(" <= ").int(v.end).push(" AND ").push(e).push(" >= ").int(v.start);
        }
    }
}

/// [`hearth_search::range_matches`] over columns `l`/`h` (the entry's half-open range).
fn range(b: &mut Builder, l: &str, h: &str, prefix: Prefix, low: f64, high: f64) {
    // Twice the exact search value, widened by the tolerance: `l + h` is compared with these.
    let (above, below) = hearth_search::exact_bounds(low, high);
    let eq = |b: &mut Builder| {
        b.push(l).push(" >= ").real(low).push(" AND ").push(h).push(" <= ").real(high);
    };
    match prefix {
        Prefix::Eq => eq(b),
        Prefix::Ne => {
            b.push("(").push(l).push(" < ").real(low).push(" OR ").push(h).push(" > ").real(high).push(")");
        }
        // The ordering prefixes compare the entry's value (the middle of its range, `l <= h`)
        // with exactly the search value; the first condition follows from the second and lets
        // an index on the column narrow the rows.
        Prefix::Gt => {
            b.push(h).push(" > ").real(above / 2.0).push(" AND ").push(l).push(" + ").push(h).push(" > ").real(above);
        }
        Prefix::Lt => {
            b.push(l).push(" < ").real(below / 2.0).push(" AND ").push(l).push(" + ").push(h).push(" < ").real(below);
        }
        Prefix::Ge => {
            b.push(h).push(" >= ").real(below / 2.0).push(" AND ").push(l).push(" + ").push(h).push(" >= ").real(below);
        }
        Prefix::Le => {
            b.push(l).push(" <= ").real(above / 2.0).push(" AND ").push(l).push(" + ").push(h).push(" <= ").real(above);
        }
        Prefix::Sa => {
            b.push(l).push(" >= ").real(high);
        }
        Prefix::Eb => {
            b.push(h).push(" <= ").real(low);
        }
        Prefix::Ap => {
            b.push(l).push(" < ").real(high).push(" AND ").push(h).push(" > ").real(low);
        }
    }
}

/// [`QuantityValue::matches`] over a `search_quantity` row aliased `a`.
fn quantity(b: &mut Builder, a: &str, q: &QuantityValue) {
    let col = |c: &str| format!("{a}.{c}");
    let written = |b: &mut Builder| {
        range(b, &col("low"), &col("high"), q.prefix, q.low, q.high);
        if let Some(s) = &q.system {
            b.push(" AND ").push(&col("system")).push(" = ").text(clip(s));
        }
        if let Some(c) = &q.code {
            b.push(" AND (").push(&col("code")).push(" = ").text(clip(c));
            b.push(" OR lower(").push(&col("unit")).push(") = lower(").text(clip(c)).push("))");
        }
    };
    match &q.canonical {
        Some(c) => {
            b.push("((").push(&col("canon_unit")).push(" = ").text(&c.unit).push(" AND ");
            range(b, &col("canon_low"), &col("canon_high"), q.prefix, c.low, c.high);
            b.push(") OR ((").push(&col("canon_unit")).push(" IS NULL OR ").push(&col("canon_unit"));
            b.push(" <> ").text(&c.unit).push(") AND ");
            written(b);
            b.push("))");
        }
        None => written(b),
    }
}

fn component_table(c: &ComponentValue) -> &'static str {
    match c {
        ComponentValue::String(_) => "search_string",
        ComponentValue::Token(_) => "search_token",
        ComponentValue::Reference(_) => "search_reference",
        ComponentValue::Date(_) => "search_date",
        ComponentValue::Number(_) => "search_number",
        ComponentValue::Quantity(_) => "search_quantity",
        ComponentValue::Uri(_) => "search_uri",
    }
}

fn component(b: &mut Builder, a: &str, c: &ComponentValue) {
    let col = |n: &str| format!("{a}.{n}");
    match c {
        ComponentValue::String(v) => starts_with(b, &col("norm"), v),
        ComponentValue::Token(v) => token(b, &col("system"), &col("code"), v),
        ComponentValue::Reference(v) => reference(b, a, v),
        ComponentValue::Date(v) => date(b, &col("start_ms"), &col("end_ms"), v),
        ComponentValue::Number(v) => range(b, &col("low"), &col("high"), v.prefix, v.low, v.high),
        ComponentValue::Quantity(v) => quantity(b, a, v),
        ComponentValue::Uri(v) => {
            b.push(&col("value")).push(" = ").text(clip(v));
        }
    }
}

/// Component rows of one group, joined: `c0` drives, `c1…` join on `(rid, grp)`.
fn composite(
    b: &mut Builder,
    types: Types<'_>,
    param: &str,
    values: &[CompositeValue],
    outer: Option<&str>,
) -> Result<(), StoreError> {
    // The widest value decides how many components are joined; each position's table comes
    // from the first value that has a part there (all values of one parameter agree).
    let width = values.iter().map(|v| v.0.len()).max().unwrap_or(0);
    let mut tables = Vec::with_capacity(width);
    for i in 0..width {
        let table = values.iter().find_map(|v| v.0.get(i)).map(component_table);
        tables.push(table.ok_or_else(|| invalid(format!("empty composite value for '{param}'")))?);
    }
    let Some(first) = tables.first() else {
        return Err(invalid(format!("empty composite value for '{param}'")));
    };
    b.push("SELECT c0.rid FROM ").push(first).push(" c0");
    if outer.is_some() {
        b.indexed_by(&format!("{first}_rid"));
    }
    for (i, table) in tables.iter().enumerate().skip(1) {
        b.push(&format!(" JOIN {table} c{i} ON c{i}.rid = c0.rid AND c{i}.grp = c0.grp AND c{i}.param = "));
        b.text(&format!("{param}${i}"));
    }
    b.push(" WHERE c0.param = ").text(&format!("{param}$0"));
    if let Some(o) = outer {
        b.push(" AND c0.rid = ").push(o);
    }
    restrict_types(b, "c0.res_type", types);
    or_each(b, values, |b, v| {
        for (i, part) in v.0.iter().enumerate() {
            if i > 0 {
                b.push(" AND ");
            }
            component(b, &format!("c{i}"), part);
        }
        Ok(())
    })
}

/// The expression of a sort key for resource `r`, and the type of its value.
pub(crate) fn sort_key(b: &mut Builder, key: &SortKey) -> Result<Col, StoreError> {
    match key.param.as_str() {
        "_id" => {
            b.push("r.res_id");
            return Ok(Col::Text);
        }
        "_lastUpdated" => {
            b.push("r.last_updated");
            return Ok(Col::Int);
        }
        _ => {}
    }
    let agg = if key.descending { "MAX" } else { "MIN" };
    let (table, column, col) = match key.kind {
        ParamType::String => (table_of(key.kind, &key.param)?, "a.norm", Col::Text),
        ParamType::Token => ("search_token", "a.code", Col::Text),
        ParamType::Reference => ("search_reference", "COALESCE(a.target_type || '/' || a.target_id, a.url)", Col::Text),
        ParamType::Date => ("search_date", if key.descending { "a.end_ms" } else { "a.start_ms" }, Col::Int),
        ParamType::Number | ParamType::Quantity => {
            (table_of(key.kind, &key.param)?, if key.descending { "a.high" } else { "a.low" }, Col::Real)
        }
        ParamType::Uri => ("search_uri", "a.value", Col::Text),
        ParamType::Composite | ParamType::Special => {
            return Err(invalid(format!("cannot sort by '{}'", key.param)));
        }
    };
    b.push("(SELECT ").push(agg).push("(").push(column).push(") FROM ").push(table);
    b.push(" a WHERE a.rid = r.rid AND a.param = ").text(&key.param).push(" AND a.grp = 0)");
    Ok(col)
}
