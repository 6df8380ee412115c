//! The encoded forms of one secret that the masker searches for.
//!
//! Each form is a needle matched verbatim: the raw value, URL-encoded (both hex-digit
//! cases), JSON-escaped (once, and twice for JSON inside JSON), each line of a multi-line value, hex (both cases), and base64 at
//! each of the three byte offsets in both alphabets (the standard one also URL-encoded,
//! as it lands in query strings). Encodings whose characters are all base64-alphabet
//! characters (hex and base64) are also searched across line breaks (see `wrapped`).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

/// The needles of one secret, split by where they are searched.
#[derive(Default)]
pub(super) struct Forms {
    /// Searched in the text as it is.
    pub plain: Vec<String>,
    /// Also searched in runs of base64-alphabet lines with the line breaks removed.
    pub wrappable: Vec<String>,
}

/// Every form of `raw` at least `min_len` characters long.
pub(super) fn forms_of(raw: &str, min_len: usize) -> Forms {
    let long_enough = |n: &String| n.len() >= min_len;
    let mut plain = vec![raw.to_string(), percent_encode(raw, false), percent_encode(raw, true)];
    // JSON-escaped once, and twice: a message body shown inside JSON (`dlq show --json`,
    // a task echoed in an event) is a JSON string holding JSON.
    let mut escaped = raw.to_string();
    for _ in 0..2 {
        match serde_json::to_string(&escaped) {
            Ok(json) => escaped = json.trim_matches('"').to_string(),
            Err(_) => break,
        }
        plain.push(escaped.clone());
    }
    // A multi-line secret (a key file) may surface one line at a time.
    plain.extend(raw.lines().map(str::to_string));
    let mut wrappable = base64_forms(raw.as_bytes());
    // A token made of alphabet characters alone (most are) can be folded itself.
    if raw.bytes().all(super::wrapped::is_alphabet) {
        wrappable.push(raw.to_string());
    }
    wrappable.push(hex::encode(raw));
    wrappable.push(hex::encode_upper(raw));
    // The standard alphabet's `+` and `/` are URL-encoded in a query string, and some
    // JSON encoders (not serde's) escape `/` as `\/`.
    for form in base64_forms(raw.as_bytes()) {
        if form.contains(['+', '/']) {
            plain.push(percent_encode(&form, false));
            plain.push(percent_encode(&form, true));
        }
        if form.contains('/') {
            plain.push(form.replace('/', "\\/"));
        }
    }
    plain.extend(wrappable.iter().cloned());
    plain.retain(long_enough);
    wrappable.retain(long_enough);
    Forms { plain, wrappable }
}

/// The base64 text that `secret` turns into inside any base64 stream: the stream is cut
/// into 3-byte groups, so the secret starts at offset 0, 1 or 2 of a group, and each
/// offset gives different characters. For each offset, only the characters that depend on
/// the secret's bits alone are kept (the first ones may mix in the preceding byte, the
/// last ones the following byte), in both the standard and the URL-safe alphabet.
fn base64_forms(secret: &[u8]) -> Vec<String> {
    let mut forms = Vec::new();
    for offset in 0..3usize {
        let mut shifted = vec![0u8; offset];
        shifted.extend_from_slice(secret);
        // Character i covers bits 6i..6i+6; keep those inside the secret's bits.
        let first = (8 * offset).div_ceil(6);
        let end = 8 * (offset + secret.len()) / 6;
        if end <= first {
            continue;
        }
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            let encoded = engine.encode(&shifted);
            if let Some(core) = encoded.get(first..end) {
                forms.push(core.to_string());
            }
        }
    }
    forms
}

/// RFC 3986 percent-encoding of everything but unreserved characters; `lower` picks the
/// hex-digit case (both are valid and both occur).
fn percent_encode(raw: &str, lower: bool) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else if lower {
            out.push_str(&format!("%{byte:02x}"));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_in_both_cases_and_base64_are_wrappable_and_plain() {
        let forms = forms_of("ghp_abc\"def", 6);
        for hex in ["6768705f61626322646566", "6768705F61626322646566"] {
            assert!(forms.wrappable.iter().any(|f| f == hex), "{hex}");
            assert!(forms.plain.iter().any(|f| f == hex), "{hex}");
        }
        assert!(forms.plain.iter().any(|f| f == "ghp_abc%22def"));
        assert!(!forms.wrappable.iter().any(|f| f == "ghp_abc\"def"), "a quote is not in the alphabet");
        assert!(forms_of("ghp_abcdef", 6).wrappable.iter().any(|f| f == "ghp_abcdef"));
        // `?>?` encodes to `Pz4/` at offset 0: the `/` appears escaped and URL-encoded.
        let slashed = forms_of("?>??>??>?", 6);
        assert!(slashed.plain.iter().any(|f| f.contains("\\/")));
        assert!(
            slashed.plain.iter().any(|f| f.contains("%2F"))
                && slashed.plain.iter().any(|f| f.contains("%2f"))
        );
    }
}
