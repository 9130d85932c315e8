//! Threat detection: SQL injection and XSS with libinjectionrs (a pure-Rust port of
//! libinjection's tokenizing detectors), path traversal by a check of our own on decoded
//! input (percent-encoding decoded up to three times, `%uXXXX`, overlong UTF-8 and
//! full-width forms of `.`, `/` and `\`).

use std::borrow::Cow;

use serde::Deserialize;

use crate::policy::{Reason, Request};

/// `threats` of a rule.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ThreatMode {
    /// Detections answer 403.
    Block,
    /// Detections are logged and counted, never blocked (the default).
    #[default]
    Log,
    /// No scanning.
    Off,
}

/// Headers scanned: those that carry free text a client controls and that applications
/// commonly log, echo or store. Credentials (`authorization`, API keys) and structured
/// headers (`content-type`, `accept`, `x-forwarded-for`) are not scanned.
pub const SCANNED_HEADERS: [&str; 3] = ["user-agent", "referer", "cookie"];

/// How many rounds of percent-decoding are applied (catches double and triple encoding).
const DECODE_ROUNDS: usize = 3;
/// Longest input scanned per value; longer values are scanned in their first part.
const MAX_SCAN_BYTES: usize = 16 * 1024;

/// The first threat found in the path, query parameters and scanned headers.
pub fn scan_request(request: &Request) -> Option<Reason> {
    let path = request.path_without_query();
    if let Some(reason) = scan_path(path) {
        return Some(reason);
    }
    if let Some(reason) = request.query().and_then(scan_pairs) {
        return Some(reason);
    }
    for name in SCANNED_HEADERS {
        for value in request.header_values(name) {
            // Traversal too in cookie values (file names in cookies are a classic inclusion
            // vector) and in the referer (browsers send it with dot segments resolved).
            let found = match name {
                "cookie" => value.split(';').find_map(|cookie| {
                    let value = cookie.split_once('=').map_or(cookie, |(_, v)| v);
                    scan_encoded(value.trim(), false, true)
                }),
                "referer" => scan_encoded(value, false, true),
                _ => scan_encoded(value, false, false),
            };
            if found.is_some() {
                return found;
            }
        }
    }
    None
}

/// `name=value&...` pairs (a query, or a form body), each name and value decoded.
fn scan_pairs(pairs: &str) -> Option<Reason> {
    pairs.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        scan_encoded(name, true, true).or_else(|| scan_encoded(value, true, true))
    })
}

/// A form body (`application/x-www-form-urlencoded`), scanned as a query.
pub fn scan_form(body: &[u8]) -> Option<Reason> {
    scan_pairs(&String::from_utf8_lossy(body))
}

/// The path: traversal on the whole decoded path, SQLi/XSS on each decoded segment.
fn scan_path(path: &str) -> Option<Reason> {
    let decoded = decodings(path.as_bytes(), false);
    if decoded.iter().any(|d| has_traversal(d)) {
        return Some(Reason::ThreatTraversal);
    }
    let last = decoded.last()?;
    last.split(|b| *b == b'/')
        .filter(|segment| !segment.is_empty())
        .find_map(injection)
}

/// A query part (`+` is a space), cookie or header value.
fn scan_encoded(value: &str, plus_is_space: bool, traversal: bool) -> Option<Reason> {
    if value.is_empty() {
        return None;
    }
    let decoded = decodings(value.as_bytes(), plus_is_space);
    if traversal && decoded.iter().any(|d| has_traversal(d)) {
        return Some(Reason::ThreatTraversal);
    }
    // Injection on the form the application sees (decoded once) and on the fully decoded
    // form (double encoding); the raw form adds false positives, not detections.
    let once = decoded.get(1).or(decoded.first())?;
    let last = decoded.last()?;
    injection(once).or_else(|| if last == once { None } else { injection(last) })
}

