//! The FHIRPath function library.

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::Value;
use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::VecDeque;

use crate::ast::{BinOp, Call, Expr, Func};
use crate::datetime::{Date, DateTime, Time};
use crate::eval::{Evaluator, MAX_ITEMS, R, Scope, criterion, fail, singleton, to_bool};
use crate::quantity::Quantity;
use crate::value::{Collection, Item, NULL, Node};

/// Compiles a FHIRPath regular expression. FHIRPath regexes are
/// single-line (`.` matches newlines) and case-sensitive; `full` anchors
/// the pattern to the whole input (`matchesFull`).
pub(crate) fn compile_regex(pattern: &str, full: bool, flags: &str) -> Result<regex::Regex, String> {
    if let Some(bad) = flags.chars().find(|c| !matches!(c, 'i' | 'm')) {
        return Err(format!("unsupported regular expression flag '{bad}'"));
    }
    let mut prefix = String::from("(?s");
    if flags.contains('i') {
        prefix.push('i');
    }
    if flags.contains('m') {
        prefix.push('m');
    }
    prefix.push(')');
    let src = if full { format!("{prefix}^(?:{pattern})$") } else { format!("{prefix}{pattern}") };
    regex::RegexBuilder::new(&src).size_limit(1 << 20).build().map_err(|e| format!("invalid regular expression: {e}"))
}

/// Rewrites a replacement string in the common (JavaScript / Java) style,
/// where `$1a` means group 1 then `a`, into the regex crate's `${1}a`.
fn js_replacement(rep: &str) -> String {
    let mut out = String::with_capacity(rep.len() + 4);
    let mut chars = rep.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push_str("${");
            while let Some(d) = chars.next_if(char::is_ascii_digit) {
                out.push(d);
            }
            out.push('}');
        } else {
            out.push(c);
        }
    }
    out
}

fn one<'a>(v: Item<'a>) -> R<Collection<'a>> {
    Ok(vec![v])
}

fn boolean<'a>(b: bool) -> R<Collection<'a>> {
    Ok(vec![Item::Boolean(b)])
}

fn opt<'a>(v: Option<Item<'a>>) -> R<Collection<'a>> {
    Ok(v.into_iter().collect())
}

/// The single input item as a System value; `None` if the input is empty
/// or the item has no primitive value.
fn single_value<'a>(input: &[Item<'a>], what: &str) -> R<Option<Item<'a>>> {
    match singleton(input, what)? {
        Some(Item::Node(n)) if n.json().is_object() => match Item::Node(*n).to_system() {
            Some(v) => Ok(Some(v)),
            // A FHIR Quantity from a foreign unit system is simply not
            // convertible; one with a comparator (`>1 min`) is not a value.
            None if n.type_name().is_some_and(|t| t.ends_with("Quantity")) && n.json().get("comparator").is_none() => {
                Ok(None)
            }
            None => fail(format!("{what} expects a primitive value, got {}", n.type_name().unwrap_or("an object"))),
        },
        Some(i) => Ok(i.to_system()),
        None => Ok(None),
    }
}

fn single_string<'a>(input: &[Item<'a>], what: &str) -> R<Option<Cow<'a, str>>> {
    match single_value(input, what)? {
        None => Ok(None),
        Some(Item::String(s)) => Ok(Some(s)),
        Some(_) => fail(format!("{what} expects a string input")),
    }
}

fn round_f64(v: f64) -> Option<Decimal> {
    if !v.is_finite() {
        return None;
    }
    // 15 significant digits: the precision an f64 reliably carries, which
    // also turns 0.30000000000000004 back into 0.3.
    let s = format!("{v:.14e}");
    let d = Decimal::from_scientific(&s).ok()?;
    Some(d.normalize())
}

fn to_f64(d: Decimal) -> Option<f64> {
    d.to_f64()
}

