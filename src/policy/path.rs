//! The canonical path: the one form of a request's path that rules match on, computed by
//! api-guard itself so that rules hold whatever the connection manager normalises (or not).
//!
//! Upstreams disagree on what a path means: WSGI decodes `%2F` into `/`, Tomcat drops `;`
//! parameters and takes `..;` for `..`, some servers take `\` for `/`, others decode twice.
//! The canonical form is the path as the most permissive of them would route it; what no
//! single reading can settle is refused (see [`canonical_path`]). The upstream still
//! receives the path as sent: this form is only for matching.

use std::borrow::Cow;

use super::http::hex_pair_at;

/// Why a path has no canonical form (a fixed text: it never echoes the path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathRefusal(pub &'static str);

/// The form rules match on, for a raw `:path` (query excluded):
///
/// - percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded; other
///   escapes are kept, with upper-case hex digits;
/// - `;` parameters (also `%3B`) are dropped from every segment (`/api;x/orders` and
///   `/api/orders;v=1` are `/api/orders`; `..;` is `..`);
/// - empty segments (`//`) and `.` segments (also `%2e`) are removed; a trailing `/` is
///   kept;
/// - refused: a path not starting with `/`; a `..` segment (also `%2e%2e`, `..;`), whose
///   meaning depends on whether the upstream resolves it; an escaped `/` or `\` (`%2F`, `%5C`, any case)
///   (upstreams disagree on whether they separate segments); an escaped escape (`%252F`,
///   `%2561`: what an upstream that decodes twice reads cannot be matched once); a raw `\`,
///   `#`, space, control or non-ASCII byte; an escape that is not `%` and two hex digits; an
///   escaped control character or NUL.
pub fn canonical_path(raw: &str) -> Result<Cow<'_, str>, PathRefusal> {
    if !raw.starts_with('/') {
        return Err(PathRefusal("the path must start with '/'"));
    }
    if is_canonical(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    let mut segments: Vec<String> = Vec::new();
    let mut trailing_slash = false;
    // The first split part is the empty string before the leading '/'.
    for raw_segment in raw.split('/').skip(1) {
        let segment = decode_segment(raw_segment)?;
        if has_escaped_escape(&segment) {
            return Err(PathRefusal("a doubly escaped path is refused"));
        }
        trailing_slash = false;
        match segment.as_str() {
            "" | "." => trailing_slash = true,
            // Resolving `..` is what a normalising upstream does; a file server that does not
            // resolves the same bytes under another rule's prefix. No one reading is right
            // for every upstream, and browsers and HTTP libraries resolve dot segments before
            // sending (as Envoy's `normalize_path` does before api-guard): refuse.
            ".." => return Err(PathRefusal("a '..' segment in the path is refused")),
            _ => segments.push(segment),
        }
    }
    let mut path = String::with_capacity(raw.len());
    for segment in &segments {
        path.push('/');
        path.push_str(segment);
    }
    if trailing_slash || path.is_empty() {
        path.push('/');
    }
    Ok(Cow::Owned(path))
}

/// Whether a path is already in canonical form (the common case: no allocation needed).
fn is_canonical(raw: &str) -> bool {
    let plain = raw.bytes().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'/' | b'-'
                    | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b'='
                    | b':'
                    | b'@'
            )
    });
    plain
        && raw.split('/').skip(1).enumerate().all(|(i, s)| match s {
            "." | ".." => false,
            // An empty segment is only allowed as the last one (a trailing slash).
            "" => i + 1 == raw.split('/').skip(1).count(),
            _ => true,
        })
}

