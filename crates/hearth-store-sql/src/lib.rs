//! The SQL both storage backends share: the search index tables' rows, the compiler from a
//! [`hearth_search::SearchQuery`] to SQL, and the search executor (paging, totals, includes).
//!
//! The two backends have the same schema (see their `migrations/`), so search is written once,
//! here, against [`Exec`]: a backend supplies only "run this statement with these values" for its
//! connection type. SQL text is generated with bound values only (never interpolated data), in
//! the [`Dialect`] of the backend.
//!
//! # Index tables
//! One table per index value type, each row `(rid, res_type, param, grp, …typed columns)` where
//! `rid` is the resource's integer key in `resources`, `param` the search parameter code and
//! `grp` 0 for plain values. A composite value is stored as its components, each in its own
//! type's table under the parameter code `code$i` (`i` = component position) with the same
//! `grp` > 0, so a composite test is a join of component rows of one group. `_id` and
//! `_lastUpdated` are answered from `resources` itself and have no rows. Rows exist only for the
//! current, live version of a resource: every write replaces them, a delete removes them.
//!
//! See `docs/ARCHITECTURE.md` ("Search") for the index design and the query shapes.

#![forbid(unsafe_code)]

mod access;
pub mod alarms;
pub mod audit;
pub mod backup;
mod compile;
pub mod crypt;
mod cursor;
pub mod documents;
pub mod emergency;
pub mod erase;
mod export;
pub mod identity;
mod index;
pub mod intake;
pub mod journal;
pub mod medication;
pub mod mfa;
pub mod notify;
pub mod oauth;
pub mod registry;
pub mod scheduling;
mod search;
pub mod selfcare;
pub mod telehealth;
pub mod wellness;

use async_trait::async_trait;
use hearth_store::StoreError;

pub use access::in_reach;
pub use export::{
    everything, export_job, export_job_claim, export_job_create, export_job_delete, export_job_finish,
    export_job_heartbeat, export_job_outstanding, export_scan,
};
pub use identity::{Db, DbTx};
pub use index::{PendingIndex, delete_index, insert_index, insert_index_many};
pub use search::{explain, find, search};

/// The SQL dialect of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A bound value, and a decoded column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Int(Option<i64>),
    Real(Option<f64>),
    Text(Option<String>),
}

impl Val {
    pub fn text(s: impl Into<String>) -> Val {
        Val::Text(Some(s.into()))
    }
    pub fn int(v: i64) -> Val {
        Val::Int(Some(v))
    }
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Val::Int(v) => *v,
            _ => None,
        }
    }
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Val::Text(v) => v.as_deref(),
            _ => None,
        }
    }
    fn is_null(&self) -> bool {
        matches!(self, Val::Int(None) | Val::Real(None) | Val::Text(None))
    }
}

/// The type of a result column, so a backend decodes it without knowing the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Col {
    Int,
    Real,
    Text,
}

/// One SQL statement with its bound values, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Sql {
    pub text: String,
    pub binds: Vec<Val>,
}

/// Builds SQL text and its binds together, numbering placeholders for the dialect.
#[derive(Debug)]
pub(crate) struct Builder {
    dialect: Dialect,
    text: String,
    binds: Vec<Val>,
}

impl Builder {
    pub(crate) fn new(dialect: Dialect) -> Builder {
        Builder { dialect, text: String::with_capacity(256), binds: Vec::new() }
    }

    pub(crate) fn push(&mut self, sql: &str) -> &mut Self {
        self.text.push_str(sql);
        self
    }

    pub(crate) fn bind(&mut self, v: Val) -> &mut Self {
        self.binds.push(v);
        match self.dialect {
            Dialect::Sqlite => self.text.push('?'),
            Dialect::Postgres => {
                self.text.push('$');
                self.text.push_str(&self.binds.len().to_string());
            }
        }
        self
    }

    pub(crate) fn text(&mut self, s: &str) -> &mut Self {
        self.bind(Val::text(s))
    }

    pub(crate) fn int(&mut self, v: i64) -> &mut Self {
        self.bind(Val::int(v))
    }

    pub(crate) fn real(&mut self, v: f64) -> &mut Self {
        self.bind(Val::Real(Some(v)))
    }