impl<'a> Evaluator<'_, 'a> {
    /// Evaluates an argument against the outer focus (non-lambda arguments).
    fn arg(&self, call: &Call, i: usize, focus: &[Item<'a>], scope: &Scope<'a>) -> R<Collection<'a>> {
        match call.args.get(i) {
            Some(e) => self.eval(e, focus, scope),
            None => Ok(Vec::new()),
        }
    }

    fn arg_single(&self, call: &Call, i: usize, focus: &[Item<'a>], scope: &Scope<'a>) -> R<Option<Item<'a>>> {
        let v = self.arg(call, i, focus, scope)?;
        Ok(singleton(&v, "function argument")?.and_then(Item::to_system))
    }

    fn arg_string(&self, call: &Call, i: usize, focus: &[Item<'a>], scope: &Scope<'a>) -> R<Option<Cow<'a, str>>> {
        match self.arg_single(call, i, focus, scope)? {
            None => Ok(None),
            Some(Item::String(s)) => Ok(Some(s)),
            Some(_) => fail("expected a string argument"),
        }
    }

    fn arg_int(&self, call: &Call, i: usize, focus: &[Item<'a>], scope: &Scope<'a>) -> R<Option<i64>> {
        match self.arg_single(call, i, focus, scope)? {
            None => Ok(None),
            Some(Item::Integer(n) | Item::Long(n)) => Ok(Some(n)),
            Some(_) => fail("expected an integer argument"),
        }
    }

    /// Evaluates a lambda argument for one item.
    fn lambda(
        &self,
        e: &Expr,
        item: &Item<'a>,
        index: usize,
        total: Option<Collection<'a>>,
        scope: &Scope<'a>,
    ) -> R<Collection<'a>> {
        let inner = Scope { this: Some(item.clone()), index: Some(index), total, defined: scope.defined.clone() };
        self.eval(e, std::slice::from_ref(item), &inner)
    }

    pub(crate) fn call(
        &self,
        call: &Call,
        focus: &[Item<'a>],
        scope: &Scope<'a>,
    ) -> R<(Collection<'a>, Option<Scope<'a>>)> {
        let (input, sc) = match &call.target {
            Some(t) => self.eval_chain(t, focus, scope)?,
            None => (
                match &scope.this {
                    Some(t) => vec![t.clone()],
                    None => focus.to_vec(),
                },
                None,
            ),
        };
        let scope = sc.as_ref().unwrap_or(scope);
        let located = |mut e: crate::eval::EvalError| {
            if !e.message.contains(" (at ") {
                e.message = format!("{} (at offset {})", e.message, call.pos);
            }
            e
        };
        if call.func == Func::DefineVariable {
            return self.define_variable(call, input, scope).map(|(out, s)| (out, Some(s))).map_err(located);
        }
        let out = if call.func.takes_lambda() {
            self.apply_lambda(call, input, focus, scope)
        } else {
            self.apply(call, input, focus, scope)
        }
        .map_err(located)?;
        Ok((out, sc))
    }

    /// `defineVariable(name [, value])`: binds `%name` for the rest of the
    /// chain; the value expression is evaluated against the whole input.
    fn define_variable(&self, call: &Call, input: Collection<'a>, scope: &Scope<'a>) -> R<(Collection<'a>, Scope<'a>)> {
        let name = match call.args.first() {
            Some(Expr::Literal(Item::String(n))) => n.to_string(),
            _ => match self.arg_single(call, 0, &input, scope)? {
                Some(Item::String(n)) => n.into_owned(),
                _ => return fail("defineVariable() needs a name"),
            },
        };
        let reserved = ["context", "resource", "rootResource", "ucum", "sct", "loinc"];
        if reserved.contains(&name.as_str())
            || self.ctx.vars.contains_key(&name)
            || scope.defined.iter().any(|(n, _)| *n == name)
        {
            return fail(format!("variable %{name} is already defined"));
        }
        let value = match call.args.get(1) {
            Some(e) => {
                let inner = Scope { this: None, ..scope.clone() };
                self.eval(e, &input, &inner)?
            }
            None => input.clone(),
        };
        let mut next = scope.clone();
        next.defined.push((name, value));
        Ok((input, next))
    }

    /// Functions with per-item expression arguments. Kept apart from
    /// `apply` so that nested lambdas (`where(x.where(...))`) recurse through
    /// small stack frames only.
    fn apply_lambda(
        &self,
        call: &Call,
        input: Collection<'a>,
        focus: &[Item<'a>],
        scope: &Scope<'a>,
    ) -> R<Collection<'a>> {
        let lambda_arg = call.args.first();
        match call.func {
            Func::Exists => match lambda_arg {
                None => boolean(!input.is_empty()),
                Some(e) => {
                    for (i, item) in input.iter().enumerate() {
                        if criterion(&self.lambda(e, item, i, None, scope)?) {
                            return boolean(true);
                        }
                    }
                    boolean(false)
                }
            },
            Func::All => {
                let Some(e) = lambda_arg else { return boolean(true) };
                for (i, item) in input.iter().enumerate() {
                    if !criterion(&self.lambda(e, item, i, None, scope)?) {
                        return boolean(false);
                    }
                }
                boolean(true)
            }
            Func::Where => {
                let Some(e) = lambda_arg else { return Ok(input) };
                let mut out = Vec::new();
                for (i, item) in input.iter().enumerate() {
                    if criterion(&self.lambda(e, item, i, None, scope)?) {
                        out.push(item.clone());
                    }
                }
                Ok(out)
            }
            Func::Select => {
                let Some(e) = lambda_arg else { return Ok(input) };
                let mut out = Vec::new();
                for (i, item) in input.iter().enumerate() {
                    out.extend(self.lambda(e, item, i, None, scope)?);
                }
                Ok(out)
            }
            Func::Repeat | Func::RepeatAll => {
                let Some(e) = lambda_arg else { return Ok(input) };
                let dedupe = call.func == Func::Repeat;
                let mut seen = crate::eval::Dedup::new();
                let mut out: Collection<'a> = Vec::new();
                let mut queue: VecDeque<Item<'a>> = input.into_iter().collect();
                let mut i = 0;
                while let Some(item) = queue.pop_front() {
                    for next in self.lambda(e, &item, i, None, scope)? {
                        if dedupe && !seen.insert(self, &next) {
                            continue;
                        }
                        out.push(next.clone());
                        queue.push_back(next);
                        if out.len() > MAX_ITEMS {
                            return fail("repeat() produced too many items");
                        }
                    }
                    i += 1;
                }
                Ok(out)
            }
            Func::Iif => {
                if input.len() > 1 {
                    return fail("iif() on a collection with more than one item");
                }
                let inner = Scope { this: input.first().cloned().or_else(|| scope.this.clone()), ..scope.clone() };
                let cond_focus: &[Item<'a>] = if call.target.is_some() { &input } else { focus };
                let cond = match call.args.first() {
                    Some(c) => self.eval(c, cond_focus, &inner)?,
                    None => Vec::new(),
                };
                let cond = match singleton(&cond, "iif() criterion")? {
                    None => None,
                    Some(i) => match i.to_system() {
                        Some(Item::Boolean(b)) => Some(b),
                        _ => return fail("iif() criterion must be a boolean"),
                    },
                };
                let branch = if cond == Some(true) { 1 } else { 2 };
                match call.args.get(branch) {
                    Some(e) => self.eval(e, cond_focus, &inner),
                    None => Ok(Vec::new()),
                }
            }
            Func::Aggregate => {
                let Some(e) = lambda_arg else { return Ok(Vec::new()) };
                let mut total = self.arg(call, 1, focus, scope)?;
                for (i, item) in input.iter().enumerate() {
                    total = self.lambda(e, item, i, Some(total), scope)?;
                }
                Ok(total)
            }
            _ => self.apply(call, input, focus, scope),
        }
    }

    fn apply(&self, call: &Call, input: Collection<'a>, focus: &[Item<'a>], scope: &Scope<'a>) -> R<Collection<'a>> {
        match call.func {
            Func::Exists
            | Func::All
            | Func::Where
            | Func::Select
            | Func::Repeat
            | Func::RepeatAll
            | Func::Iif
            | Func::Aggregate => self.apply_lambda(call, input, focus, scope),
            // ---------------- existence
            Func::Empty => boolean(input.is_empty()),
            Func::AllTrue | Func::AnyTrue | Func::AllFalse | Func::AnyFalse => {
                let mut bools = Vec::with_capacity(input.len());
                for i in &input {
                    match i.to_system() {
                        Some(Item::Boolean(b)) => bools.push(b),
                        _ => return fail("expected a collection of booleans"),
                    }
                }
                boolean(match call.func {
                    Func::AllTrue => bools.iter().all(|b| *b),
                    Func::AnyTrue => bools.iter().any(|b| *b),
                    Func::AllFalse => bools.iter().all(|b| !*b),
                    _ => bools.iter().any(|b| !*b),
                })
            }
            Func::SubsetOf | Func::SupersetOf => {
                let other = self.arg(call, 0, focus, scope)?;
                let (small, big) = if call.func == Func::SubsetOf { (&input, &other) } else { (&other, &input) };
                boolean(small.iter().all(|i| self.contains_item(big, i)))
            }
            Func::Count => one(Item::Integer(input.len() as i64)),
            Func::Distinct => {
                let mut seen = crate::eval::Dedup::new();
                let mut out: Collection<'a> = Vec::new();
                for i in input {
                    if seen.insert(self, &i) {
                        out.push(i);
                    }
                }
                Ok(out)
            }
            Func::IsDistinct => {
                for (n, i) in input.iter().enumerate() {
                    if input.iter().take(n).any(|j| self.items_equal(i, j) == Some(true)) {
                        return boolean(false);
                    }
                }
                boolean(true)
            }

            // ---------------- filtering and projection
            Func::OfType => {
                let Some(ty) = &call.type_arg else { return Ok(Vec::new()) };
                self.check_type(ty)?;
                let mut out = Vec::new();
                for i in input {
                    if self.is_type(&i, ty)? {
                        out.push(i);
                    }
                }
                Ok(out)
            }

            // ---------------- subsetting
            Func::Single => match input.len() {
                0 | 1 => Ok(input),
                _ => fail("single() on a collection with more than one item"),
            },
            Func::First => Ok(input.into_iter().take(1).collect()),
            Func::Last => Ok(input.into_iter().last().into_iter().collect()),
            Func::Tail => Ok(input.into_iter().skip(1).collect()),
            Func::Skip => {
                let n = self.arg_int(call, 0, focus, scope)?.unwrap_or(0);
                Ok(input.into_iter().skip(n.max(0) as usize).collect())
            }
            Func::Take => {
                let n = self.arg_int(call, 0, focus, scope)?.unwrap_or(0);
                Ok(input.into_iter().take(n.max(0) as usize).collect())
            }
            Func::Intersect => {
                let other = self.arg(call, 0, focus, scope)?;
                let mut out: Collection<'a> = Vec::new();
                for i in input {
                    if self.contains_item(&other, &i) && !self.contains_item(&out, &i) {
                        out.push(i);
                    }
                }
                Ok(out)
            }
            Func::Exclude => {
                let other = self.arg(call, 0, focus, scope)?;
                Ok(input.into_iter().filter(|i| !self.contains_item(&other, i)).collect())
            }

            // ---------------- combining
            Func::Union => {
                let other = self.arg(call, 0, focus, scope)?;
                self.apply_binary(BinOp::Union, input, other)
            }
            Func::Combine => {
                let mut out = input;
                out.extend(self.arg(call, 0, focus, scope)?);
                Ok(out)
            }

            // ---------------- conversion
            Func::ToBoolean => opt(single_value(&input, "toBoolean()")?.and_then(|v| to_boolean(&v))),
            Func::ConvertsToBoolean => self.converts(&input, |v| to_boolean(v).is_some()),
            Func::ToInteger => opt(single_value(&input, "toInteger()")?.and_then(|v| to_integer(&v))),
            Func::ConvertsToInteger => self.converts(&input, |v| to_integer(v).is_some()),
            Func::ToLong => opt(single_value(&input, "toLong()")?.and_then(|v| to_integer(&v)).map(|i| match i {
                Item::Integer(n) => Item::Long(n),
                other => other,
            })),
            Func::ConvertsToLong => self.converts(&input, |v| to_integer(v).is_some()),
            Func::ToDecimal => opt(single_value(&input, "toDecimal()")?.and_then(|v| to_decimal(&v))),
            Func::ConvertsToDecimal => self.converts(&input, |v| to_decimal(v).is_some()),
            Func::ToString => opt(single_value(&input, "toString()")?.and_then(|v| to_string(&v)).map(Item::string)),
            Func::ConvertsToString => self.converts(&input, |v| to_string(v).is_some()),
            Func::ToDate => opt(single_value(&input, "toDate()")?.and_then(|v| to_date(&v))),
            Func::ConvertsToDate => self.converts(&input, |v| to_date(v).is_some()),
            Func::ToDateTime => opt(single_value(&input, "toDateTime()")?.and_then(|v| to_datetime(&v))),
            Func::ConvertsToDateTime => self.converts(&input, |v| to_datetime(v).is_some()),
            Func::ToTime => opt(single_value(&input, "toTime()")?.and_then(|v| to_time(&v))),
            Func::ConvertsToTime => self.converts(&input, |v| to_time(v).is_some()),
            Func::ToQuantity | Func::ConvertsToQuantity => {
                let unit = self.arg_string(call, 0, focus, scope)?;
                let Some(v) = single_value(&input, "toQuantity()")? else {
                    return Ok(Vec::new());
                };
                let q = to_quantity(&v).and_then(|q| match &unit {
                    Some(u) => convert_quantity(&q, u),
                    None => Some(q),
                });
                if call.func == Func::ConvertsToQuantity {
                    boolean(q.is_some())
                } else {
                    opt(q.map(|q| Item::Quantity(Box::new(q))))
                }
            }

            // ---------------- strings
            Func::IndexOf | Func::LastIndexOf => {
                let Some(s) = single_string(&input, "indexOf()")? else { return Ok(Vec::new()) };
                let Some(sub) = self.arg_string(call, 0, focus, scope)? else {
                    return Ok(Vec::new());
                };
                let found = if call.func == Func::IndexOf { s.find(&*sub) } else { s.rfind(&*sub) };
                one(Item::Integer(match found {
                    Some(b) => s.get(..b).map_or(0, |p| p.chars().count()) as i64,
                    None => -1,
                }))
            }
            Func::Substring => {
                let Some(s) = single_string(&input, "substring()")? else { return Ok(Vec::new()) };
                let Some(start) = self.arg_int(call, 0, focus, scope)? else {
                    return Ok(Vec::new());
                };
                let len = if call.args.len() > 1 { self.arg_int(call, 1, focus, scope)? } else { None };
                let count = s.chars().count() as i64;
                if start < 0 || start >= count {
                    return Ok(Vec::new());
                }
                let take = len.unwrap_or(count).max(0) as usize;
                one(Item::string(s.chars().skip(start as usize).take(take).collect::<String>()))
            }
            Func::StartsWith | Func::EndsWith | Func::Contains => {
                let Some(s) = single_string(&input, "string function")? else {
                    return Ok(Vec::new());
                };
                let Some(sub) = self.arg_string(call, 0, focus, scope)? else {
                    return Ok(Vec::new());
                };
                boolean(match call.func {
                    Func::StartsWith => s.starts_with(&*sub),
                    Func::EndsWith => s.ends_with(&*sub),
                    _ => s.contains(&*sub),
                })
            }
            Func::Upper | Func::Lower | Func::Trim | Func::Length | Func::ToChars => {
                let Some(s) = single_string(&input, "string function")? else {
                    return Ok(Vec::new());
                };
                match call.func {
                    Func::Upper => one(Item::string(s.to_uppercase())),
                    Func::Lower => one(Item::string(s.to_lowercase())),
                    Func::Trim => one(Item::string(s.trim())),
                    Func::Length => one(Item::Integer(s.chars().count() as i64)),
                    _ => Ok(s.chars().map(|c| Item::string(c.to_string())).collect()),
                }
            }
            Func::Replace => {
                let Some(s) = single_string(&input, "replace()")? else { return Ok(Vec::new()) };
                let (Some(pat), Some(rep)) =
                    (self.arg_string(call, 0, focus, scope)?, self.arg_string(call, 1, focus, scope)?)
                else {
                    return Ok(Vec::new());
                };
                one(Item::string(s.replace(&*pat, &rep)))
            }
            Func::Matches | Func::MatchesFull => {
                let Some(s) = single_string(&input, "matches()")? else { return Ok(Vec::new()) };
                let re = match &call.regex {
                    Some(r) => Cow::Borrowed(r),
                    None => {
                        let Some(pat) = self.arg_string(call, 0, focus, scope)? else {
                            return Ok(Vec::new());
                        };
                        let flags = self.arg_string(call, 1, focus, scope)?.unwrap_or_default();
                        match compile_regex(&pat, call.func == Func::MatchesFull, &flags) {
                            Ok(r) => Cow::Owned(r),
                            Err(m) => return fail(m),
                        }
                    }
                };
                boolean(re.is_match(&s))
            }
            Func::ReplaceMatches => {
                let Some(s) = single_string(&input, "replaceMatches()")? else {
                    return Ok(Vec::new());
                };
                let Some(rep) = self.arg_string(call, 1, focus, scope)? else {
                    return Ok(Vec::new());
                };
                let re = match &call.regex {
                    Some(r) => Cow::Borrowed(r),
                    None => {
                        let Some(pat) = self.arg_string(call, 0, focus, scope)? else {
                            return Ok(Vec::new());
                        };
                        let flags = self.arg_string(call, 2, focus, scope)?.unwrap_or_default();
                        match compile_regex(&pat, false, &flags) {
                            Ok(r) => Cow::Owned(r),
                            Err(m) => return fail(m),
                        }
                    }
                };
                one(Item::string(re.replace_all(&s, js_replacement(&rep).as_str()).into_owned()))
            }
            Func::Split => {
                let Some(s) = single_string(&input, "split()")? else { return Ok(Vec::new()) };
                let Some(sep) = self.arg_string(call, 0, focus, scope)? else {
                    return Ok(Vec::new());
                };
                Ok(s.split(&*sep).map(Item::string).collect())
            }
            Func::Join => {
                let sep = self.arg_string(call, 0, focus, scope)?.unwrap_or_default();
                if input.is_empty() {
                    return Ok(Vec::new());
                }
                let mut parts = Vec::with_capacity(input.len());
                for i in &input {
                    match i.to_system() {
                        Some(Item::String(s)) => parts.push(s.into_owned()),
                        None => {}
                        _ => return fail("join() expects strings"),
                    }
                }
                one(Item::string(parts.join(&sep)))
            }
            Func::Encode | Func::Decode | Func::Escape | Func::Unescape => {
                let Some(s) = single_string(&input, "encoding function")? else {
                    return Ok(Vec::new());
                };
                let Some(fmt) = self.arg_string(call, 0, focus, scope)? else {
                    return Ok(Vec::new());
                };
                if call.func == Func::Decode && fmt == "hex" && !s.len().is_multiple_of(2) {
                    return fail("hex input must have an even number of digits");
                }
                opt(crate::encoding::apply(call.func, &s, &fmt).map(Item::string))
            }

            // ---------------- math
            Func::Abs => match single_value(&input, "abs()")? {
                None => Ok(Vec::new()),
                Some(Item::Integer(n)) => opt(n.checked_abs().map(Item::Integer)),
                Some(Item::Long(n)) => opt(n.checked_abs().map(Item::Long)),
                Some(Item::Decimal(d)) => one(Item::Decimal(d.abs())),
                Some(Item::Quantity(mut q)) => {
                    q.value = q.value.abs();
                    one(Item::Quantity(q))
                }
                Some(_) => fail("abs() expects a number"),
            },
            Func::Ceiling | Func::Floor | Func::Truncate => match single_value(&input, "rounding")? {
                None => Ok(Vec::new()),
                Some(Item::Quantity(mut q)) => {
                    q.value = match call.func {
                        Func::Ceiling => q.value.ceil(),
                        Func::Floor => q.value.floor(),
                        _ => q.value.trunc(),
                    };
                    one(Item::Quantity(q))
                }
                Some(i @ (Item::Integer(_) | Item::Long(_))) => one(i),
                Some(Item::Decimal(d)) => {
                    let r = match call.func {
                        Func::Ceiling => d.ceil(),
                        Func::Floor => d.floor(),
                        _ => d.trunc(),
                    };
                    opt(r.to_i64().map(Item::Integer))
                }
                Some(_) => fail("expected a number"),
            },
            Func::Round => {
                let digits = self.arg_int(call, 0, focus, scope)?.unwrap_or(0);
                if digits < 0 {
                    return fail("round() precision must be non-negative");
                }
                match single_value(&input, "round()")? {
                    None => Ok(Vec::new()),
                    Some(Item::Quantity(mut q)) => {
                        q.value = q.value.round_dp_with_strategy(
                            digits.min(28) as u32,
                            rust_decimal::RoundingStrategy::MidpointAwayFromZero,
                        );
                        one(Item::Quantity(q))
                    }
                    Some(v) => match crate::eval::number(&v) {
                        Some(d) => one(Item::Decimal(d.round_dp_with_strategy(
                            digits.min(28) as u32,
                            rust_decimal::RoundingStrategy::MidpointAwayFromZero,
                        ))),
                        None => fail("round() expects a number"),
                    },
                }
            }
            Func::Exp | Func::Ln | Func::Sqrt => {
                let Some(v) = single_value(&input, "math function")? else {
                    return Ok(Vec::new());
                };
                let Some(d) = crate::eval::number(&v) else {
                    return fail("expected a number");
                };
                let Some(x) = to_f64(d) else { return Ok(Vec::new()) };
                let r = match call.func {
                    Func::Exp => x.exp(),
                    Func::Ln => x.ln(),
                    _ => {
                        // Exact square roots stay exact.
                        if let Some(s) = round_f64(x.sqrt())
                            && s.checked_mul(s) == Some(d.normalize())
                        {
                            return one(Item::Decimal(s.normalize()));
                        }
                        x.sqrt()
                    }
                };
                opt(round_f64(r).map(Item::Decimal))
            }
            Func::Log => {
                let Some(v) = single_value(&input, "log()")? else { return Ok(Vec::new()) };
                let Some(base) = self.arg_single(call, 0, focus, scope)? else {
                    return Ok(Vec::new());
                };
                let (Some(x), Some(b)) =
                    (crate::eval::number(&v).and_then(to_f64), crate::eval::number(&base).and_then(to_f64))
                else {
                    return fail("log() expects numbers");
                };
                opt(round_f64(x.ln() / b.ln()).map(Item::Decimal))
            }
            Func::Power => {
                let Some(v) = single_value(&input, "power()")? else { return Ok(Vec::new()) };
                let Some(e) = self.arg_single(call, 0, focus, scope)? else {
                    return Ok(Vec::new());
                };
                match (&v, &e) {
                    (Item::Integer(b), Item::Integer(x)) if *x >= 0 => {
                        let r = u32::try_from(*x).ok().and_then(|x| b.checked_pow(x));
                        opt(r.filter(|n| i32::try_from(*n).is_ok()).map(Item::Integer))
                    }
                    (Item::Long(b) | Item::Integer(b), Item::Long(x) | Item::Integer(x)) if *x >= 0 => {
                        let r = u32::try_from(*x).ok().and_then(|x| b.checked_pow(x));
                        opt(r.map(Item::Long))
                    }
                    _ => {
                        let (Some(b), Some(x)) = (crate::eval::number(&v), crate::eval::number(&e)) else {
                            return fail("power() expects numbers");
                        };
                        if x.fract().is_zero()
                            && let Some(n) = x.to_i64()
                            && (0..=64).contains(&n)
                        {
                            let mut acc = Decimal::ONE;
                            let mut ok = true;
                            for _ in 0..n {
                                match acc.checked_mul(b) {
                                    Some(v) => acc = v,
                                    None => {
                                        ok = false;
                                        break;
                                    }
                                }
                            }
                            if ok {
                                return one(Item::Decimal(acc.normalize()));
                            }
                        }
                        let (Some(bf), Some(xf)) = (to_f64(b), to_f64(x)) else {
                            return Ok(Vec::new());
                        };
                        opt(round_f64(bf.powf(xf)).map(Item::Decimal))
                    }
                }
            }

            // ---------------- aggregates
            Func::Sum | Func::Avg => {
                if input.is_empty() || input.iter().any(|i| i.to_system().is_none()) {
                    return Ok(Vec::new());
                }
                if input.iter().any(|i| {
                    !matches!(
                        i.to_system(),
                        Some(Item::Integer(_) | Item::Long(_) | Item::Decimal(_) | Item::Quantity(_))
                    )
                }) {
                    return Ok(Vec::new());
                }
                let mut acc: Option<Item<'a>> = None;
                for i in &input {
                    let Some(v) = i.to_system() else { continue };
                    acc = Some(match acc {
                        None => v,
                        Some(a) => match crate::eval::arithmetic(BinOp::Add, a, v)? {
                            Some(r) => r,
                            None => return Ok(Vec::new()),
                        },
                    });
                }
                if call.func == Func::Avg {
                    let n = Item::Integer(input.len() as i64);
                    return match acc {
                        Some(a) => opt(crate::eval::arithmetic(BinOp::Div, a, n)?),
                        None => Ok(Vec::new()),
                    };
                }
                opt(acc)
            }
            Func::Min | Func::Max => {
                if input.iter().any(|i| i.to_system().is_none()) {
                    return Ok(Vec::new());
                }
                let mut best: Option<Item<'a>> = None;
                for i in input {
                    best = Some(match best {
                        None => i,
                        Some(b) => {
                            let ord = self.compare(&i, &b)?;
                            let take = match ord {
                                Some(Ordering::Less) => call.func == Func::Min,
                                Some(Ordering::Greater) => call.func == Func::Max,
                                _ => false,
                            };
                            if take { i } else { b }
                        }
                    });
                }
                opt(best.and_then(|b| b.to_system()))
            }

            // ---------------- tree navigation
            Func::Children => {
                let mut out = Vec::new();
                for i in &input {
                    self.children(i, &mut out);
                }
                Ok(out)
            }
            Func::Descendants => {
                let mut out: Collection<'a> = Vec::new();
                let mut queue: VecDeque<Item<'a>> = input.into_iter().collect();
                while let Some(item) = queue.pop_front() {
                    let mut kids = Vec::new();
                    self.children(&item, &mut kids);
                    for k in kids {
                        out.push(k.clone());
                        queue.push_back(k);
                    }
                }
                Ok(out)
            }

            // ---------------- utility
            Func::Trace => {
                let name = self.arg_string(call, 0, focus, scope)?.unwrap_or_default();
                if let Some(sink) = self.ctx.tracer {
                    match call.args.get(1) {
                        Some(p) => {
                            let mut projected = Vec::new();
                            for (i, item) in input.iter().enumerate() {
                                projected.extend(self.lambda(p, item, i, None, scope)?);
                            }
                            sink.trace(&name, &projected);
                        }
                        None => sink.trace(&name, &input),
                    }
                }
                Ok(input)
            }
            Func::Now => one(Item::DateTime(self.ctx.now)),
            Func::Today => one(Item::Date(self.ctx.now.date())),
            Func::TimeOfDay => opt(self.ctx.now.time().map(Item::Time)),
            // Handled in `call`, which owns the scope of the chain.
            Func::DefineVariable => Ok(input),

            // ---------------- types
            Func::Is => match singleton(&input, "is()")? {
                None => Ok(Vec::new()),
                Some(i) => match &call.type_arg {
                    Some(t) => boolean(self.is_type(i, t)?),
                    None => Ok(Vec::new()),
                },
            },
            Func::As => {
                if input.len() > 1 && !self.ctx.lenient_type_ops {
                    return fail("as() requires a single item");
                }
                let Some(t) = &call.type_arg else { return Ok(Vec::new()) };
                self.check_type(t)?;
                let mut out = Vec::new();
                for i in input {
                    if self.is_type(&i, t)? {
                        out.push(i);
                    }
                }
                Ok(out)
            }
            Func::Type => Ok(input
                .iter()
                .map(|i| {
                    let (ns, name) = i.type_info();
                    Item::TypeInfo(ns, Cow::Borrowed(name))
                })
                .collect()),

            // ---------------- FHIR-specific
            Func::Not => match to_bool(&input)? {
                None => Ok(Vec::new()),
                Some(b) => boolean(!b),
            },
            Func::HasValue => boolean(match input.as_slice() {
                [Item::Quantity(_) | Item::TypeInfo(..)] => false,
                [Item::Node(n)] => {
                    !n.value.is_null() && !n.value.is_object() && !n.value.is_array() && n.type_name != Some("xhtml")
                }
                [_] => true,
                _ => false,
            }),
            Func::GetValue => match input.as_slice() {
                [Item::Node(n)] if !n.value.is_object() => opt(input.first().and_then(Item::to_system)),
                [other] if !matches!(other, Item::Node(_)) => Ok(input),
                _ => Ok(Vec::new()),
            },
            Func::Extension => {
                let Some(url) = self.arg_string(call, 0, focus, scope)? else {
                    return Ok(Vec::new());
                };
                let mut exts = Vec::new();
                for i in &input {
                    self.child(i, "extension", &mut exts);
                }
                Ok(exts
                    .into_iter()
                    .filter(|e| match e {
                        Item::Node(n) => n.value.get("url").and_then(Value::as_str) == Some(&*url),
                        _ => false,
                    })
                    .collect())
            }
            Func::Resolve => {
                let mut out = Vec::new();
                for i in &input {
                    if let Some(r) = self.resolve(i) {
                        out.push(r);
                    }
                }
                Ok(out)
            }
            Func::MemberOf => {
                let Some(vs) = self.arg_string(call, 0, focus, scope)? else {
                    return Ok(Vec::new());
                };
                let Some(term) = self.ctx.terminology else { return Ok(Vec::new()) };
                match singleton(&input, "memberOf()")? {
                    None => Ok(Vec::new()),
                    Some(i) => opt(term.member_of(&i.to_json(), &vs).map(Item::Boolean)),
                }
            }
            Func::ConformsTo => fail("conformsTo() is not supported"),
            // Narrative HTML checks belong to the validator; structurally any
            // narrative passes here.
            Func::HtmlChecks => boolean(true),
            Func::Comparable => {
                let as_q = |v: Option<Item<'a>>| match v {
                    Some(Item::Quantity(q)) => Some(*q),
                    Some(other) => crate::eval::number(&other).map(|n| Quantity::new(n, "1")),
                    None => None,
                };
                let (Some(a), Some(b)) =
                    (as_q(single_value(&input, "comparable()")?), as_q(self.arg_single(call, 0, focus, scope)?))
                else {
                    return Ok(Vec::new());
                };
                boolean(a.compare(&b).is_some())
            }
            Func::Sort => self.sort(call, input, scope),
            Func::Precision => match single_value(&input, "precision()")? {
                None => Ok(Vec::new()),
                Some(v) => opt(precision_of(&v).map(Item::Integer)),
            },
            Func::LowBoundary | Func::HighBoundary => {
                let digits = self.arg_int(call, 0, focus, scope)?;
                match single_value(&input, "boundary")? {
                    None => Ok(Vec::new()),
                    Some(v) => opt(crate::boundary::boundary(&v, digits, call.func == Func::HighBoundary)),
                }
            }
            Func::YearOf
            | Func::MonthOf
            | Func::DayOf
            | Func::HourOf
            | Func::MinuteOf
            | Func::SecondOf
            | Func::MillisecondOf
            | Func::TimezoneOffsetOf
            | Func::DateOf
            | Func::TimeOf => {
                let Some(v) = single_value(&input, "date/time component")? else {
                    return Ok(Vec::new());
                };
                let v = match v {
                    Item::String(s) => match DateTime::parse(&s)
                        .map(Item::DateTime)
                        .or_else(|| Time::parse(s.trim_start_matches('T')).map(Item::Time))
                    {
                        Some(p) => p,
                        None => return Ok(Vec::new()),
                    },
                    other => other,
                };
                // A component the value does not have is empty, not an error.
                Ok(date_component(call.func, &v).unwrap_or_default())
            }
            Func::InFn => {
                let other = self.arg(call, 0, focus, scope)?;
                self.apply_binary(BinOp::In, input, other)
            }
        }
    }

    fn converts(&self, input: &[Item<'a>], f: impl Fn(&Item<'a>) -> bool) -> R<Collection<'a>> {
        match singleton(input, "convertsTo")? {
            None => Ok(Vec::new()),
            Some(i) => boolean(i.to_system().is_some_and(|v| f(&v))),
        }
    }

    fn sort(&self, call: &Call, input: Collection<'a>, scope: &Scope<'a>) -> R<Collection<'a>> {
        // Keys: each argument evaluated per item; a leading unary minus on
        // the key expression sorts descending.
        let mut keyed: Vec<(Vec<Collection<'a>>, Item<'a>)> = Vec::with_capacity(input.len());
        for (i, item) in input.into_iter().enumerate() {
            let mut keys = Vec::new();
            if call.args.is_empty() {
                keys.push(vec![item.clone()]);
            }
            for a in &call.args {
                let e = match a {
                    Expr::Neg(inner) => inner.as_ref(),
                    other => other,
                };
                keys.push(self.lambda(e, &item, i, None, scope)?);
            }
            keyed.push((keys, item));
        }
        let desc: Vec<bool> = if call.args.is_empty() {
            vec![false]
        } else {
            call.args.iter().map(|a| matches!(a, Expr::Neg(_))).collect()
        };
        let mut error = None;
        keyed.sort_by(|(ka, _), (kb, _)| {
            for ((a, b), d) in ka.iter().zip(kb).zip(&desc) {
                let o = match (a.first(), b.first()) {
                    (None, None) => Ordering::Equal,
                    (None, Some(_)) => Ordering::Less,
                    (Some(_), None) => Ordering::Greater,
                    (Some(x), Some(y)) => match self.compare(x, y) {
                        Ok(o) => o.unwrap_or(Ordering::Equal),
                        Err(e) => {
                            error = Some(e);
                            Ordering::Equal
                        }
                    },
                };
                let o = if *d { o.reverse() } else { o };
                if o != Ordering::Equal {
                    return o;
                }
            }
            Ordering::Equal
        });
        if let Some(e) = error {
            return Err(e);
        }
        Ok(keyed.into_iter().map(|(_, i)| i).collect())
    }

    fn resolve(&self, item: &Item<'a>) -> Option<Item<'a>> {
        let reference: &'a str = match item {
            Item::Node(n) => match n.value {
                Value::String(s) => s,
                Value::Object(o) => o.get("reference").and_then(Value::as_str)?,
                _ => return None,
            },
            _ => return None,
        };
        if let Some(id) = reference.strip_prefix('#') {
            let roots = [self.ctx.vars.get("rootResource"), self.ctx.vars.get("resource"), Some(&self.input)];
            for root in roots.into_iter().flatten() {
                for r in root {
                    let Item::Node(n) = r else { continue };
                    if id.is_empty() {
                        return Some(r.clone());
                    }
                    if let Some(Value::Array(contained)) = n.value.get("contained")
                        && let Some(c) = contained.iter().find(|c| c.get("id").and_then(Value::as_str) == Some(id))
                    {
                        return Some(Item::Node(Node::root(c)));
                    }
                }
            }
            return None;
        }
        if let Some(res) = self.ctx.resolver
            && let Some(v) = res.resolve(reference)
        {
            return Some(Item::Node(Node::root(v)));
        }
        // Unresolvable, but `Type/id` still tells the type: enough for
        // `resolve() is Patient` in search parameters.
        let path = reference.split(['?', '#']).next().unwrap_or(reference);
        let segments: Vec<&'a str> = path.split('/').collect();
        let ty = segments.iter().rev().skip(1).find(|s| s.starts_with(|c: char| c.is_ascii_uppercase())).copied()?;
        Some(Item::Node(Node { value: &NULL, ext: None, type_name: Some(ty), children_of: Some(ty) }))
    }
}

