//! Finding encoded secrets that a tool wrapped across lines.
//!
//! `base64` wraps at 76 columns, `openssl base64` at 64, `xxd -p` at 60, and where the
//! breaks fall depends on where the secret sits in the stream, so no precomputed needle
//! can cover every wrapping. Instead the text is cut into *runs*: stretches of
//! base64-alphabet characters separated by single line breaks (a real `\n` or `\r\n`, or
//! the escaped `\n` of JSON text). Each run with at least one break is joined without its
//! breaks, the needles are searched in the joined text, and every match is mapped back
//! to the span it covers in the original text, breaks included.
//!
//! Text without a line break (most log lines) costs one scan for a newline and nothing
//! more.

use std::ops::Range;

/// Whether `byte` can appear in base64 (either alphabet, padding included) or hex output.
pub(super) fn is_alphabet(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'/' | b'=' | b'-' | b'_')
}

/// The line breaks a run may cross, longest first: real ones and JSON-escaped ones.
const BREAKS: [&[u8]; 4] = [b"\\r\\n", b"\r\n", b"\\n", b"\n"];

fn break_at(bytes: &[u8], at: usize) -> Option<usize> {
    BREAKS.iter().find(|b| bytes[at..].starts_with(b)).map(|b| b.len())
}

/// Spans of `text` where one of `needles` (all alphabet-only) occurs across a line break.
///
/// A run is only joined (allocated) when it crosses a break, so ordinary text costs a
/// pass over its bytes and nothing else.
pub(super) fn find_wrapped(text: &str, needles: &[String], shortest: usize) -> Vec<Range<usize>> {
    if needles.is_empty() || !(text.contains('\n') || text.contains("\\n")) {
        return Vec::new();
    }
    let bytes = text.as_bytes();
    let mut spans = Vec::new();
    // The current run: where it starts, how many alphabet characters it holds, how many
    // breaks it crossed between two of them, and whether a break was just passed.
    let (mut start, mut chars, mut crossings, mut after_break) = (0, 0, 0, false);
    let mut at = 0;
    while at <= bytes.len() {
        if at < bytes.len() && is_alphabet(bytes[at]) {
            if chars == 0 {
                start = at;
            }
            crossings += usize::from(after_break);
            (chars, after_break) = (chars + 1, false);
            at += 1;
            continue;
        }
        let next_break = if at < bytes.len() { break_at(bytes, at) } else { None };
        match next_break {
            Some(len) if chars > 0 && !after_break => {
                after_break = true;
                at += len;
            }
            _ => {
                if crossings > 0 && chars >= shortest {
                    search(text, start..at, needles, &mut spans);
                }
                (chars, crossings, after_break) = (0, 0, false);
                // A break that ended the run is skipped whole, never re-read as text.
                at += next_break.unwrap_or(1);
            }
        }
    }
    spans
}

/// Joins the run `range` of `text` without its breaks and maps needle matches back.
fn search(text: &str, range: Range<usize>, needles: &[String], spans: &mut Vec<Range<usize>>) {
    let bytes = text.as_bytes();
    let mut joined = String::with_capacity(range.len());
    let mut origin = Vec::with_capacity(range.len());
    let mut at = range.start;
    while at < range.end {
        // Inside a run, anything that is not an alphabet character starts a break (the
        // `n` of an escaped `\n` is in the alphabet, so breaks are skipped whole).
        match break_at(bytes, at) {
            Some(len) if !is_alphabet(bytes[at]) => at += len,
            _ => {
                joined.push(bytes[at] as char);
                origin.push(at);
                at += 1;
            }
        }
    }
    for needle in needles {
        for (start, found) in joined.match_indices(needle.as_str()) {
            let (first, last) = (origin[start], origin[start + found.len() - 1]);
            // Only matches that actually cross a break are this module's business.
            if last - first + 1 != found.len() {
                spans.push(first..last + 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrap(text: &str, width: usize, newline: &str) -> String {
        let chars: Vec<char> = text.chars().collect();
        chars.chunks(width).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join(newline)
    }

    #[test]
    fn a_needle_split_across_lines_is_found_with_its_breaks() {
        let needles = vec!["SECRETVALUE".to_string()];
        for newline in ["\n", "\r\n", "\\n"] {
            let text = format!("before: xxSECRET{newline}VALUEyy{newline}zz");
            let spans = find_wrapped(&text, &needles, 11);
            assert_eq!(spans.len(), 1, "{text:?}");
            assert_eq!(&text[spans[0].clone()], format!("SECRET{newline}VALUE"));
        }
    }

    #[test]
    fn every_wrap_width_and_position_is_found() {
        let needle = "c2VjcmV0LXRva2VuLXZhbHVl".to_string();
        for width in [4, 60, 64, 76] {
            for pad in 0..width {
                let stream = format!("{}{needle}{}", "A".repeat(pad), "B".repeat(90));
                let text = wrap(&stream, width, "\n");
                let spans = find_wrapped(&text, std::slice::from_ref(&needle), needle.len());
                let crosses = text.lines().all(|l| !l.contains(&needle));
                assert_eq!(spans.len(), usize::from(crosses), "width {width} pad {pad}");
            }
        }
    }

    #[test]
    fn text_without_breaks_or_with_blank_lines_between_is_left_alone() {
        let needles = vec!["SECRETVALUE".to_string()];
        assert!(find_wrapped("SECRET VALUE", &needles, 11).is_empty());
        assert!(find_wrapped("SECRET\n\nVALUE", &needles, 11).is_empty());
        assert!(find_wrapped("SECRET-\nVALU", &needles, 11).is_empty());
    }
}
