//! `multipart/form-data` framing (RFC 7578, RFC 2046 section 5.1), read only as far as
//! screening needs: each part's `Content-Disposition` parameters (field name, file name) and
//! its content. The parser is a loop over the body without recursion or copies: memory is
//! bounded by the number of parts, itself bounded by [`MAX_PARTS`].

/// More parts than this is not a form a client fills in: the body is not parsed (and is then
/// screened as text).
pub const MAX_PARTS: usize = 10_000;
/// RFC 2046: a boundary is 1 to 70 characters.
const MAX_BOUNDARY: usize = 70;

/// One part: its `Content-Disposition` parameters (quotes removed) and its content, which
/// is screened whatever the part's own `Content-Type` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'a> {
    /// `(name, value)` of each `Content-Disposition` parameter (`name`, `filename`,
    /// `filename*`, ...), names lower-cased.
    pub parameters: Vec<(String, String)>,
    pub content: &'a [u8],
}

/// The media type's essence (`type/subtype`), lower-cased, whatever its parameters: frameworks
/// choose their body parser by it even when a parameter is malformed.
pub fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The `boundary` parameter of a `multipart/*` Content-Type, quoted or not.
pub fn boundary(content_type: &str) -> Option<String> {
    let found = content_type.split(';').skip(1).find_map(|parameter| {
        let (name, value) = parameter.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim())
    })?;
    let value = match found.strip_prefix('"') {
        Some(quoted) => quoted.strip_suffix('"')?,
        None => found,
    };
    (!value.is_empty() && value.len() <= MAX_BOUNDARY && !value.contains(['\r', '\n']))
        .then(|| value.to_string())
}

/// The parts of a body, or `None` when its framing is broken (no opening or closing
/// delimiter, a part without its header block, too many parts). Line ends may be CRLF or LF,
/// as lenient parsers accept both.
pub fn parts<'a>(body: &'a [u8], boundary: &str) -> Option<Vec<Part<'a>>> {
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    // The first delimiter: at the start, or at the start of a line after a preamble.
    let mut at = if body.starts_with(delimiter) {
        delimiter.len()
    } else {
        find_line_delimiter(body, 0, delimiter)?.1
    };
    let mut parts = Vec::new();
    loop {
        let rest = body.get(at..)?;
        if rest.starts_with(b"--") {
            return Some(parts);
        }
        // Transport padding, then the line end.
        let padding = rest
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t'))
            .count();
        let after = at + padding;
        let headers_start = match body.get(after..) {
            Some(r) if r.starts_with(b"\r\n") => after + 2,
            Some(r) if r.starts_with(b"\n") => after + 1,
            _ => return None,
        };
        let (headers_end, content_start) = header_block_end(body, headers_start)?;
        let (content_end, next) = find_line_delimiter(body, content_start, delimiter)?;
        let headers = body.get(headers_start..headers_end)?;
        let content = body.get(content_start..content_end)?;
        if parts.len() >= MAX_PARTS {
            return None;
        }
        parts.push(part(headers, content));
        at = next;
    }
}

/// Where the header block that starts at `from` ends (an empty line), and its content starts.
fn header_block_end(body: &[u8], from: usize) -> Option<(usize, usize)> {
    // A part without headers starts with the empty line at once.
    let rest = body.get(from..)?;
    if rest.starts_with(b"\r\n") {
        return Some((from, from + 2));
    }
    if rest.starts_with(b"\n") {
        return Some((from, from + 1));
    }
    let mut i = from;
    while let Some(&b) = body.get(i) {
        if b == b'\n' {
            let next = body.get(i + 1..)?;
            if next.starts_with(b"\r\n") {
                return Some((i, i + 3));
            }
            if next.starts_with(b"\n") {
                return Some((i, i + 2));
            }
        }
        i += 1;
    }
    None
}

