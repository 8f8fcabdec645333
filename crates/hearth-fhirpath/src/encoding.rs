//! `encode` / `decode` / `escape` / `unescape` (FHIRPath 2.0 string functions).

use crate::ast::Func;

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

pub(crate) fn apply(func: Func, s: &str, format: &str) -> Option<String> {
    match (func, format) {
        (Func::Encode, "base64") => Some(b64_encode(s.as_bytes(), B64, true)),
        (Func::Encode, "urlbase64") => Some(b64_encode(s.as_bytes(), B64URL, true)),
        (Func::Encode, "hex") => Some(s.bytes().map(|b| format!("{b:02x}")).collect()),
        (Func::Decode, "base64") => String::from_utf8(b64_decode(s, B64)?).ok(),
        (Func::Decode, "urlbase64") => String::from_utf8(b64_decode(s, B64URL)?).ok(),
        (Func::Decode, "hex") => {
            let bytes = s.as_bytes();
            if !bytes.len().is_multiple_of(2) {
                return None;
            }
            let mut out = Vec::with_capacity(bytes.len() / 2);
            for pair in bytes.chunks(2) {
                let text = std::str::from_utf8(pair).ok()?;
                out.push(u8::from_str_radix(text, 16).ok()?);
            }
            String::from_utf8(out).ok()
        }
        (Func::Escape, "html") => Some(
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
                .replace('\'', "&#39;"),
        ),
        (Func::Unescape, "html") => Some(
            s.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        ),
        (Func::Escape, "json") => {
            let quoted = serde_json::to_string(s).ok()?;
            quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"')).map(str::to_string)
        }
        (Func::Unescape, "json") => Some(json_unescape(s)),
        _ => None,
    }
}

fn json_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => {
                        out.push_str("\\u");
                        out.push_str(&hex);
                    }
                }
            }
            Some(c @ ('"' | '\\' | '/')) => out.push(c),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn b64_encode(data: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let sym = |i: u32| char::from(alphabet.get((i & 63) as usize).copied().unwrap_or(b'='));
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (b(0) << 16) | (b(1) << 8) | b(2);
        out.push(sym(n >> 18));
        out.push(sym(n >> 12));
        if chunk.len() > 1 {
            out.push(sym(n >> 6));
        } else if pad {
            out.push('=');
        }
        if chunk.len() > 2 {
            out.push(sym(n));
        } else if pad {
            out.push('=');
        }
    }
    out
}

fn b64_decode(s: &str, alphabet: &[u8; 64]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        if c == b'=' {
            break;
        }
        let v = alphabet.iter().position(|a| *a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        let e = apply(Func::Encode, "test", "base64").unwrap();
        assert_eq!(e, "dGVzdA==");
        assert_eq!(apply(Func::Decode, &e, "base64").unwrap(), "test");
    }
}