/// A JSON string value or member name (already decoded by the JSON parser).
pub fn scan_text(text: &str) -> Option<Reason> {
    let bytes = text.as_bytes();
    if is_plain_word(bytes) {
        return None;
    }
    if has_traversal(bytes) {
        return Some(Reason::ThreatTraversal);
    }
    injection(bytes)
}

/// ASCII letters, digits and `_` only: one token to libinjection, from which it builds no
/// SQL or HTML (the tests check it over thousands of keyword and number combinations), and
/// no path or percent sign. Most JSON member names and many values are such words, and
/// skipping libinjection for them is most of the cost of screening a JSON body.
fn is_plain_word(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

/// SQL injection, then XSS. Plain words (most path segments, member names and parameter
/// values) skip libinjection, which would find nothing in them.
fn injection(input: &[u8]) -> Option<Reason> {
    if is_plain_word(input) {
        return None;
    }
    libinjection_finds(input)
}

/// What libinjection finds: SQL injection, then XSS.
fn libinjection_finds(input: &[u8]) -> Option<Reason> {
    let input = input.get(..MAX_SCAN_BYTES).unwrap_or(input);
    if input.len() < 2 {
        return None;
    }
    if libinjectionrs::detect_sqli(input).is_injection() {
        return Some(Reason::ThreatSqli);
    }
    if libinjectionrs::detect_xss(input).is_injection() {
        return Some(Reason::ThreatXss);
    }
    None
}

/// The input and its successive percent-decodings, until decoding changes nothing.
fn decodings(input: &[u8], plus_is_space: bool) -> Vec<Cow<'_, [u8]>> {
    let mut forms: Vec<Cow<'_, [u8]>> = vec![Cow::Borrowed(input)];
    for round in 0..DECODE_ROUNDS {
        let Some(current) = forms.last() else { break };
        // `+` means a space only in the first (form-encoding) round.
        let next = percent_decode(current, plus_is_space && round == 0);
        if next.as_slice() == current.as_ref() {
            break;
        }
        forms.push(Cow::Owned(next));
    }
    forms
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `%XX` and IIS-style `%uXXXX` (encoded as UTF-8); malformed escapes are kept as they are.
pub fn percent_decode(input: &[u8], plus_is_space: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        if b == b'%' {
            let at = |k: usize| input.get(i + k).copied().and_then(hex);
            if let (Some(h), Some(l)) = (at(1), at(2)) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
            if matches!(input.get(i + 1), Some(b'u' | b'U')) {
                if let (Some(a), Some(b2), Some(c), Some(d)) = (at(2), at(3), at(4), at(5)) {
                    let code =
                        u32::from(a) << 12 | u32::from(b2) << 8 | u32::from(c) << 4 | u32::from(d);
                    if let Some(ch) = char::from_u32(code) {
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        i += 6;
                        continue;
                    }
                }
            }
        }
        out.push(if b == b'+' && plus_is_space { b' ' } else { b });
        i += 1;
    }
    out
}

/// Overlong UTF-8 and full-width forms of `.`, `/` and `\` that some servers and file
/// systems fold to ASCII.
const LOOKALIKES: [(&[u8], u8); 10] = [
    (&[0xC0, 0xAE], b'.'),
    (&[0xC0, 0xAF], b'/'),
    (&[0xC1, 0x9C], b'\\'),
    (&[0xE0, 0x80, 0xAE], b'.'),
    (&[0xE0, 0x80, 0xAF], b'/'),
    (&[0xF0, 0x80, 0x80, 0xAE], b'.'),
    (&[0xF0, 0x80, 0x80, 0xAF], b'/'),
    ("\u{FF0E}".as_bytes(), b'.'),
    ("\u{FF0F}".as_bytes(), b'/'),
    ("\u{FF3C}".as_bytes(), b'\\'),
];