    /// `(?, ?, …)` of text values; `(NULL)` for none (matches nothing).
    pub(crate) fn text_list<'a>(&mut self, values: impl IntoIterator<Item = &'a str>) -> &mut Self {
        self.push("(");
        let mut first = true;
        for v in values {
            if !first {
                self.push(", ");
            }
            first = false;
            self.text(v);
        }
        if first {
            self.push("NULL");
        }
        self.push(")")
    }

    pub(crate) fn int_list(&mut self, values: &[i64]) -> &mut Self {
        self.push("(");
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.int(*v);
        }
        if values.is_empty() {
            self.push("NULL");
        }
        self.push(")")
    }

    /// `(SELECT value FROM json_each(?))` on SQLite, `(SELECT jsonb_array_elements_text(…))` on
    /// PostgreSQL: the set of `values`, bound as one JSON array. A long `IN` list compiled this
    /// way costs one bind and no expression depth (SQLite limits both), whatever its length.
    pub(crate) fn json_set<'a>(&mut self, values: impl IntoIterator<Item = &'a str>) -> &mut Self {
        let array = serde_json::Value::Array(values.into_iter().map(serde_json::Value::from).collect());
        match self.dialect {
            Dialect::Sqlite => self.push("(SELECT value FROM json_each(").text(&array.to_string()).push("))"),
            Dialect::Postgres => self
                .push("(SELECT jsonb_array_elements_text(CAST(CAST(")
                .text(&array.to_string())
                .push(" AS text) AS jsonb)))"),
        }
    }

    /// `position of needle in haystack > 0`, case-sensitive.
    pub(crate) fn contains(&mut self, haystack: &str, needle: &str) -> &mut Self {
        match self.dialect {
            Dialect::Sqlite => self.push("instr(").push(haystack).push(", ").text(needle).push(") > 0"),
            Dialect::Postgres => self.push("strpos(").push(haystack).push(", ").text(needle).push(") > 0"),
        }
    }

    /// ` INDEXED BY <index>` on SQLite, whose planner (without statistics) may otherwise pick a
    /// value index where the named one is right; nothing on PostgreSQL, whose planner has them.
    pub(crate) fn indexed_by(&mut self, index: &str) -> &mut Self {
        match self.dialect {
            Dialect::Sqlite => self.push(" INDEXED BY ").push(index),
            Dialect::Postgres => self,
        }
    }

    /// A column reference the planner must not answer through an index (SQLite's unary `+`);
    /// unchanged on PostgreSQL.
    pub(crate) fn unindexed(&self, column: &str) -> String {
        match self.dialect {
            Dialect::Sqlite => format!("+{column}"),
            Dialect::Postgres => column.to_owned(),
        }
    }

    /// An inner join that keeps the written table first in the loop on SQLite (`CROSS JOIN`);
    /// a plain `JOIN` on PostgreSQL, whose planner orders joins by cost.
    pub(crate) fn ordered_join(&mut self) -> &mut Self {
        match self.dialect {
            Dialect::Sqlite => self.push(" CROSS JOIN "),
            Dialect::Postgres => self.push(" JOIN "),
        }
    }

    pub(crate) fn finish(self) -> Sql {
        Sql { text: self.text, binds: self.binds }
    }
}

/// What a backend provides to run shared SQL on one of its connections (or transactions).
#[async_trait]
pub trait Exec: Send {
    fn dialect(&self) -> Dialect;

    /// Runs a query and decodes every row's columns as `cols` says.
    async fn fetch(&mut self, sql: &Sql, cols: &[Col]) -> Result<Vec<Vec<Val>>, StoreError>;

    /// Runs a statement that returns no rows.
    async fn execute(&mut self, sql: &Sql) -> Result<(), StoreError>;

    /// The cipher of resource bodies when the backend seals them (PostgreSQL with a key);
    /// loaded versions are opened with it.
    fn bodies(&self) -> Option<std::sync::Arc<crypt::BodyCipher>> {
        None
    }
}

/// A search request the store cannot answer (bad cursor, a test that needs terminology the
/// caller did not resolve): the caller's fault, answered with 400.
pub(crate) fn invalid(msg: impl Into<String>) -> StoreError {
    StoreError::InvalidSearch(msg.into())
}
