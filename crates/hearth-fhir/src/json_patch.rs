//! JSON Patch (RFC 6902) over JSON Pointer (RFC 6901), as FHIR's `PATCH` with
//! `application/json-patch+json` uses it. Pure: applies to a copy and returns it, so a failed patch
//! leaves nothing half-applied.

use serde_json::Value;

/// Why a patch document could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchError {
    /// Index of the failing operation in the patch document.
    pub operation: usize,
    pub message: String,
}

impl std::fmt::Display for PatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "operation {}: {}", self.operation, self.message)
    }
}

fn parse_pointer(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let rest = pointer.strip_prefix('/').ok_or_else(|| format!("pointer `{pointer}` must start with '/'"))?;
    rest.split('/')
        .map(|token| {
            // RFC 6901: '~1' then '~0', and no other '~' escapes.
            let mut out = String::with_capacity(token.len());
            let mut chars = token.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => return Err(format!("invalid escape in pointer `{pointer}`")),
                    }
                } else {
                    out.push(c);
                }
            }
            Ok(out)
        })
        .collect()
}

fn array_index(token: &str, len: usize, allow_end: bool) -> Result<usize, String> {
    if token == "-" && allow_end {
        return Ok(len);
    }
    if token.is_empty() || (token.len() > 1 && token.starts_with('0')) || !token.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{token}` is not an array index"));
    }
    let i: usize = token.parse().map_err(|_| format!("`{token}` is not an array index"))?;
    let max = if allow_end { len } else { len.saturating_sub(1) };
    if i > max || (!allow_end && len == 0) {
        return Err(format!("array index {i} is out of bounds"));
    }
    Ok(i)
}

fn get<'a>(doc: &'a Value, path: &[String]) -> Result<&'a Value, String> {
    let mut cur = doc;
    for token in path {
        cur = match cur {
            Value::Object(m) => m.get(token).ok_or_else(|| format!("`{token}` does not exist"))?,
            Value::Array(a) => a.get(array_index(token, a.len(), false)?).ok_or("index out of bounds")?,
            _ => return Err(format!("cannot descend into a scalar at `{token}`")),
        };
    }
    Ok(cur)
}

fn parent_mut<'a>(doc: &'a mut Value, path: &[String]) -> Result<(&'a mut Value, String), String> {
    let (last, parents) = path.split_last().ok_or("the operation needs a non-empty path")?;
    let mut cur = doc;
    for token in parents {
        cur = match cur {
            Value::Object(m) => m.get_mut(token).ok_or_else(|| format!("`{token}` does not exist"))?,
            Value::Array(a) => {
                let i = array_index(token, a.len(), false)?;
                a.get_mut(i).ok_or("index out of bounds")?
            }
            _ => return Err(format!("cannot descend into a scalar at `{token}`")),
        };
    }
    Ok((cur, last.clone()))
}

fn add(doc: &mut Value, path: &[String], value: Value) -> Result<(), String> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = parent_mut(doc, path)?;
    match parent {
        Value::Object(m) => {
            m.insert(last, value);
            Ok(())
        }
        Value::Array(a) => {
            let i = array_index(&last, a.len(), true)?;
            a.insert(i, value);
            Ok(())
        }
        _ => Err("the target's parent is not an object or array".into()),
    }
}

fn remove(doc: &mut Value, path: &[String]) -> Result<Value, String> {
    let (parent, last) = parent_mut(doc, path)?;
    match parent {
        Value::Object(m) => m.shift_remove(&last).ok_or_else(|| format!("`{last}` does not exist")),
        Value::Array(a) => {
            let i = array_index(&last, a.len(), false)?;
            Ok(a.remove(i))
        }
        _ => Err("the target's parent is not an object or array".into()),
    }
}

fn field<'a>(op: &'a Value, name: &str) -> Result<&'a Value, String> {
    op.get(name).ok_or_else(|| format!("missing `{name}`"))
}

fn pointer_field(op: &Value, name: &str) -> Result<Vec<String>, String> {
    parse_pointer(field(op, name)?.as_str().ok_or_else(|| format!("`{name}` must be a string"))?)
}

fn apply_one(doc: &mut Value, op: &Value) -> Result<(), String> {
    let kind = field(op, "op")?.as_str().ok_or("`op` must be a string")?;
    let path = pointer_field(op, "path")?;
    match kind {
        "add" => add(doc, &path, field(op, "value")?.clone()),
        "remove" => remove(doc, &path).map(|_| ()),
        "replace" => {
            let value = field(op, "value")?.clone();
            get(doc, &path)?;
            if path.is_empty() {
                *doc = value;
                return Ok(());
            }
            remove(doc, &path)?;
            add(doc, &path, value)
        }
        "move" => {
            let from = pointer_field(op, "from")?;
            if path.len() > from.len() && path.starts_with(&from) {
                return Err("cannot move a value into one of its own children".into());
            }
            let value = if from.is_empty() { std::mem::take(doc) } else { remove(doc, &from)? };
            add(doc, &path, value)
        }
        "copy" => {
            let from = pointer_field(op, "from")?;
            let value = get(doc, &from)?.clone();
            add(doc, &path, value)
        }
        "test" => {
            let expected = field(op, "value")?;
            if get(doc, &path)? == expected { Ok(()) } else { Err("test failed: the value differs".into()) }
        }
        other => Err(format!("unknown op `{other}`")),
    }
}

/// Applies a JSON Patch document (an array of operations) to a copy of `doc`.
pub fn apply(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| PatchError { operation: 0, message: "a JSON Patch document is an array".into() })?;
    let mut out = doc.clone();
    for (i, op) in ops.iter().enumerate() {
        apply_one(&mut out, op).map_err(|message| PatchError { operation: i, message })?;
    }
    Ok(out)
}