/// The next delimiter at the start of a line, from `from`: where the content before it ends
/// (its line end excluded) and where the bytes after the delimiter start.
fn find_line_delimiter(body: &[u8], from: usize, delimiter: &[u8]) -> Option<(usize, usize)> {
    let mut i = from;
    while i < body.len() {
        let rest = body.get(i..)?;
        let offset = rest.iter().position(|b| *b == b'\n')?;
        let line_start = i + offset + 1;
        if body.get(line_start..)?.starts_with(delimiter) {
            let content_end = if line_start >= 2 && body.get(line_start - 2) == Some(&b'\r') {
                line_start - 2
            } else {
                line_start - 1
            };
            return Some((content_end.max(from), line_start + delimiter.len()));
        }
        i = line_start;
    }
    None
}

fn part<'a>(headers: &[u8], content: &'a [u8]) -> Part<'a> {
    let mut parameters = Vec::new();
    for line in String::from_utf8_lossy(headers).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("content-disposition") {
            parameters.extend(
                disposition_parameters(value)
                    .into_iter()
                    .map(|(n, v)| (n.to_ascii_lowercase(), v)),
            );
        }
    }
    Part {
        parameters,
        content,
    }
}

/// `form-data; name="a"; filename="b.txt"`: each parameter's name and value, the value
/// unquoted (`\` escapes removed). `;` inside a quoted value does not end it.
fn disposition_parameters(value: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    // Skip the disposition type.
    for c in chars.by_ref() {
        if c == ';' {
            break;
        }
    }
    loop {
        let mut name = String::new();
        for c in chars.by_ref() {
            if c == '=' || c == ';' {
                break;
            }
            name.push(c);
        }
        let name = name.trim().to_string();
        while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => value.extend(chars.next()),
                    c => value.push(c),
                }
            }
            for c in chars.by_ref() {
                if c == ';' {
                    break;
                }
            }
        } else {
            for c in chars.by_ref() {
                if c == ';' {
                    break;
                }
                value.push(c);
            }
            value = value.trim().to_string();
        }
        if !name.is_empty() {
            out.push((name, value));
        }
        if chars.peek().is_none() {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries() {
        assert_eq!(
            boundary("multipart/form-data; boundary=----x1").as_deref(),
            Some("----x1")
        );
        assert_eq!(
            boundary("multipart/form-data;BOUNDARY=\"a b:c\"").as_deref(),
            Some("a b:c")
        );
        assert_eq!(boundary("multipart/form-data"), None);
        assert_eq!(boundary("multipart/form-data; boundary="), None);
        assert_eq!(boundary(&format!("m/f; boundary={}", "x".repeat(71))), None);
        assert_eq!(essence(" Multipart/Form-Data ; x"), "multipart/form-data");
        assert_eq!(essence("application/json; x"), "application/json");
    }

    #[test]
    fn parses_parts_with_crlf_and_lf() {
        let body = b"preamble\r\n--XX\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XX\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x;y.txt\"\r\nContent-Type: text/plain\r\n\r\nline1\r\nline2\r\n--XX--\r\n";
        let parts = parts(body, "XX").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].parameters, vec![("name".into(), "a".into())]);
        assert_eq!(parts[0].content, b"1");
        assert_eq!(
            parts[1].parameters,
            vec![
                ("name".into(), "f".into()),
                ("filename".into(), "x;y.txt".into())
            ]
        );
        assert_eq!(parts[1].content, b"line1\r\nline2");
        let lf = b"--b\nContent-Disposition: form-data; name=q\n\nv\n--b--";
        let parts = super::parts(lf, "b").unwrap();
        assert_eq!(parts[0].parameters, vec![("name".into(), "q".into())]);
        assert_eq!(parts[0].content, b"v");
    }

    #[test]
    fn broken_framing_is_none() {
        for body in [
            &b"no delimiter at all"[..],
            b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\nunterminated",
            b"--b\r\nContent-Disposition: form-data; name=a",
            b"--bjunk",
        ] {
            assert_eq!(
                parts(body, "b"),
                None,
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        let many = "--b\r\n\r\nx\r\n".repeat(MAX_PARTS + 1) + "--b--";
        assert_eq!(parts(many.as_bytes(), "b"), None);
        assert_eq!(parts(b"--b--", "b"), Some(Vec::new()));
    }
}