fn date_component<'a>(func: Func, v: &Item<'a>) -> R<Collection<'a>> {
    use crate::datetime::Precision as P;
    let dt = match v {
        Item::Date(d) => Some(d.to_datetime()),
        Item::DateTime(d) => Some(*d),
        _ => None,
    };
    let precision = match func {
        Func::YearOf => P::Year,
        Func::MonthOf => P::Month,
        Func::DayOf => P::Day,
        Func::HourOf => P::Hour,
        Func::MinuteOf => P::Minute,
        Func::SecondOf => P::Second,
        Func::MillisecondOf => {
            let has_ms = match v {
                Item::DateTime(d) => d.precision() == P::Millisecond,
                Item::Time(t) => t.precision() == P::Millisecond,
                _ => false,
            };
            if !has_ms {
                return Ok(Vec::new());
            }
            P::Millisecond
        }
        Func::TimezoneOffsetOf => {
            let Some(d) = dt else { return fail("timezoneOffsetOf() expects a dateTime") };
            return opt(d
                .offset()
                .filter(|_| d.precision() > P::Day)
                .map(|o| Item::Decimal(Decimal::from(o) / Decimal::from(60))));
        }
        Func::DateOf => {
            let Some(d) = dt else { return fail("dateOf() expects a date or dateTime") };
            return one(Item::Date(d.date()));
        }
        _ => {
            let Some(d) = dt else { return fail("timeOf() expects a dateTime") };
            return opt(d.time().map(Item::Time));
        }
    };
    match (v, dt) {
        (Item::Time(t), _) => {
            if precision <= P::Day {
                return fail("a time has no date components");
            }
            opt(t.component(precision).map(Item::Integer))
        }
        (_, Some(d)) => {
            if matches!(v, Item::Date(_)) && precision > P::Day {
                return fail("a date has no time components");
            }
            opt(d.component(precision).map(Item::Integer))
        }
        _ => fail("expected a date, dateTime or time"),
    }
}

