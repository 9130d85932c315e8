//! Threat detection: SQL injection and XSS with libinjectionrs (a pure-Rust port of
//! libinjection's tokenizing detectors), path traversal by a check of our own on decoded
//! input (percent-encoding decoded up to three times, `%uXXXX`, overlong UTF-8 and
//! full-width forms of `.`, `/` and `\`).

use serde::Deserialize;

use crate::policy::body::{json, multipart, MAX_MAX_DEPTH};
use crate::policy::http;
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

/// `threat_scan_max_bytes` when left out: about 10 ms of scanning in the worst case (see
/// docs/body-and-threats.md, "Cost").
pub const DEFAULT_SCAN_BUDGET: u64 = 1024 * 1024;
/// What one detector call costs against the budget besides its input: its fixed cost (about
/// 2 µs natively) is that of scanning about 200 bytes, so a body of many short strings
/// cannot buy more time than one long string of the same budget.
pub const SCAN_CALL_BYTES: u64 = 256;

/// Screens the parts of one request against a budget of bytes (`threat_scan_max_bytes`),
/// shared by the header and body stages. Whole values are scanned; when the budget runs out
/// the scan ends with [`Reason::ThreatScanLimit`], which `block` refuses (fail closed) and
/// `log` records.
#[derive(Debug, Clone)]
pub struct Scanner {
    budget: u64,
    used: u64,
}

impl Scanner {
    pub fn new(budget: u64) -> Self {
        Scanner { budget, used: 0 }
    }

    /// A scanner that continues where an earlier stage of the same request stopped.
    pub fn resume(budget: u64, used: u64) -> Self {
        Scanner { budget, used }
    }

    /// Budget spent so far (to carry over to the body stage).
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Charges `bytes`; `Some(ThreatScanLimit)` once the budget is spent.
    fn charge(&mut self, bytes: usize, calls: u64) -> Option<Reason> {
        let cost = u64::try_from(bytes)
            .unwrap_or(u64::MAX)
            .saturating_add(calls.saturating_mul(SCAN_CALL_BYTES));
        self.used = self.used.saturating_add(cost);
        (self.used > self.budget).then_some(Reason::ThreatScanLimit)
    }

    /// The first threat found in the path, query parameters and scanned headers.
    pub fn scan_request(&mut self, request: &Request) -> Option<Reason> {
        let path = request.path_without_query();
        if let Some(reason) = self.scan_path(path) {
            return Some(reason);
        }
        if let Some(reason) = request.query().and_then(|q| self.scan_pairs(q)) {
            return Some(reason);
        }
        for name in SCANNED_HEADERS {
            for value in request.header_values(name) {
                // Traversal too in cookie values (file names in cookies are a classic inclusion
                // vector) and in the referer (browsers send it with dot segments resolved).
                let found = match name {
                    // A cookie without `=` is a value (RFC 6265bis), so it is scanned whole.
                    "cookie" => http::cookies(value).find_map(|cookie| {
                        let value = cookie.split_once('=').map_or(cookie, |(_, v)| v);
                        self.scan_encoded(value.trim(), false, true)
                    }),
                    "referer" => self.scan_encoded(value, false, true),
                    _ => self.scan_encoded(value, false, false),
                };
                if found.is_some() {
                    return found;
                }
            }
        }
        None
    }

    /// `name=value&...` pairs (a query, or a form body), each name and value decoded.
    fn scan_pairs(&mut self, pairs: &str) -> Option<Reason> {
        http::query_pairs(pairs).find_map(|(name, value)| {
            self.scan_encoded(name, true, true)
                .or_else(|| self.scan_encoded(value, true, true))
        })
    }

    /// A form body (`application/x-www-form-urlencoded`), scanned as a query.
    pub fn scan_form(&mut self, body: &[u8]) -> Option<Reason> {
        self.scan_pairs(&String::from_utf8_lossy(body))
    }

