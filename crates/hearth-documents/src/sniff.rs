//! The content type of an upload, from its bytes (a client's `Content-Type` is not trusted):
//! the formats a record keeps — PDF, JPEG, PNG, HEIC/HEIF, TIFF and DICOM (Part 10, stored as
//! is). Anything else is refused (`415`).

/// What the first bytes of a file say it is.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    let starts = |magic: &[u8]| head.starts_with(magic);
    if starts(b"%PDF-") {
        return Some("application/pdf");
    }
    if starts(&[0xFF, 0xD8, 0xFF]) {
        return Some("image/jpeg");
    }
    if starts(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        return Some("image/png");
    }
    if starts(b"II*\0") || starts(b"MM\0*") {
        return Some("image/tiff");
    }
    // ISO base media: a `ftyp` box first, whose major brand names HEIF/HEIC.
    if head.get(4..8) == Some(b"ftyp") {
        let brand = head.get(8..12).unwrap_or_default();
        return match brand {
            b"heic" | b"heix" | b"heim" | b"heis" | b"hevc" | b"hevx" => Some("image/heic"),
            b"mif1" | b"msf1" | b"heif" => Some("image/heif"),
            _ => None,
        };
    }
    // DICOM Part 10: a 128-byte preamble, then `DICM`.
    if head.get(128..132) == Some(b"DICM") {
        return Some("application/dicom");
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn formats_are_known_by_their_bytes() {
        assert_eq!(sniff(b"%PDF-1.7\n"), Some("application/pdf"));
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10]), Some("image/jpeg"));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), Some("image/png"));
        assert_eq!(sniff(b"II*\0\x08\0\0\0"), Some("image/tiff"));
        assert_eq!(sniff(b"MM\0*\0\0\0\x08"), Some("image/tiff"));
        assert_eq!(sniff(b"\0\0\0\x18ftypheic\0\0\0\0"), Some("image/heic"));
        assert_eq!(sniff(b"\0\0\0\x18ftypmif1\0\0\0\0"), Some("image/heif"));
        let mut dicom = vec![0u8; 128];
        dicom.extend_from_slice(b"DICM\x02\0");
        assert_eq!(sniff(&dicom), Some("application/dicom"));
    }

    #[test]
    fn anything_else_is_unknown() {
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(b"<html><script>"), None);
        assert_eq!(sniff(b"MZ\x90\0"), None);
        assert_eq!(sniff(b"\0\0\0\x18ftypisom"), None, "an MP4 video is not a document");
        assert_eq!(sniff(b"HRTHENC1"), None);
        assert_eq!(sniff(&[0u8; 127]), None);
    }
}