// ---------------------------------------------------------------------------
// Conversions (FHIRPath §5.5)

fn to_boolean<'a>(v: &Item<'a>) -> Option<Item<'a>> {
    match v {
        Item::Boolean(b) => Some(Item::Boolean(*b)),
        Item::Integer(1) | Item::Long(1) => Some(Item::Boolean(true)),
        Item::Integer(0) | Item::Long(0) => Some(Item::Boolean(false)),
        Item::Decimal(d) if *d == Decimal::ONE => Some(Item::Boolean(true)),
        Item::Decimal(d) if d.is_zero() => Some(Item::Boolean(false)),
        Item::String(s) => match s.to_lowercase().as_str() {
            "true" | "t" | "yes" | "y" | "1" | "1.0" => Some(Item::Boolean(true)),
            "false" | "f" | "no" | "n" | "0" | "0.0" => Some(Item::Boolean(false)),
            _ => None,
        },
        _ => None,
    }
}

fn is_integer_text(s: &str) -> bool {
    let d = s.strip_prefix(['+', '-']).unwrap_or(s);
    !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())
}

fn is_decimal_text(s: &str) -> bool {
    let d = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (int, frac) = match d.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (d, None),
    };
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

fn to_integer<'a>(v: &Item<'a>) -> Option<Item<'a>> {
    match v {
        Item::Integer(n) => Some(Item::Integer(*n)),
        Item::Long(n) => Some(Item::Integer(*n)),
        Item::Boolean(b) => Some(Item::Integer(i64::from(*b))),
        Item::String(s) if is_integer_text(s) => s.parse::<i64>().ok().map(Item::Integer),
        _ => None,
    }
}