    /// The path: traversal on the whole decoded path; SQLi/XSS on each decoded segment and on
    /// the whole decoded path (an injection may span segments: `/1'/**/union/**/select`).
    fn scan_path(&mut self, path: &str) -> Option<Reason> {
        let decoded = http::decodings(path.as_bytes(), false, DECODE_ROUNDS);
        let forms_len: usize = decoded.iter().map(|d| d.len()).sum();
        if let Some(cut) = self.charge(forms_len, 0) {
            return Some(cut);
        }
        if decoded.iter().any(|d| has_traversal(d)) {
            return Some(Reason::ThreatTraversal);
        }
        let last = decoded.last()?;
        last.split(|b| *b == b'/')
            .filter(|segment| !segment.is_empty())
            .find_map(|segment| self.injection(segment))
            .or_else(|| {
                if last.contains(&b'/') && !is_plain_path(last) {
                    self.injection(last)
                } else {
                    None
                }
            })
    }

    /// A query part (`+` is a space), cookie or header value.
    fn scan_encoded(
        &mut self,
        value: &str,
        plus_is_space: bool,
        traversal: bool,
    ) -> Option<Reason> {
        if value.is_empty() {
            return None;
        }
        let decoded = http::decodings(value.as_bytes(), plus_is_space, DECODE_ROUNDS);
        if traversal {
            let forms_len: usize = decoded.iter().map(|d| d.len()).sum();
            if let Some(cut) = self.charge(forms_len, 0) {
                return Some(cut);
            }
            if decoded.iter().any(|d| has_traversal(d)) {
                return Some(Reason::ThreatTraversal);
            }
        }
        // Injection on the form the application sees (decoded once) and on the fully decoded
        // form (double encoding); the raw form adds false positives, not detections.
        let once = decoded.get(1).or(decoded.first())?;
        let last = decoded.last()?;
        self.injection(once).or_else(|| {
            if last == once {
                None
            } else {
                self.injection(last)
            }
        })
    }

    /// A JSON string value or member name (already decoded by the JSON parser), or a
    /// multipart field.
    pub fn scan_text(&mut self, text: &str) -> Option<Reason> {
        let bytes = text.as_bytes();
        if is_plain_word(bytes) {
            return self.charge(bytes.len(), 0);
        }
        if let Some(cut) = self.charge(bytes.len(), 0) {
            return Some(cut);
        }
        if has_traversal(bytes) {
            return Some(Reason::ThreatTraversal);
        }
        self.injection(bytes)
    }

    /// A body, whatever its media type claims: form fields when it declares a form,
    /// multipart fields (names, file names, contents) when it declares `multipart/*` and its
    /// framing parses, else as [`Scanner::scan_text_body`]. Chosen by the media type's essence,
    /// as frameworks choose their parser, so a malformed parameter changes nothing.
    pub fn scan_body(&mut self, content_type: Option<&str>, body: &[u8]) -> Option<Reason> {
        let essence = content_type.map(multipart::essence).unwrap_or_default();
        if essence == "application/x-www-form-urlencoded" {
            return self.scan_form(body);
        }
        if essence.starts_with("multipart/") {
            let parts = content_type
                .and_then(multipart::boundary)
                .and_then(|boundary| multipart::parts(body, &boundary));
            if let Some(parts) = parts {
                return parts.iter().find_map(|part| {
                    part.parameters
                        .iter()
                        .find_map(|(_, value)| self.scan_encoded(value, false, true))
                        .or_else(|| self.scan_text_body(part.content))
                });
            }
        }
        self.scan_text_body(body)
    }

    /// A body api-guard does not parse by its media type: as JSON when it is strict JSON
    /// (every member name and string), else as text: the whole text, each line (SQLi is found
    /// where a value starts), and each double-quoted string with JSON escapes decoded (the
    /// strings a lenient JSON parser would see in a body with duplicate names, comments,
    /// trailing commas or deeper nesting than the structure check allows).
    pub fn scan_text_body(&mut self, body: &[u8]) -> Option<Reason> {
        self.scan_text_body_once(body, true)
    }

