//! Pratt parser from tokens to [`Expr`].
//!
//! Precedence, loosest first (FHIRPath N1 §"Operator precedence"):
//! `implies` < `or xor` < `and` < `in contains` < `= ~ != !~` <
//! `< > <= >=` < `|` < `is as` < `+ - &` < `* / div mod` < unary `+ -` <
//! `.` and `[]`.

use rust_decimal::Decimal;
use std::borrow::Cow;

use crate::ast::{BinOp, Call, Expr, Func, Name, TypeSpec};
use crate::datetime::{Date, DateTime, Time};
use crate::lexer::{ParseError, Tok, Token, err, tokenize};
use crate::quantity::Quantity;
use crate::value::Item;

/// Nesting limit (parentheses, operators, invocation chains, arguments):
/// deeper expressions are rejected rather than risking the stack while
/// parsing, evaluating or dropping the tree.
const MAX_DEPTH: usize = 64;

pub(crate) fn parse_expr(src: &str) -> Result<Expr, ParseError> {
    let tokens = tokenize(src)?;
    let mut p = Parser { tokens, i: 0, depth: 0 };
    let e = p.expression(0)?;
    match p.peek() {
        Tok::Eof => Ok(e),
        other => err(p.pos(), format!("unexpected {}", describe(other))),
    }
}

struct Parser {
    tokens: Vec<Token>,
    i: usize,
    depth: usize,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) | Tok::Delimited(s) => format!("identifier '{s}'"),
        Tok::Str(_) => "string literal".into(),
        Tok::Number(n) | Tok::Long(n) => format!("number {n}"),
        Tok::DateTime(_) | Tok::Time(_) => "date/time literal".into(),
        Tok::Special(s) => format!("'${s}'"),
        Tok::Env(s) => format!("'%{s}'"),
        Tok::Punct(p) => format!("'{p}'"),
        Tok::Eof => "end of expression".into(),
    }
}

const CALENDAR_UNITS: &[&str] = &[
    "year",
    "years",
    "month",
    "months",
    "week",
    "weeks",
    "day",
    "days",
    "hour",
    "hours",
    "minute",
    "minutes",
    "second",
    "seconds",
    "millisecond",
    "milliseconds",
];

/// Binding power of an infix operator token.
fn infix(tok: &Tok) -> Option<(u8, Infix)> {
    Some(match tok {
        Tok::Punct(".") => (13, Infix::Dot),
        Tok::Punct("[") => (13, Infix::Index),
        Tok::Punct("*") => (10, Infix::Bin(BinOp::Mul)),
        Tok::Punct("/") => (10, Infix::Bin(BinOp::Div)),
        Tok::Ident(s) if s == "div" => (10, Infix::Bin(BinOp::IntDiv)),
        Tok::Ident(s) if s == "mod" => (10, Infix::Bin(BinOp::Mod)),
        Tok::Punct("+") => (9, Infix::Bin(BinOp::Add)),
        Tok::Punct("-") => (9, Infix::Bin(BinOp::Sub)),
        Tok::Punct("&") => (9, Infix::Bin(BinOp::Concat)),
        Tok::Ident(s) if s == "is" => (8, Infix::Is),
        Tok::Ident(s) if s == "as" => (8, Infix::As),
        Tok::Punct("|") => (7, Infix::Bin(BinOp::Union)),
        Tok::Punct("<") => (6, Infix::Bin(BinOp::Lt)),
        Tok::Punct("<=") => (6, Infix::Bin(BinOp::Le)),
        Tok::Punct(">") => (6, Infix::Bin(BinOp::Gt)),
        Tok::Punct(">=") => (6, Infix::Bin(BinOp::Ge)),
        Tok::Punct("=") => (5, Infix::Bin(BinOp::Eq)),
        Tok::Punct("!=") => (5, Infix::Bin(BinOp::Ne)),
        Tok::Punct("~") => (5, Infix::Bin(BinOp::Equiv)),
        Tok::Punct("!~") => (5, Infix::Bin(BinOp::NotEquiv)),
        Tok::Ident(s) if s == "in" => (4, Infix::Bin(BinOp::In)),
        Tok::Ident(s) if s == "contains" => (4, Infix::Bin(BinOp::Contains)),
        Tok::Ident(s) if s == "and" => (3, Infix::Bin(BinOp::And)),
        Tok::Ident(s) if s == "or" => (2, Infix::Bin(BinOp::Or)),
        Tok::Ident(s) if s == "xor" => (2, Infix::Bin(BinOp::Xor)),
        Tok::Ident(s) if s == "implies" => (1, Infix::Bin(BinOp::Implies)),
        _ => return None,
    })
}

