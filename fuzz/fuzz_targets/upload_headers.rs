//! Uploads' tus headers: each input line is `name: value` (bytes, as a client may send them);
//! the lines that make a valid HTTP header go into a request's headers, which are parsed as the
//! tus handlers parse `Tus-Resumable`, `Upload-Length`, `Upload-Offset` and `Upload-Metadata`
//! (base64 values of the document's fields). Refusing is fine; panicking is not.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let (name, value) = line.split_at(colon);
        let value = value.get(1..).unwrap_or_default();
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            headers.append(n, v);
        }
    }
    let _ = hearth_documents::fuzz_upload_headers(&headers);
});