    /// [`Scanner::scan_text_body`]; a UTF-16 or UTF-32 body is decoded at most once.
    fn scan_text_body_once(&mut self, body: &[u8], may_be_wide: bool) -> Option<Reason> {
        let mut found = None;
        let json = {
            let mut on_string = |s: &str| {
                if found.is_none() {
                    found = self.scan_text(s);
                }
            };
            json::check(body, MAX_MAX_DEPTH, &mut on_string)
        };
        if json.is_ok() || found.is_some() {
            return found;
        }
        if let Some(decoded) = decode_wide(body).filter(|_| may_be_wide) {
            // Read as the upstream's JSON parser would (Python's detects UTF-16 and UTF-32).
            return self.scan_text_body_once(decoded.as_bytes(), false);
        }
        let text = String::from_utf8_lossy(body);
        if let Some(reason) = self.scan_text(&text) {
            return Some(reason);
        }
        if text.contains('\n') {
            let line = text
                .lines()
                .find_map(|line| self.injection(line.trim().as_bytes()));
            if line.is_some() {
                return line;
            }
        }
        for_each_quoted(&text, |quoted| self.scan_text(quoted))
    }

    /// SQL injection, then XSS, on the whole input. Plain words (most path segments, member
    /// names and parameter values) skip libinjection, which would find nothing in them.
    fn injection(&mut self, input: &[u8]) -> Option<Reason> {
        if is_plain_word(input) {
            return None;
        }
        if let Some(cut) = self.charge(input.len(), 1) {
            return Some(cut);
        }
        libinjection_finds(input)
    }
}

/// The first threat found in the path, query parameters and scanned headers, with the
/// default budget (tests and tools; the pipeline uses the policy's budget).
pub fn scan_request(request: &Request) -> Option<Reason> {
    Scanner::new(DEFAULT_SCAN_BUDGET).scan_request(request)
}

/// A form body with the default budget.
pub fn scan_form(body: &[u8]) -> Option<Reason> {
    Scanner::new(DEFAULT_SCAN_BUDGET).scan_form(body)
}

/// A JSON string with the default budget.
#[cfg(test)]
pub fn scan_text(text: &str) -> Option<Reason> {
    Scanner::new(DEFAULT_SCAN_BUDGET).scan_text(text)
}

/// A body in UTF-16 or UTF-32, as JSON parsers detect them (a byte-order mark, or the zero
/// bytes of the first characters, RFC 4627 section 3), decoded to UTF-8; `None` otherwise.
fn decode_wide(body: &[u8]) -> Option<String> {
    let byte = |i: usize| body.get(i).copied();
    let (width, big_endian, skip) = match (byte(0), byte(1), byte(2), byte(3)) {
        (Some(0xFF), Some(0xFE), Some(0), Some(0)) => (4, false, 4),
        (Some(0), Some(0), Some(0xFE), Some(0xFF)) => (4, true, 4),
        (Some(0xFF), Some(0xFE), _, _) => (2, false, 2),
        (Some(0xFE), Some(0xFF), _, _) => (2, true, 2),
        (Some(0), Some(0), Some(0), Some(_)) => (4, true, 0),
        (Some(_), Some(0), Some(0), Some(0)) => (4, false, 0),
        (Some(0), Some(_), _, _) => (2, true, 0),
        (Some(_), Some(0), _, _) => (2, false, 0),
        _ => return None,
    };
    let units = body.get(skip..)?.chunks(width);
    if width == 2 {
        let units = units.map(|c| {
            let pair = [
                c.first().copied().unwrap_or(0),
                c.get(1).copied().unwrap_or(0),
            ];
            if big_endian {
                u16::from_be_bytes(pair)
            } else {
                u16::from_le_bytes(pair)
            }
        });
        Some(
            char::decode_utf16(units)
                .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                .collect(),
        )
    } else {
        Some(
            units
                .map(|c| {
                    let mut quad = [0u8; 4];
                    for (slot, b) in quad.iter_mut().zip(c) {
                        *slot = *b;
                    }
                    let code = if big_endian {
                        u32::from_be_bytes(quad)
                    } else {
                        u32::from_le_bytes(quad)
                    };
                    char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER)
                })
                .collect(),
        )
    }
}