/// One segment with unreserved escapes decoded and its `;` parameters dropped.
fn decode_segment(raw: &str) -> Result<String, PathRefusal> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let value = escape_at(bytes, i)?;
                i += 3;
                match value {
                    b'/' | b'\\' => {
                        return Err(PathRefusal("an escaped '/' or '\\' in the path is refused"))
                    }
                    b';' => return Ok(out),
                    b'%' => out.push_str("%25"),
                    v if v < 0x20 || v == 0x7f => {
                        return Err(PathRefusal("an escaped control character is refused"))
                    }
                    v if is_unreserved(v) => out.push(char::from(v)),
                    v => {
                        out.push('%');
                        out.push(hex_digit(v >> 4));
                        out.push(hex_digit(v & 0x0f));
                    }
                }
            }
            b';' => return Ok(out),
            b'\\' => return Err(PathRefusal("a '\\' in the path is refused")),
            // The query is split off before; a '?' here means the caller did not.
            b'#' | b'?' => return Err(PathRefusal("a '#' or '?' in the path is refused")),
            b if b <= 0x20 || b >= 0x7f => {
                return Err(PathRefusal(
                    "a space, control or non-ASCII byte in the path is refused",
                ))
            }
            b => {
                out.push(char::from(b));
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Whether a decoded segment holds `%25` and two hex digits: `%2561` (also `%252%61`, whose
/// `%61` is decoded first) is `a` to an upstream that decodes twice. Any escape of an escape
/// is refused, not only of separators.
fn has_escaped_escape(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    segment
        .match_indices("%25")
        .any(|(at, _)| hex_pair_at(bytes, at + 3).is_some())
}

/// The byte escaped by `%XX` at `at` (where `bytes[at]` is `%`).
fn escape_at(bytes: &[u8], at: usize) -> Result<u8, PathRefusal> {
    let invalid = PathRefusal("an invalid percent-escape in the path is refused");
    if bytes.get(at) != Some(&b'%') {
        return Err(invalid);
    }
    hex_pair_at(bytes, at + 1).ok_or(invalid)
}

fn hex_digit(v: u8) -> char {
    char::from(
        b"0123456789ABCDEF"
            .get(usize::from(v & 0x0f))
            .copied()
            .unwrap_or(b'0'),
    )
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(raw: &str) -> String {
        canonical_path(raw)
            .unwrap_or_else(|e| panic!("{raw}: {e:?}"))
            .into_owned()
    }

    #[test]
    fn plain_paths_are_borrowed_as_they_are() {
        for raw in [
            "/",
            "/api/orders",
            "/api/orders/",
            "/a.b/c~d/e_f-g",
            "/x:y@z",
        ] {
            assert!(matches!(canonical_path(raw), Ok(Cow::Borrowed(p)) if p == raw));
        }
    }

    #[test]
    fn every_spelling_of_a_path_has_one_form() {
        let table = [
            ("/api//orders", "/api/orders"),
            ("//api/orders", "/api/orders"),
            ("/./api//orders", "/api/orders"),
            ("/%61pi/%6Frders", "/api/orders"),
            ("/api;x/orders", "/api/orders"),
            ("/api/orders;v=1", "/api/orders"),
            ("/api%3bx/orders", "/api/orders"),
            ("/api/;x/orders", "/api/orders"),
            ("/api/orders/.", "/api/orders/"),
            ("/./api/%2e/orders", "/api/orders"),
            ("/api/...", "/api/..."),
            ("/api/orders//", "/api/orders/"),
            ("/a%20b/%c3%a9", "/a%20b/%C3%A9"),
            ("/a%3fb", "/a%3Fb"),
            ("/100%25off", "/100%25off"),
            ("//", "/"),
        ];
        for (raw, want) in table {
            assert_eq!(canon(raw), want, "{raw}");
            // The canonical form is a fixed point.
            assert_eq!(canon(want), want, "{want}");
        }
    }

    #[test]
    fn what_upstreams_read_differently_is_refused() {
        for raw in [
            "/x/../api/orders",
            "/../../api/orders",
            "/api/%2e%2E/api/orders",
            "/api/.%2e/api/orders",
            "/public/..;/api/orders",
            "/api/orders/..",
            "/..",
            "/api%2Forders",
            "/api%2forders",
            "/api%5Corders",
            "/api%5corders",
            "/api%252Forders",
            "/api%252forders",
            "/api%255Corders",
            "/api/%252e%252e/x",
            "/api%2525",
            "/%2561pi/orders",
            "/api/%25c3%25a9",
            "/6e/6e0%252%652",
            "/a%25%32%66",
            "/api\\orders",
            "/api/orders#x",
            "/x//xx/?.",
            "/api/%00",
            "/api/%0a",
            "/api/%7f",
            "/api/%",
            "/api/%4",
            "/api/%zz",
            "/api/or ders",
            "/api/\u{e9}",
            "/api/\t",
            "api/orders",
            "*",
            "",
        ] {
            assert!(canonical_path(raw).is_err(), "{raw:?} was accepted");
        }
    }
}
