//! `/telehealth/test`: a page that joins a room with camera and microphone, so anyone can check
//! their set-up (and what the browser tests drive). The page, its script and its styles are
//! embedded files; the script is served from `/telehealth/test.js`, so the page's policy allows
//! scripts from this origin only, with no `'unsafe-inline'`. The room and an access token come
//! in the URL's fragment (`#room=…&token=…`, never sent to the server) or are typed in.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The page's policy: nothing inline, nothing from another origin (the socket is this origin).
pub const TEST_PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
     img-src 'self' data:; media-src 'self' blob: mediastream:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

const HTML: &str = include_str!("assets/test.html");
const JS: &str = include_str!("assets/test.js");
const CSS: &str = include_str!("assets/test.css");

pub(crate) fn router() -> Router {
    Router::new()
        .route("/telehealth/test", get(|| async { asset(HTML, "text/html; charset=utf-8") }))
        .route("/telehealth/test.js", get(|| async { asset(JS, "text/javascript; charset=utf-8") }))
        .route("/telehealth/test.css", get(|| async { asset(CSS, "text/css; charset=utf-8") }))
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(TEST_PAGE_CSP));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_no_inline_script_or_style_and_its_policy_no_unsafe() {
        assert!(!TEST_PAGE_CSP.contains("unsafe"));
        assert!(HTML.contains(r#"<script src="/telehealth/test.js" defer></script>"#));
        assert_eq!(HTML.matches("<script").count(), 1);
        assert!(!HTML.contains("<style") && !HTML.contains(" style="));
        // No inline event handler attributes (onclick=…).
        assert!(!HTML.split_whitespace().any(|w| w.starts_with("on") && w.contains('=')));
    }
}