/// Calls `f` on each double-quoted string of `text`, JSON escapes decoded (an unterminated
/// string runs to the end), until `f` finds something.
fn for_each_quoted(text: &str, mut f: impl FnMut(&str) -> Option<Reason>) -> Option<Reason> {
    let mut chars = text.chars();
    let mut buffer = String::new();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        buffer.clear();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => buffer.push('\n'),
                    Some('t') => buffer.push('\t'),
                    Some('r') => buffer.push('\r'),
                    Some('b') => buffer.push('\u{8}'),
                    Some('f') => buffer.push('\u{c}'),
                    Some('u') => buffer.push(unicode_escape(&mut chars)),
                    Some(other) => buffer.push(other),
                    None => break,
                },
                c => buffer.push(c),
            }
        }
        if let Some(reason) = f(&buffer) {
            return Some(reason);
        }
    }
    None
}

/// The character of a `\uXXXX` escape (the `\u` read), a surrogate pair joined; U+FFFD when
/// it is not one.
fn unicode_escape(chars: &mut std::str::Chars<'_>) -> char {
    fn four(chars: &mut std::str::Chars<'_>) -> Option<u32> {
        let digits: String = chars.by_ref().take(4).collect();
        (digits.len() == 4).then(|| u32::from_str_radix(&digits, 16).ok())?
    }
    let Some(first) = four(chars) else {
        return char::REPLACEMENT_CHARACTER;
    };
    if (0xD800..0xDC00).contains(&first) {
        let mut ahead = chars.clone();
        if ahead.next() == Some('\\') && ahead.next() == Some('u') {
            if let Some(low) = four(&mut ahead).filter(|l| (0xDC00..0xE000).contains(l)) {
                *chars = ahead;
                let code = 0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00);
                return char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER);
            }
        }
    }
    char::from_u32(first).unwrap_or(char::REPLACEMENT_CHARACTER)
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

/// A path of plain words, `-`, `.` and `/` only (`/api/v1/orders/42`, `/static/app.min.js`):
/// its segments were scanned one by one and the whole holds nothing more (no quote, space,
/// comment or tag), so the common path skips the second detector call.
fn is_plain_path(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'))
}