#[derive(Clone, Copy)]
enum Infix {
    Dot,
    Index,
    Is,
    As,
    Bin(BinOp),
}

const UNARY_BP: u8 = 11;

impl Parser {
    fn peek(&self) -> &Tok {
        self.tokens.get(self.i).map_or(&Tok::Eof, |t| &t.tok)
    }

    fn pos(&self) -> usize {
        self.tokens.get(self.i).map_or(0, |t| t.pos)
    }

    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        self.i += 1;
        t
    }

    fn expect(&mut self, p: &'static str) -> Result<(), ParseError> {
        if self.peek() == &Tok::Punct(p) {
            self.i += 1;
            Ok(())
        } else {
            err(self.pos(), format!("expected '{p}', found {}", describe(self.peek())))
        }
    }

    fn expression(&mut self, min_bp: u8) -> Result<Expr, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return err(self.pos(), "expression nested too deeply");
        }
        let entry_depth = self.depth;
        let mut lhs = self.prefix()?;
        while let Some((bp, op)) = infix(self.peek()) {
            if bp <= min_bp {
                break;
            }
            // Every operator applied nests the tree one level deeper.
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return err(self.pos(), "expression nested too deeply");
            }
            let op_pos = self.pos();
            self.i += 1;
            lhs = match op {
                Infix::Dot => self.invocation(Some(lhs))?,
                Infix::Index => {
                    let idx = self.expression(0)?;
                    self.expect("]")?;
                    Expr::Index(Box::new(lhs), Box::new(idx))
                }
                Infix::Is | Infix::As => {
                    let ty = self.type_specifier()?;
                    if matches!(op, Infix::Is) { Expr::Is(Box::new(lhs), ty) } else { Expr::As(Box::new(lhs), ty) }
                }
                Infix::Bin(b) => {
                    let rhs = self.expression(bp)?;
                    let _ = op_pos;
                    Expr::Binary(b, Box::new(lhs), Box::new(rhs))
                }
            };
        }
        self.depth = entry_depth - 1;
        Ok(lhs)
    }

    fn type_specifier(&mut self) -> Result<TypeSpec, ParseError> {
        let pos = self.pos();
        let first = match self.next() {
            Tok::Ident(s) | Tok::Delimited(s) => s,
            other => return err(pos, format!("expected a type name, found {}", describe(&other))),
        };
        if (first == "FHIR" || first == "System") && self.peek() == &Tok::Punct(".") {
            self.i += 1;
            let pos = self.pos();
            return match self.next() {
                Tok::Ident(s) | Tok::Delimited(s) => Ok(TypeSpec { namespace: Some(first), name: s }),
                other => err(pos, format!("expected a type name, found {}", describe(&other))),
            };
        }
        Ok(TypeSpec { namespace: None, name: first })
    }

    fn prefix(&mut self) -> Result<Expr, ParseError> {
        let pos = self.pos();
        match self.next() {
            Tok::Punct("-") => {
                let e = self.expression(UNARY_BP)?;
                Ok(negate_literal(e))
            }
            Tok::Punct("+") => self.expression(UNARY_BP),
            Tok::Punct("(") => {
                let e = self.expression(0)?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Punct("{") => {
                self.expect("}")?;
                Ok(Expr::Empty)
            }
            Tok::Str(s) => Ok(Expr::Literal(Item::String(Cow::Owned(s)))),
            Tok::Number(n) => self.number(pos, &n),
            Tok::Long(n) => match n.parse::<i64>() {
                Ok(v) => Ok(Expr::Literal(Item::Long(v))),
                Err(_) => err(pos, "long literal out of range"),
            },
            Tok::DateTime(s) => date_literal(pos, &s),
            Tok::Time(s) => match Time::parse(&s) {
                Some(t) => Ok(Expr::Literal(Item::Time(t))),
                None => err(pos, format!("invalid time literal '@T{s}'")),
            },
            Tok::Special(s) => match s.as_str() {
                "this" => Ok(Expr::This),
                "index" => Ok(Expr::IndexVar),
                "total" => Ok(Expr::Total),
                _ => err(pos, format!("unknown special variable '${s}'")),
            },
            Tok::Env(s) => Ok(Expr::Env(s)),
            Tok::Ident(s) if s == "true" => Ok(Expr::Literal(Item::Boolean(true))),
            Tok::Ident(s) if s == "false" => Ok(Expr::Literal(Item::Boolean(false))),
            Tok::Ident(_) | Tok::Delimited(_) => {
                self.i -= 1;
                self.invocation(None)
            }
            other => err(pos, format!("unexpected {}", describe(&other))),
        }
    }

    fn number(&mut self, pos: usize, text: &str) -> Result<Expr, ParseError> {
        let unit = match self.peek() {
            Tok::Str(u) => Some(u.clone()),
            Tok::Ident(u) if CALENDAR_UNITS.contains(&u.as_str()) => Some(u.clone()),
            _ => None,
        };
        if let Some(unit) = unit {
            self.i += 1;
            let value: Decimal = match text.parse() {
                Ok(v) => v,
                Err(_) => return err(pos, "number out of range"),
            };
            return Ok(Expr::Literal(Item::Quantity(Box::new(Quantity::new(value, unit)))));
        }
        if text.contains('.') {
            match text.parse::<Decimal>() {
                Ok(d) => Ok(Expr::Literal(Item::Decimal(d))),
                Err(_) => err(pos, "decimal literal out of range"),
            }
        } else {
            match text.parse::<i64>() {
                Ok(v) if i32::try_from(v).is_ok() => Ok(Expr::Literal(Item::Integer(v))),
                // Too large for System.Integer: keep it as a decimal value.
                _ => match text.parse::<Decimal>() {
                    Ok(d) => Ok(Expr::Literal(Item::Decimal(d))),
                    Err(_) => err(pos, "integer literal out of range"),
                },
            }
        }
    }

    /// An identifier or function call, optionally applied to `target`.
    fn invocation(&mut self, target: Option<Expr>) -> Result<Expr, ParseError> {
        let pos = self.pos();
        let name = match self.next() {
            Tok::Ident(s) | Tok::Delimited(s) => s,
            Tok::Special(s) if target.is_some() && s == "this" => {
                // `x.$this` is just `x`.
                return target.ok_or_else(|| ParseError { position: pos, message: "unexpected '$this'".into() });
            }
            other => {
                return err(pos, format!("expected an identifier or function, found {}", describe(&other)));
            }
        };
        if self.peek() != &Tok::Punct("(") {
            return Ok(match target {
                Some(t) => Expr::Member(Box::new(t), Name::new(&name)),
                None => Expr::Ident(Name::new(&name)),
            });
        }
        self.i += 1;
        let mut args = Vec::new();
        if self.peek() != &Tok::Punct(")") {
            loop {
                args.push(self.expression(0)?);
                if self.peek() == &Tok::Punct(",") {
                    self.i += 1;
                    continue;
                }
                break;
            }
        }
        self.expect(")")?;
        let Some((func, min, max)) = Func::lookup(&name) else {
            return err(pos, format!("unknown function '{name}'"));
        };
        if args.len() < min || args.len() > max {
            return err(
                pos,
                format!(
                    "function '{name}' takes {} argument(s), got {}",
                    if min == max { min.to_string() } else { format!("{min}..{max}") },
                    args.len()
                ),
            );
        }
        let type_arg = if func.takes_type() {
            match args.first().and_then(TypeSpec::from_expr) {
                Some(t) => Some(t),
                None => return err(pos, format!("'{name}' expects a type name")),
            }
        } else {
            None
        };
        let flag_arg = if func == Func::ReplaceMatches { 2 } else { 1 };
        let regex = match (func, args.first()) {
            (Func::Matches | Func::MatchesFull | Func::ReplaceMatches, Some(Expr::Literal(Item::String(pat))))
                if args.len() <= flag_arg =>
            {
                let full = func == Func::MatchesFull;
                match crate::functions::compile_regex(pat, full, "") {
                    Ok(r) => Some(r),
                    Err(msg) => return err(pos, msg),
                }
            }
            _ => None,
        };
        Ok(Expr::Call(Box::new(Call { target, func, args, type_arg, regex, pos })))
    }
}

/// `-5` is a literal, not an operation, so `-5.abs()`-style chains and
/// `(-1).exp()` evaluate as written.
fn negate_literal(e: Expr) -> Expr {
    match e {
        Expr::Literal(Item::Integer(i)) => Expr::Literal(Item::Integer(-i)),
        Expr::Literal(Item::Decimal(d)) => Expr::Literal(Item::Decimal(-d)),
        Expr::Literal(Item::Long(i)) => Expr::Literal(Item::Long(-i)),
        Expr::Literal(Item::Quantity(mut q)) => {
            q.value = -q.value;
            Expr::Literal(Item::Quantity(q))
        }
        other => Expr::Neg(Box::new(other)),
    }
}

fn date_literal(pos: usize, s: &str) -> Result<Expr, ParseError> {
    if !s.contains('T')
        && let Some(d) = Date::parse(s)
    {
        return Ok(Expr::Literal(Item::Date(d)));
    }
    match DateTime::parse(s) {
        Some(dt) => Ok(Expr::Literal(Item::DateTime(dt))),
        None => err(pos, format!("invalid date/time literal '@{s}'")),
    }
}
