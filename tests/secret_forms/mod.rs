//! The secret's forms the security tests plant and hunt for, and the real binary they
//! drive: a planted token, every encoding a test might print it in, the needles that must
//! never appear in anything the worker sends out, and the scan over those outputs.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};

/// A token with characters that URL-encoding and JSON-escaping both change.
pub fn planted_token(marker: &str) -> String {
    format!("ghp_{marker}{}/+\"Zq", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

pub fn percent_encode(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `text` cut into lines of `width` characters, as `base64` (76) and `openssl base64` (64)
/// print it.
pub fn wrap(text: &str, width: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(width).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join("\n")
}

/// How a test would print the token: raw, URL-encoded, JSON-escaped, base64 (both
/// alphabets) with 0, 1 and 2 bytes in front so every alignment occurs, hex in both
/// cases, and base64 wrapped at 76 and 64 columns with the token at every column.
pub fn echoed_forms(token: &str) -> Vec<String> {
    let mut forms = vec![token.to_string(), percent_encode(token), serde_json::to_string(token).unwrap()];
    for prefix in ["", "a", "ab"] {
        let bytes = format!("{prefix}{token}.");
        forms.push(STANDARD.encode(&bytes));
        forms.push(URL_SAFE_NO_PAD.encode(&bytes));
        forms.push(hex::encode(&bytes));
        forms.push(hex::encode_upper(&bytes));
    }
    for width in [76, 64] {
        for pad in (0..width * 3 / 4).step_by(5) {
            forms.push(wrap(&STANDARD.encode(format!("{}{token}.", "x".repeat(pad))), width));
        }
    }
    forms
}

/// What must never appear: the token and its encodings, base64 reduced to the characters
/// that depend on the token's bits alone (at each alignment, both alphabets), hex.
pub fn needles(secret: &str) -> Vec<String> {
    let mut needles =
        vec![secret.to_string(), percent_encode(secret), hex::encode(secret), hex::encode_upper(secret)];
    let escaped = serde_json::to_string(secret).unwrap().trim_matches('"').to_string();
    needles.push(serde_json::to_string(&escaped).unwrap().trim_matches('"').to_string());
    needles.push(escaped);
    for offset in 0..3usize {
        let mut bytes = vec![0u8; offset];
        bytes.extend_from_slice(secret.as_bytes());
        let (first, end) = ((8 * offset).div_ceil(6), 8 * (offset + secret.len()) / 6);
        needles.push(STANDARD_NO_PAD.encode(&bytes)[first..end].to_string());
        needles.push(URL_SAFE_NO_PAD.encode(&bytes)[first..end].to_string());
    }
    needles
}

/// Every (source, needle) pair found, in the text as it is and with its line breaks
/// (real or JSON-escaped) removed, so a wrapped encoding counts too.
pub fn scan(sources: &[(String, String)], secrets: &[&str]) -> Vec<(String, String)> {
    let mut hits = Vec::new();
    let unwrapped: Vec<String> = sources
        .iter()
        .map(|(_, t)| t.replace("\\r", "").replace("\\n", "").replace(['\r', '\n'], ""))
        .collect();
    for secret in secrets {
        for needle in needles(secret) {
            for ((name, text), joined) in sources.iter().zip(&unwrapped) {
                if text.contains(&needle) || joined.contains(&needle) {
                    hits.push((name.clone(), needle.clone()));
                }
            }
        }
    }
    hits
}

pub fn files_under(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push((
                path.display().to_string(),
                String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into(),
            ));
        }
    }
}

pub fn binary(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agent-runner"))
        .args(args)
        .current_dir(dir)
        .env_remove("OPENAI_API_KEY")
        .env_remove("AMQP_URL")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}