fn to_decimal<'a>(v: &Item<'a>) -> Option<Item<'a>> {
    match v {
        Item::Integer(n) | Item::Long(n) => Some(Item::Decimal(Decimal::from(*n))),
        Item::Decimal(d) => Some(Item::Decimal(*d)),
        Item::Boolean(b) => Some(Item::Decimal(if *b { Decimal::ONE } else { Decimal::ZERO })),
        Item::String(s) if is_decimal_text(s) => s.parse::<Decimal>().ok().map(Item::Decimal),
        _ => None,
    }
}

pub(crate) fn to_string(v: &Item<'_>) -> Option<String> {
    Some(match v {
        Item::Boolean(b) => b.to_string(),
        Item::Integer(n) | Item::Long(n) => n.to_string(),
        Item::Decimal(d) => d.to_string(),
        Item::String(s) => s.to_string(),
        Item::Date(d) => d.to_string(),
        Item::DateTime(d) => d.to_string(),
        Item::Time(t) => t.to_string(),
        Item::Quantity(q) => q.to_string(),
        Item::Node(_) | Item::TypeInfo(..) => return None,
    })
}

fn to_date<'a>(v: &Item<'a>) -> Option<Item<'a>> {
    match v {
        Item::Date(d) => Some(Item::Date(*d)),
        Item::DateTime(d) => Some(Item::Date(d.date())),
        Item::String(s) => Date::parse(s).or_else(|| DateTime::parse(s).map(|d| d.date())).map(Item::Date),
        _ => None,
    }
}

