//! Twilio's request signature (`X-Twilio-Signature`): base64 of HMAC-SHA1, keyed with the
//! account's auth token, over the full callback URL followed by every POST parameter's name and
//! value, sorted by name. Used to verify status callbacks (and by tests to sign them as Twilio would).

use data_encoding::BASE64;
use ring::hmac;

fn signing_input(url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut s = String::from(url);
    for (k, v) in sorted {
        s.push_str(k);
        s.push_str(v);
    }
    s
}

/// The signature Twilio sends for a POST of `params` to `url`.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth_token.as_bytes());
    BASE64.encode(hmac::sign(&key, signing_input(url, params).as_bytes()).as_ref())
}

/// Whether `given` is the right signature (compared in constant time).
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], given: &str) -> bool {
    let Ok(tag) = BASE64.decode(given.trim().as_bytes()) else { return false };
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth_token.as_bytes());
    hmac::verify(&key, signing_input(url, params).as_bytes(), &tag).is_ok()
}

/// Twilio message status → Hearth delivery status (`None`: an intermediate state to ignore).
pub fn delivery_status(twilio: &str) -> Option<&'static str> {
    match twilio {
        "sent" => Some("sent"),
        "delivered" | "read" => Some("delivered"),
        "undelivered" => Some("bounced"),
        "failed" | "canceled" => Some("failed"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    /// The worked example of Twilio's security documentation.
    #[test]
    fn twilio_documented_example() {
        let params = p(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let sig = signature("12345", url, &params);
        assert_eq!(sig, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
        assert!(verify("12345", url, &params, &sig));
        assert!(!verify("12346", url, &params, &sig));
        assert!(!verify("12345", "https://mycompany.com/other", &params, &sig));
        assert!(!verify("12345", url, &params, "not base64!"));
        assert_eq!(delivery_status("undelivered"), Some("bounced"));
        assert_eq!(delivery_status("queued"), None);
    }
}
