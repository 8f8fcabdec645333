//! A text document as a PDF: plain text set in the PDF standard font Helvetica (nothing
//! embedded), wrapped to the page, A4 portrait, as many pages as it takes. The one PDF writer of
//! the workflows: scheduling's letters and medication's e-prescriptions.
//!
//! Decisions:
//! - Written by hand (a page of PDF 1.4 objects) rather than with a PDF crate: a letter or a
//!   prescription is a title, a few marks and paragraphs, which is all this needs to lay out.
//! - The standard fonts cover Latin-1 (WinAnsi) only, and embedding fonts for every script is
//!   out of proportion here: a character outside Latin-1 is set as `?` in the PDF. The HTML
//!   rendition and the plain text beside it on the same `DocumentReference` carry every script
//!   exactly.
//! - Lines are wrapped at word boundaries by character count ([`WRAP`]), which fits Helvetica
//!   10 pt on the page for ordinary text; a longer word is cut.

use chrono::{DateTime, Utc};

/// Characters per line (Helvetica 10 pt averages ~5 pt a character; 495 pt of text width).
const WRAP: usize = 90;
/// Lines per page (14 pt leading, 50 pt margins on an 842 pt page).
const LINES: usize = 52;

/// Text as a PDF string literal: Latin-1 as octal escapes where needed, anything else `?`.
fn literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('(');
    for c in s.chars() {
        match c {
            '(' | ')' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            '\u{a0}'..='\u{ff}' => out.push_str(&format!("\\{:03o}", u32::from(c))),
            _ => out.push('?'),
        }
    }
    out.push(')');
    out
}

/// `text` wrapped into lines of at most [`WRAP`] characters (blank lines kept).
fn wrap(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for raw in text.lines() {
        let mut line = String::new();
        for word in raw.split_whitespace() {
            let mut word: Vec<char> = word.chars().collect();
            while word.len() > WRAP {
                if !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                }
                lines.push(word.drain(..WRAP).collect());
            }
            let word: String = word.into_iter().collect();
            let len = line.chars().count();
            if len > 0 && len + 1 + word.chars().count() > WRAP {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(&word);
        }
        lines.push(line);
    }
    lines
}

/// Whether every character of `s` shows as itself in the PDF (Latin-1); anything else is `?`.
pub fn shows(s: &str) -> bool {
    s.chars().all(|c| matches!(c, ' '..='~' | '\u{a0}'..='\u{ff}'))
}

/// The PDF of a letter: `title` large, then `mark` (DRAFT, AMENDED) if any, the date, and the text.
pub fn letter(title: &str, text: &str, mark: Option<&str>, date: DateTime<Utc>) -> Vec<u8> {
    let mut body: Vec<(u8, String)> = vec![(16, title.to_owned()), (10, String::new())];
    if let Some(mark) = mark {
        body.push((12, mark.to_owned()));
    }
    body.push((10, date.format("%Y-%m-%d").to_string()));
    body.push((10, String::new()));
    body.extend(wrap(text).into_iter().map(|l| (10, l)));
    lines(&body)
}

/// The PDF of `title` large, then `text` wrapped (10 pt).
pub fn text(title: &str, text: &str) -> Vec<u8> {
    let mut body: Vec<(u8, String)> = vec![(16, title.to_owned()), (10, String::new())];
    body.extend(wrap(text).into_iter().map(|l| (10, l)));
    lines(&body)
}

