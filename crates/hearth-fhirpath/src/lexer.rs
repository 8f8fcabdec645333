//! Tokenizer for FHIRPath source text.

use std::fmt;

/// A parse failure with the byte offset where it was noticed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset into the expression text.
    pub position: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at offset {}", self.message, self.position)
    }
}

impl std::error::Error for ParseError {}

pub(crate) fn err<T>(position: usize, message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError { position, message: message.into() })
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    /// A plain identifier or keyword (`name`, `and`, `true`, `div`).
    Ident(String),
    /// A `` `delimited` `` identifier: never a keyword.
    Delimited(String),
    Str(String),
    /// Integer or decimal literal text.
    Number(String),
    /// `123L`
    Long(String),
    /// Text after `@`: a date or dateTime.
    DateTime(String),
    /// Text after `@T`.
    Time(String),
    /// `$this`, `$index`, `$total`
    Special(String),
    /// `%name`, `%'name'`, `` %`name` ``
    Env(String),
    Punct(&'static str),
    Eof,
}

#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub tok: Tok,
    pub pos: usize,
}

const PUNCTS: &[&str] =
    &["<=", ">=", "!=", "!~", ".", "[", "]", "(", ")", "{", "}", ",", "+", "-", "*", "/", "&", "|", "<", ">", "=", "~"];

pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>, ParseError> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let Some(&b) = bytes.get(i) else { break };
        if b.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let rest = src.get(i..).unwrap_or("");
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
            continue;
        }
        if rest.starts_with("/*") {
            match rest.get(2..).and_then(|r| r.find("*/")) {
                Some(end) => i += end + 4,
                None => return err(i, "unterminated comment"),
            }
            continue;
        }
        let start = i;
        let tok = match b {
            b'\'' => {
                let (s, len) = quoted(src, i, b'\'')?;
                i += len;
                Tok::Str(s)
            }
            b'`' => {
                let (s, len) = quoted(src, i, b'`')?;
                i += len;
                Tok::Delimited(s)
            }
            b'0'..=b'9' => {
                let mut j = i;
                while bytes.get(j).is_some_and(u8::is_ascii_digit) {
                    j += 1;
                }
                if bytes.get(j) == Some(&b'.') && bytes.get(j + 1).is_some_and(u8::is_ascii_digit) {
                    j += 1;
                    while bytes.get(j).is_some_and(u8::is_ascii_digit) {
                        j += 1;
                    }
                }
                let text = src.get(i..j).unwrap_or("").to_string();
                if bytes.get(j) == Some(&b'L') {
                    i = j + 1;
                    Tok::Long(text)
                } else {
                    i = j;
                    Tok::Number(text)
                }
            }
            b'@' => {
                let mut j = i + 1;
                let is_time = bytes.get(j) == Some(&b'T');
                if is_time {
                    j += 1;
                }
                let body_start = j;
                while let Some(&c) = bytes.get(j) {
                    let ok = c.is_ascii_digit() || matches!(c, b'-' | b':' | b'.' | b'T' | b'Z' | b'+');
                    if !ok {
                        break;
                    }
                    // A '.' only continues a literal when fractional seconds follow.
                    if c == b'.' && !bytes.get(j + 1).is_some_and(u8::is_ascii_digit) {
                        break;
                    }
                    j += 1;
                }
                let body = src.get(body_start..j).unwrap_or("").to_string();
                i = j;
                if body.is_empty() {
                    return err(start, "empty date/time literal");
                }
                if is_time { Tok::Time(body) } else { Tok::DateTime(body) }
            }
            b'$' => {
                let j = ident_end(bytes, i + 1);
                let name = src.get(i + 1..j).unwrap_or("").to_string();
                i = j;
                Tok::Special(name)
            }
            b'%' => {
                i += 1;
                match bytes.get(i) {
                    Some(b'\'') => {
                        let (s, len) = quoted(src, i, b'\'')?;
                        i += len;
                        Tok::Env(s)
                    }
                    Some(b'`') => {
                        let (s, len) = quoted(src, i, b'`')?;
                        i += len;
                        Tok::Env(s)
                    }
                    _ => {
                        // Environment names may contain '-' (`%vs-name`, `%ext-name`).
                        let mut j = i;
                        while bytes.get(j).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-') {
                            j += 1;
                        }
                        if j == i {
                            return err(start, "expected a name after '%'");
                        }
                        let name = src.get(i..j).unwrap_or("").to_string();
                        i = j;
                        Tok::Env(name)
                    }
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let j = ident_end(bytes, i);
                let name = src.get(i..j).unwrap_or("").to_string();
                i = j;
                Tok::Ident(name)
            }
            _ => match PUNCTS.iter().find(|p| rest.starts_with(**p)) {
                Some(p) => {
                    i += p.len();
                    Tok::Punct(p)
                }
                None => {
                    let ch = rest.chars().next().unwrap_or('?');
                    return err(i, format!("unexpected character '{ch}'"));
                }
            },
        };
        out.push(Token { tok, pos: start });
    }
    out.push(Token { tok: Tok::Eof, pos: src.len() });
    Ok(out)
}

fn ident_end(bytes: &[u8], mut j: usize) -> usize {
    while bytes.get(j).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') {
        j += 1;
    }
    j
}

/// Reads a quoted string starting at `start` (the opening quote); returns
/// the unescaped text and the number of bytes consumed.
fn quoted(src: &str, start: usize, quote: u8) -> Result<(String, usize), ParseError> {
    let body = src.get(start + 1..).unwrap_or("");
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((off, c)) = chars.next() {
        if c as u32 == u32::from(quote) {
            return Ok((out, off + 2));
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some((_, e)) = chars.next() else {
            break;
        };
        match e {
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'f' => out.push('\u{c}'),
            'u' => {
                let hex = |it: &mut std::str::CharIndices<'_>| -> Option<u32> {
                    let mut probe = it.clone();
                    let mut code = 0u32;
                    for _ in 0..4 {
                        code = code * 16 + probe.next()?.1.to_digit(16)?;
                    }
                    *it = probe;
                    Some(code)
                };
                match hex(&mut chars) {
                    Some(hi @ 0xD800..=0xDBFF) => {
                        // A surrogate pair spells one supplementary character.
                        let mut probe = chars.clone();
                        let lo = match (probe.next(), probe.next()) {
                            (Some((_, '\\')), Some((_, 'u'))) => hex(&mut probe),
                            _ => None,
                        };
                        match lo {
                            Some(lo @ 0xDC00..=0xDFFF) => {
                                chars = probe;
                                let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                                out.push(char::from_u32(c).unwrap_or('\u{fffd}'));
                            }
                            _ => out.push('\u{fffd}'),
                        }
                    }
                    Some(code) => out.push(char::from_u32(code).unwrap_or('\u{fffd}')),
                    // Not a valid escape: keep the text as written, minus the backslash.
                    None => out.push('u'),
                }
            }
            other => out.push(other),
        }
    }
    err(start, "unterminated string or identifier")
}