fn to_datetime<'a>(v: &Item<'a>) -> Option<Item<'a>> {
    match v {
        Item::DateTime(d) => Some(Item::DateTime(*d)),
        Item::Date(d) => Some(Item::DateTime(d.to_datetime())),
        Item::String(s) => DateTime::parse(s).map(Item::DateTime),
        _ => None,
    }
}

fn to_time<'a>(v: &Item<'a>) -> Option<Item<'a>> {
    match v {
        Item::Time(t) => Some(Item::Time(*t)),
        Item::String(s) => Time::parse(s.strip_prefix('T').unwrap_or(s)).map(Item::Time),
        _ => None,
    }
}

fn to_quantity(v: &Item<'_>) -> Option<Quantity> {
    match v {
        Item::Integer(n) | Item::Long(n) => Some(Quantity::new(Decimal::from(*n), "1")),
        Item::Decimal(d) => Some(Quantity::new(*d, "1")),
        Item::Quantity(q) => Some((**q).clone()),
        Item::Boolean(b) => Some(Quantity::new(if *b { Decimal::ONE } else { Decimal::ZERO }, "1")),
        Item::String(s) => parse_quantity_text(s),
        _ => None,
    }
}

/// `"5"`, `"5 'mg'"`, `"5 days"`.
fn parse_quantity_text(s: &str) -> Option<Quantity> {
    let s = s.trim();
    let (num, rest) = match s.find(' ') {
        Some(i) => (s.get(..i)?, s.get(i..)?.trim()),
        None => (s, ""),
    };
    if !is_decimal_text(num) {
        return None;
    }
    let value: Decimal = num.parse().ok()?;
    if rest.is_empty() {
        return Some(Quantity::new(value, "1"));
    }
    if let Some(u) = rest.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        return Some(Quantity::new(value, u));
    }
    crate::quantity::is_calendar_keyword(rest).then(|| Quantity::new(value, rest))
}

fn convert_quantity(q: &Quantity, unit: &str) -> Option<Quantity> {
    q.convert_to(unit)
}

fn precision_of(v: &Item<'_>) -> Option<i64> {
    use crate::datetime::Precision as P;
    Some(match v {
        Item::Decimal(d) => i64::from(d.scale()),
        Item::Integer(_) | Item::Long(_) => 0,
        Item::Date(d) => match d.precision() {
            P::Year => 4,
            P::Month => 6,
            _ => 8,
        },
        Item::DateTime(d) => match d.precision() {
            P::Year => 4,
            P::Month => 6,
            P::Day => 8,
            P::Hour => 10,
            P::Minute => 12,
            P::Second => 14,
            P::Millisecond => 17,
        },
        Item::Time(t) => match t.precision() {
            P::Hour => 2,
            P::Minute => 4,
            P::Second => 6,
            _ => 9,
        },
        _ => return None,
    })
}