/// The PDF of lines already laid out: (font size in points, text), [`LINES`] to a page.
fn lines(body: &[(u8, String)]) -> Vec<u8> {
    let pages: Vec<&[(u8, String)]> = body.chunks(LINES).collect();

    // Objects: 1 catalog, 2 page tree, 3 font, then a page and its content stream per page.
    let mut objects: Vec<String> = Vec::new();
    objects.push("<< /Type /Catalog /Pages 2 0 R >>".to_owned());
    let kids: Vec<String> = (0..pages.len()).map(|i| format!("{} 0 R", 4 + 2 * i)).collect();
    objects.push(format!("<< /Type /Pages /Kids [{}] /Count {} >>", kids.join(" "), pages.len()));
    objects.push("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_owned());
    for (i, lines) in pages.iter().enumerate() {
        let mut stream = String::from("BT\n50 792 Td\n14 TL\n");
        for (size, line) in lines.iter() {
            stream.push_str(&format!("/F1 {size} Tf\n{} Tj\nT*\n", literal(line)));
        }
        stream.push_str("ET\n");
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
            5 + 2 * i
        ));
        objects.push(format!("<< /Length {} >>\nstream\n{stream}endstream", stream.len()));
    }

    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, object) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{object}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for offset in offsets {
        out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1).as_bytes(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(pdf: &[u8]) -> String {
        String::from_utf8_lossy(pdf).into_owned()
    }

    /// Every cross-reference entry points at its object, and `startxref` at the table.
    fn check_structure(pdf: &[u8]) -> usize {
        let s = text_of(pdf);
        assert!(s.starts_with("%PDF-1.4\n") && s.ends_with("%%EOF\n"));
        let start: usize = s.rsplit("startxref\n").next().unwrap().lines().next().unwrap().parse().unwrap();
        assert!(pdf[start..].starts_with(b"xref\n"));
        let table = text_of(&pdf[start..]);
        let mut lines = table.lines().skip(1);
        let count: usize = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        for (n, line) in lines.skip(1).take(count - 1).enumerate() {
            let offset: usize = line[..10].parse().unwrap();
            assert!(pdf[offset..].starts_with(format!("{} 0 obj", n + 1).as_bytes()), "object {}", n + 1);
        }
        count - 1
    }

    #[test]
    fn a_letter_is_a_well_formed_pdf_with_its_text() {
        let date = DateTime::parse_from_rfc3339("2026-10-22T09:00:00Z").unwrap().with_timezone(&Utc);
        let pdf = letter("Discharge (ward 3)", "Dear Dr Rao,\n\nBP 120/80 \\ stable. Café.", Some("AMENDED"), date);
        assert_eq!(check_structure(&pdf), 5);
        let s = text_of(&pdf);
        assert!(s.contains("(Discharge \\(ward 3\\)) Tj"), "{s}");
        assert!(s.contains("(AMENDED) Tj") && s.contains("(2026-10-22) Tj"));
        assert!(s.contains("(BP 120/80 \\\\ stable. Caf\\351.) Tj"), "{s}");
        // Each stream's declared length is its length.
        for part in s.split("<< /Length ").skip(1) {
            let (n, rest) = part.split_once(" >>\nstream\n").unwrap();
            let end = rest.find("endstream").unwrap();
            assert_eq!(n.parse::<usize>().unwrap(), rest[..end].len());
        }
    }

    #[test]
    fn a_text_document_has_its_title_and_lines_and_shows_says_what_prints_as_itself() {
        let pdf = text("e-Prescription", "Patient: Asha Rao\nAge: 42 years");
        assert_eq!(check_structure(&pdf), 5);
        let s = text_of(&pdf);
        assert!(s.contains("/F1 16 Tf\n(e-Prescription) Tj"), "{s}");
        assert!(s.contains("(Patient: Asha Rao) Tj") && s.contains("(Age: 42 years) Tj"), "{s}");
        assert!(shows("Café Rao") && !shows("आशा राव") && !shows("Asha 😀"));
    }

    #[test]
    fn long_text_wraps_and_flows_onto_more_pages_and_other_scripts_become_question_marks() {
        let date = Utc::now();
        let text = "word ".repeat(3000) + "\n" + &"x".repeat(200) + "\nनमस्ते";
        let pdf = letter("Long", &text, None, date);
        let objects = check_structure(&pdf);
        let pages = (objects - 3) / 2;
        assert!(pages > 3, "{pages} pages");
        let s = text_of(&pdf);
        assert!(s.contains(&format!("/Count {pages}")));
        assert!(s.contains(&format!("({}) Tj", "x".repeat(WRAP))), "a long word is cut at the wrap width");
        assert!(s.contains("(??????) Tj"));
        assert!(wrap(&text).iter().all(|l| l.chars().count() <= WRAP));
    }
}