/// What libinjection finds in the whole input: SQL injection, then XSS.
fn libinjection_finds(input: &[u8]) -> Option<Reason> {
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
    use crate::policy::testing::headers;

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

    fn scan(path: &str, extra: &[(&str, &str)]) -> Option<&'static str> {
        let mut h = headers(&[(":path", path)]);
        h.extend(headers(extra));
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
        // The decoder itself is pinned in `policy::http`; here, the screen's rounds.
        let forms = http::decodings(b"%25252e", false, DECODE_ROUNDS);
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

    fn code(found: Option<Reason>) -> &'static str {
        found.map_or("-", |r| r.code())
    }

    /// Whole values: a payload after 16 KiB of padding is found (it was not when only the
    /// first 16 KiB were scanned).
    #[test]
    fn whole_values_are_scanned() {
        let pad = "+".repeat(16_384);
        let sqli = format!("/api?q={pad}1'+OR+'1'='1");
        assert_eq!(scan(&sqli, &[]), Some("threat_sqli"));
        let ua = format!("{pad}1' OR '1'='1");
        assert_eq!(scan("/api", &[("user-agent", &ua)]), Some("threat_sqli"));
        let xss = format!("{pad}<script>alert(1)</script>");
        assert_eq!(code(scan_text(&xss)), "threat_xss");
        let spaces = format!("{}1' OR '1'='1", " ".repeat(20_000));
        assert_eq!(code(scan_text(&spaces)), "threat_sqli");
    }

    #[test]
    fn the_path_is_scanned_whole_too() {
        assert_eq!(
            scan(
                "/item/1'/**/union/**/select/**/password/**/from/**/users--",
                &[]
            ),
            Some("threat_sqli")
        );
        assert_eq!(
            scan("/item/1%27/**/union/**/select/**/1--", &[]),
            Some("threat_sqli")
        );
        for benign in [
            "/api/v1/orders/42",
            "/static/app.min.js",
            "/users/o'reilly/profile",
            "/search/1 or 2",
            "/a/b-c/d_e/f.json",
        ] {
            assert_eq!(scan(benign, &[]), None, "{benign}");
        }
    }

    #[test]
    fn the_budget_ends_the_scan() {
        // Each detector call counts its input plus SCAN_CALL_BYTES.
        let mut scanner = Scanner::new(1024);
        assert_eq!(scanner.scan_text("hello world"), None);
        assert_eq!(scanner.used(), 11 + 11 + SCAN_CALL_BYTES);
        let long = "a ".repeat(600);
        assert_eq!(code(scanner.scan_text(&long)), "threat_scan_limit");
        // A detection before the cut wins; after it, nothing more is scanned.
        let mut scanner = Scanner::new(1024);
        assert_eq!(code(scanner.scan_text("<script>x</script>")), "threat_xss");
        let mut scanner = Scanner::resume(1024, 1024);
        assert_eq!(code(scanner.scan_text("a b")), "threat_scan_limit");
        // Many short strings cost their calls: a JSON array of 1,000 of them.
        let array = format!("[{}\"a b\"]", "\"a b\",".repeat(999));
        let mut scanner = Scanner::new(64 * 1024);
        assert_eq!(
            code(scanner.scan_text_body(array.as_bytes())),
            "threat_scan_limit"
        );
        let mut scanner = Scanner::new(1024 * 1024);
        assert_eq!(scanner.scan_text_body(array.as_bytes()), None);
    }

    fn body(content_type: Option<&str>, body: &str) -> &'static str {
        code(Scanner::new(DEFAULT_SCAN_BUDGET).scan_body(content_type, body.as_bytes()))
    }

    #[test]
    fn bodies_are_screened_whatever_their_media_type() {
        let json = r#"{"a":"<script>alert(1)</script>"}"#;
        for ct in [
            None,
            Some("text/plain"),
            Some("text/json"),
            Some("application/json; x"),
            Some("application/octet-stream"),
            Some("image/png"),
        ] {
            assert_eq!(body(ct, json), "threat_xss", "{ct:?}");
            assert_eq!(body(ct, r#"{"a":"O'Reilly","b":[1,2]}"#), "-", "{ct:?}");
        }
        // Escaped, duplicated, too deep or lenient JSON: the quoted strings are still seen.
        let cases = [
            r#"{"a":"\u003cscript\u003ealert(1)\u003c/script\u003e"}"#,
            r#"{"a":"x","a":"1' OR '1'='1"}"#,
            r#"{"a":"1' OR '1'='1",}"#,
        ];
        for case in cases {
            assert_ne!(body(Some("text/plain"), case), "-", "{case}");
        }
        // UTF-16 and UTF-32 JSON, which Python's json.loads reads from bytes.
        let utf16: Vec<u8> = json.encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert_eq!(
            code(Scanner::new(DEFAULT_SCAN_BUDGET).scan_body(Some("text/plain"), &utf16)),
            "threat_xss"
        );
        let mut utf32be = Vec::new();
        for c in json.chars() {
            utf32be.extend_from_slice(&u32::from(c).to_be_bytes());
        }
        assert_eq!(
            code(Scanner::new(DEFAULT_SCAN_BUDGET).scan_body(None, &utf32be)),
            "threat_xss"
        );
        let deep = format!("{}\"1' OR '1'='1\"{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(body(None, &deep), "threat_sqli");
        // Text: the whole, each line, each quoted string.
        assert_eq!(
            body(Some("text/plain"), "hello\n1' OR '1'='1\n"),
            "threat_sqli"
        );
        assert_eq!(
            body(Some("text/plain"), "see ../../etc/passwd"),
            "threat_traversal"
        );
        assert_eq!(body(Some("text/plain"), "hello world\nO'Reilly"), "-");
        // Forms, whatever the parameters say.
        let form = "a=1&id=1%27+OR+%271%27%3D%271";
        assert_eq!(
            body(Some("application/x-www-form-urlencoded"), form),
            "threat_sqli"
        );
        assert_eq!(
            body(Some("application/x-www-form-urlencoded; charset=x y"), form),
            "threat_sqli"
        );
        assert_eq!(
            body(Some("application/x-www-form-urlencoded"), "a=O%27Reilly"),
            "-"
        );
    }

    #[test]
    fn multipart_names_values_and_file_names() {
        let ct = "multipart/form-data; boundary=XyZ";
        let form = |disposition: &str, value: &str| {
            format!(
                "--XyZ\r\nContent-Disposition: form-data; name=\"ok\"\r\n\r\nfine\r\n\
                 --XyZ\r\nContent-Disposition: form-data; {disposition}\r\n\
                 Content-Type: application/octet-stream\r\n\r\n{value}\r\n--XyZ--\r\n"
            )
        };
        assert_eq!(body(Some(ct), &form("name=\"a\"", "plain text")), "-");
        assert_eq!(
            body(Some(ct), &form("name=\"a\"", "1' OR '1'='1")),
            "threat_sqli"
        );
        assert_eq!(
            body(Some(ct), &form("name=\"<svg onload=alert(1)>\"", "x")),
            "threat_xss"
        );
        assert_eq!(
            body(
                Some(ct),
                &form("name=\"f\"; filename=\"../../etc/passwd\"", "x")
            ),
            "threat_traversal"
        );
        assert_eq!(
            body(
                Some(ct),
                &form(
                    "name=\"f\"; filename*=UTF-8''%3Cscript%3Ealert(1)%3C%2Fscript%3E",
                    "x"
                )
            ),
            "threat_xss"
        );
        assert_eq!(
            body(
                Some(ct),
                &form("name=\"j\"", r#"{"q":"<script>alert(1)</script>"}"#)
            ),
            "threat_xss"
        );
        // Broken framing or a missing boundary: screened as text.
        assert_eq!(
            body(
                Some("multipart/form-data"),
                &form("name=\"a\"", "1' OR '1'='1")
            ),
            "threat_sqli"
        );
        // Two boundaries: framed with the second, the body does not parse with the first
        // and is screened as text, line by line.
        let second = form("name=\"a\"", "1' OR '1'='1");
        assert_eq!(
            body(
                Some("multipart/form-data; boundary=other; boundary=XyZ"),
                &second
            ),
            "threat_sqli"
        );
        let broken = "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\n1' OR '1'='1";
        assert_eq!(body(Some(ct), broken), "threat_sqli");
    }

    #[test]
    fn quoted_strings_decode_json_escapes() {
        let mut seen = Vec::new();
        for_each_quoted(
            r#"x "a\"b" 'c' "\ud83d\ude00\u0041\n" "\ud800" "end"#,
            |s| {
                seen.push(s.to_string());
                None
            },
        );
        assert_eq!(seen, ["a\"b", "\u{1F600}A\n", "\u{FFFD}", "end"]);
    }

    /// Fragments of every framing, shuffled: a verdict for each, never a panic.
    #[test]
    fn any_bytes_get_a_verdict() {
        let pieces: [&[u8]; 10] = [
            b"--b",
            b"\r\n",
            b"\n",
            b"\"",
            b"\\u",
            b"\\ud800",
            b"Content-Disposition: form-data; name=\"",
            b"\0",
            b"\xff\xfe",
            b"%2",
        ];
        let mut seed = 0x2545_F491_4F6C_DD1D_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..300 {
            let mut body = Vec::new();
            for _ in 0..next() % 40 {
                let n = next();
                body.extend_from_slice(pieces.get((n % 10) as usize).copied().unwrap_or(b""));
                body.push((n >> 8) as u8);
            }
            for ct in [
                None,
                Some("multipart/form-data; boundary=b"),
                Some("text/plain"),
            ] {
                let _ = Scanner::new(4096).scan_body(ct, &body);
            }
        }
    }
}