/// Folds look-alikes to ASCII and `\` to `/`.
fn fold(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    'outer: while let Some(&b) = input.get(i) {
        if b >= 0x80 {
            for (form, ascii) in LOOKALIKES {
                if input.get(i..i + form.len()) == Some(form) {
                    out.push(if ascii == b'\\' { b'/' } else { ascii });
                    i += form.len();
                    continue 'outer;
                }
            }
        }
        out.push(if b == b'\\' { b'/' } else { b });
        i += 1;
    }
    out
}

/// A `..` path segment: `../`, `/..`, `..\`, a value that is `..`, with the tricks
/// servers fold away: `..;/` (path parameters), `.. /` and `../` followed by a NUL.
pub fn has_traversal(input: &[u8]) -> bool {
    if !input.windows(2).any(|w| w == b"..") && !input.iter().any(|b| *b >= 0x80) {
        return false;
    }
    let folded = fold(input);
    folded.split(|b| *b == b'/').any(|segment| {
        let segment = segment
            .split(|b| *b == b';' || *b == 0)
            .next()
            .unwrap_or(segment);
        let mut end = segment.len();
        while end > 2 && matches!(segment.get(end - 1), Some(b' ' | b'\t')) {
            end -= 1;
        }
        segment.get(..end) == Some(b"..".as_slice())
    }) && folded.len() > 2
        || folded == b".."
}

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod tests {
    use super::*;

    /// The shortcut in `scan_text` changes no answer: libinjection flags none of these.
    #[test]
    fn plain_words_are_never_injections() {
        let words = [
            "1",
            "0",
            "1e1",
            "0x1",
            "a",
            "x",
            "e",
            "or",
            "and",
            "union",
            "select",
            "sleep",
            "version",
            "user",
            "null",
            "true",
            "char",
            "benchmark",
            "from",
            "where",
            "is",
            "not",
            "like",
            "in",
            "div",
            "mod",
            "xor",
            "rlike",
            "having",
            "limit",
            "exec",
            "waitfor",
            "drop",
            "insert",
            "script",
            "javascript",
            "onerror",
            "alert",
            "svg",
            "iframe",
            "onload",
            "expression",
            "vbscript",
            "data",
            "OR",
            "UNION",
            "SELECT",
        ];
        let mut checked = 0;
        for a in words {
            for sep in ["", "_"] {
                for b in words {
                    for c in ["", "1", "0", "or", "null", "select", "x"] {
                        let text = format!("{a}{sep}{b}{c}");
                        assert!(is_plain_word(text.as_bytes()));
                        assert_eq!(libinjection_finds(text.as_bytes()), None, "{text}");
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 30_000);
        for not_plain in [
            "1-null", "a b", "a.b", "x@y", "a'", "<a", "%41", "../x", "é", "",
        ] {
            assert_eq!(is_plain_word(not_plain.as_bytes()), not_plain.is_empty());
        }
    }

    fn scan(path: &str, headers: &[(&str, &str)]) -> Option<&'static str> {
        let mut h: Vec<(String, String)> = vec![(":path".into(), path.into())];
        h.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        scan_request(&Request::new(&h, None)).map(|r| r.code())
    }

    #[test]
    fn traversal_forms() {
        let yes = [
            "../etc/passwd",
            "..\\windows",
            "a/../../b",
            "/..",
            "..",
            "..;/admin",
            ".. /x",
            "..\0/x",
            "\u{FF0E}\u{FF0E}/x",
            "..\u{FF0F}x",
        ];
        for input in yes {
            assert!(has_traversal(input.as_bytes()), "{input:?}");
        }
        assert!(has_traversal(&[0xC0, 0xAE, 0xC0, 0xAE, b'/']));
        assert!(has_traversal(&[b'.', b'.', 0xC0, 0xAF]));
        let no = [
            "...",
            "a..b",
            "file..txt",
            "/a/b/",
            "v1.2..3",
            "..a",
            "a..",
            "",
            ".",
        ];
        for input in no {
            assert!(!has_traversal(input.as_bytes()), "{input:?}");
        }
    }

    #[test]
    fn decodes_up_to_three_times() {
        assert_eq!(percent_decode(b"%2e%2E%2f", false), b"../");
        assert_eq!(percent_decode(b"%252e", false), b"%2e");
        assert_eq!(percent_decode(b"%u002e%zz%", false), b".%zz%");
        assert_eq!(percent_decode(b"a+b", true), b"a b");
        let forms = decodings(b"%25252e", false);
        assert_eq!(forms.last().unwrap().as_ref(), b".");
    }

    #[test]
    fn scans_path_query_and_headers() {
        let table: &[(&str, &[(&str, &str)], Option<&str>)] = &[
            (
                "/api/orders/42?page=2&sort=name",
                &[("user-agent", "curl/8.5.0")],
                None,
            ),
            ("/api/../etc/passwd", &[], Some("threat_traversal")),
            ("/api/%2e%2e/etc/passwd", &[], Some("threat_traversal")),
            ("/api/%252e%252e%252fetc", &[], Some("threat_traversal")),
            ("/api/%c0%ae%c0%ae/etc", &[], Some("threat_traversal")),
            ("/api/..%5cwin.ini", &[], Some("threat_traversal")),
            (
                "/files?name=..%2F..%2Fetc%2Fpasswd",
                &[],
                Some("threat_traversal"),
            ),
            ("/files?name=%252e%252e%252f", &[], Some("threat_traversal")),
            (
                "/api?id=1%27%20OR%20%271%27%3D%271",
                &[],
                Some("threat_sqli"),
            ),
            ("/api?id=1'+OR+'1'='1", &[], Some("threat_sqli")),
            (
                "/api?id=1%2527%2520OR%25201%253D1--",
                &[],
                Some("threat_sqli"),
            ),
            (
                "/api?q=%3Cscript%3Ealert(1)%3C/script%3E",
                &[],
                Some("threat_xss"),
            ),
            (
                "/api/1 UNION SELECT password FROM users--",
                &[],
                Some("threat_sqli"),
            ),
            (
                "/api",
                &[("user-agent", "' OR 1=1 --")],
                Some("threat_sqli"),
            ),
            (
                "/api",
                &[("referer", "https://x.example/?q=<script>alert(1)</script>")],
                Some("threat_xss"),
            ),
            (
                "/api",
                &[("cookie", "a=b; c=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")],
                Some("threat_xss"),
            ),
            (
                "/api?q=O%27Reilly&city=Saint-%C3%89tienne",
                &[("referer", "https://example.com/a/b?c=d")],
                None,
            ),
            (
                "/api?next=https%3A%2F%2Fexample.com%2Fhome&email=a%40b.c",
                &[("cookie", "session=abc123; theme=dark")],
                None,
            ),
        ];
        for (path, headers, want) in table {
            assert_eq!(scan(path, headers), *want, "{path} {headers:?}");
        }
    }

    #[test]
    fn form_bodies() {
        assert_eq!(scan_form(b"name=O%27Reilly&city=Lyon"), None);
        assert_eq!(
            scan_form(b"name=x&id=1%27+OR+%271%27%3D%271").map(|r| r.code()),
            Some("threat_sqli")
        );
        assert_eq!(
            scan_form(b"file=..%2F..%2Fetc%2Fpasswd").map(|r| r.code()),
            Some("threat_traversal")
        );
    }

    #[test]
    fn json_text() {
        assert_eq!(
            scan_text("1' or '1'='1").map(|r| r.code()),
            Some("threat_sqli")
        );
        assert_eq!(
            scan_text("<svg onload=alert(1)>").map(|r| r.code()),
            Some("threat_xss")
        );
        assert_eq!(
            scan_text("../../etc/passwd").map(|r| r.code()),
            Some("threat_traversal")
        );
        for benign in [
            "hello world",
            "O'Reilly",
            "select a size",
            "1 - 2",
            "x<y and y>z",
            "a.b.c",
        ] {
            assert_eq!(scan_text(benign), None, "{benign}");
        }
    }
}
