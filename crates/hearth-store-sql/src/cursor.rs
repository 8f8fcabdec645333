//! Paging cursors: the position of a row in result order (its sort key values and `rid`), as an
//! opaque URL-safe string. Keyset paging keeps pages correct while data changes: a page starts
//! after the last row shown, wherever that row's neighbours went.

use serde_json::{Value, json};

use crate::{Col, Val, invalid};
use hearth_store::StoreError;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cursor {
    /// True: the rows after this position (a `next` link); false: the rows before it.
    pub forward: bool,
    pub rid: i64,
    pub keys: Vec<Val>,
}

fn val_json(v: &Val) -> Value {
    match v {
        Val::Int(v) => json!(v),
        Val::Real(v) => json!(v),
        Val::Text(v) => json!(v),
    }
}

impl Cursor {
    pub(crate) fn encode(&self) -> String {
        let keys: Vec<Value> = self.keys.iter().map(val_json).collect();
        let text = json!([if self.forward { "n" } else { "p" }, self.rid, keys]).to_string();
        let mut out = String::with_capacity(text.len() * 2);
        for b in text.bytes() {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    /// Decodes a cursor made for a query whose sort keys have the types `cols`.
    pub(crate) fn decode(s: &str, cols: &[Col]) -> Result<Cursor, StoreError> {
        let bad = || invalid("the paging cursor is not valid for this search (start again from the first page)");
        let bytes: Vec<u8> = (0..s.len())
            .step_by(2)
            .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect::<Option<_>>()
            .ok_or_else(bad)?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        let Some([dir, rid, Value::Array(keys)]) = value.as_array().map(Vec::as_slice) else { return Err(bad()) };
        let forward = match dir.as_str() {
            Some("n") => true,
            Some("p") => false,
            _ => return Err(bad()),
        };
        let rid = rid.as_i64().ok_or_else(bad)?;
        if keys.len() != cols.len() {
            return Err(bad());
        }
        let keys = keys
            .iter()
            .zip(cols)
            .map(|(k, c)| match (c, k) {
                (Col::Int, Value::Null) => Some(Val::Int(None)),
                (Col::Real, Value::Null) => Some(Val::Real(None)),
                (Col::Text, Value::Null) => Some(Val::Text(None)),
                (Col::Int, k) => k.as_i64().map(Val::int),
                (Col::Real, k) => k.as_f64().map(|f| Val::Real(Some(f))),
                (Col::Text, k) => k.as_str().map(Val::text),
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad)?;
        Ok(Cursor { forward, rid, keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_tampering() {
        let c = Cursor {
            forward: false,
            rid: 42,
            keys: vec![Val::text("nu\u{f1}ez"), Val::Int(None), Val::Real(Some(1.5))],
        };
        let cols = [Col::Text, Col::Int, Col::Real];
        assert_eq!(Cursor::decode(&c.encode(), &cols).unwrap(), c);
        assert!(Cursor::decode(&c.encode(), &cols[..2]).is_err());
        assert!(Cursor::decode("zz", &cols).is_err());
        assert!(Cursor::decode(&c.encode()[1..], &cols).is_err());
    }
}
