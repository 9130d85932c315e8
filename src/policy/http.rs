//! HTTP details the stages share, read one way everywhere: RFC 9110 tokens, percent-decoding,
//! query strings (pairs, parameter names as frameworks decode them, stripping parameters),
//! cookies and the path a log line may show. Each decoder says how it treats `+` and
//! malformed escapes: callers rely on the difference.

use std::borrow::Cow;

/// The value of one hex digit (either case).
fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The byte two hex digits at `at` would stand for once a `%` is put before them.
pub fn hex_pair_at(bytes: &[u8], at: usize) -> Option<u8> {
    let high = hex_value(*bytes.get(at)?)?;
    let low = hex_value(*bytes.get(at + 1)?)?;
    Some(high << 4 | low)
}

/// Whether a byte may stand in an RFC 9110 `token` (a header name, a media type, a
/// parameter name): letters, digits and ``!#$%&'*+-.^_`|~``.
pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// An RFC 9110 `token`: one or more token bytes.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

/// `%XX` decoded once, as a framework decodes a query parameter; a `+` stays a `+` (keys and
/// tokens are often base64) and a malformed escape (`%zz`, a trailing `%4`) is kept as it is.
/// Borrowed when there is nothing to decode.
pub fn percent_decode(value: &str) -> Cow<'_, [u8]> {
    if !value.contains('%') {
        return Cow::Borrowed(value.as_bytes());
    }
    Cow::Owned(decode(value.as_bytes(), false, false))
}

/// Decoded once as any server might: `%XX`, IIS-style `%uXXXX` (encoded as UTF-8) and, with
/// `plus_is_space`, `+` as a space (form encoding). Malformed escapes are kept as they are.
/// For screening, which must see what the most lenient reader sees.
pub fn percent_decode_lenient(input: &[u8], plus_is_space: bool) -> Vec<u8> {
    decode(input, true, plus_is_space)
}

/// One pass of decoding: `%XX` always, `%uXXXX` with `unicode`, `+` with `plus_is_space`.
fn decode(input: &[u8], unicode: bool, plus_is_space: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        if b == b'%' {
            if let Some(byte) = hex_pair_at(input, i + 1) {
                out.push(byte);
                i += 3;
                continue;
            }
            if let Some(ch) = unicode.then(|| unicode_escape_at(input, i)).flatten() {
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                i += 6;
                continue;
            }
        }
        out.push(if b == b'+' && plus_is_space { b' ' } else { b });
        i += 1;
    }
    out
}

/// The character of a `%uXXXX` escape at `at` (where `input[at]` is `%`); None when it is
/// malformed or a lone surrogate.
fn unicode_escape_at(input: &[u8], at: usize) -> Option<char> {
    if !matches!(input.get(at + 1), Some(b'u' | b'U')) {
        return None;
    }
    let high = hex_pair_at(input, at + 2)?;
    let low = hex_pair_at(input, at + 4)?;
    char::from_u32(u32::from(high) << 8 | u32::from(low))
}

/// The input and its successive [`percent_decode_lenient`] forms, at most `rounds` of them,
/// until decoding changes nothing (catches double and triple encoding). `+` means a space
/// only in the first round, the form-encoding one.
pub fn decodings(input: &[u8], plus_is_space: bool, rounds: usize) -> Vec<Cow<'_, [u8]>> {
    let mut forms: Vec<Cow<'_, [u8]>> = vec![Cow::Borrowed(input)];
    for round in 0..rounds {
        let Some(current) = forms.last() else { break };
        let next = percent_decode_lenient(current, plus_is_space && round == 0);
        if next.as_slice() == current.as_ref() {
            break;
        }
        forms.push(Cow::Owned(next));
    }
    forms
}

/// A `name=value` pair split at its first `=`, raw; without `=` it is a name with an empty
/// value.
pub fn split_pair(pair: &str) -> (&str, &str) {
    pair.split_once('=').unwrap_or((pair, ""))
}

/// The `name=value` pairs of a query string (or a form body), raw.
pub fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query.split('&').map(split_pair)
}

/// Whether a raw query parameter name is one of `names` once its `%XX` escapes are decoded,
/// as the upstream's framework will decode it (`api%5Fkey` is `api_key`).
pub fn param_name_is(raw: &str, names: &[String]) -> bool {
    let decoded = percent_decode(raw);
    names.iter().any(|n| n.as_bytes() == &*decoded)
}

/// Whether a raw query parameter name is one of `names` as PHP reads it: decoded, with `.`
/// and ` ` as `_`, and `name[...]` as `name` (an unclosed `[` is a `_` too). Only for
/// stripping: removing a look-alike is harmless, and an upstream in PHP never sees it.
fn php_param_name_is(raw: &str, names: &[String]) -> bool {
    let decoded = percent_decode(raw);
    let mut name: Vec<u8> = Vec::with_capacity(decoded.len());
    let mut bracket_seen = false;
    for (i, &b) in decoded.iter().enumerate() {
        match b {
            b'[' if decoded.get(i..).is_some_and(|rest| rest.contains(&b']')) => break,
            b'[' if !bracket_seen => {
                bracket_seen = true;
                name.push(b'_');
            }
            b'.' | b' ' | b'+' => name.push(b'_'),
            _ => name.push(b),
        }
    }
    names.iter().any(|n| n.as_bytes() == name.as_slice())
}

/// The request target without the query parameters whose decoded name (or its PHP reading)
/// is one of `names`; None when there is none of them.
pub fn strip_query_params(path: &str, names: &[String]) -> Option<String> {
    let (base, query) = path.split_once('?')?;
    let mut removed = false;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let (name, _) = split_pair(pair);
            let credential = param_name_is(name, names) || php_param_name_is(name, names);
            removed |= credential;
            !credential
        })
        .collect();
    if !removed {
        return None;
    }
    let kept: Vec<&str> = kept.into_iter().filter(|p| !p.is_empty()).collect();
    if kept.is_empty() {
        Some(base.to_string())
    } else {
        Some(format!("{base}?{}", kept.join("&")))
    }
}

/// The cookie pairs (`name=value`, trimmed, raw) of one `cookie` header value.
pub fn cookies(header: &str) -> impl Iterator<Item = &str> {
    header.split(';').map(str::trim)
}

/// The cookie pairs of `headers` but those whose name (trimmed) is one of `names`, and
/// empty ones.
pub fn cookies_without<'a>(
    headers: impl Iterator<Item = &'a str>,
    names: &[String],
) -> Vec<&'a str> {
    headers
        .flat_map(cookies)
        .filter(|pair| {
            let name = split_pair(pair).0.trim();
            !pair.is_empty() && !names.iter().any(|c| c == name)
        })
        .collect()
}

/// Most characters of a path a log line keeps.
const LOGGED_PATH_CHARS: usize = 256;

/// The request target as log lines show it: without its query or fragment (queries may carry
/// credentials), at most 256 characters.
pub fn logged_path(target: &str) -> String {
    let path = target.split(['?', '#']).next().unwrap_or("");
    path.chars().take(LOGGED_PATH_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_digits_of_either_case() {
        assert_eq!(hex_value(b'0'), Some(0));
        assert_eq!(hex_value(b'f'), Some(15));
        assert_eq!(hex_value(b'F'), Some(15));
        assert_eq!(hex_value(b'g'), None);
        assert_eq!(hex_value(b'+'), None);
        assert_eq!(hex_pair_at(b"%2f", 1), Some(b'/'));
        assert_eq!(hex_pair_at(b"%2", 1), None);
        assert_eq!(hex_pair_at(b"%+f", 1), None);
    }

    #[test]
    fn tokens_are_rfc_9110_tchars() {
        assert!(is_token("multipart"));
        assert!(is_token("x-www-form-urlencoded"));
        assert!(is_token("!#$%&'*+-.^_`|~09AZaz"));
        assert!(!is_token(""));
        for b in [
            b' ', b'"', b'(', b')', b',', b'/', b':', b';', b'<', b'=', b'>', b'?', b'@',
        ] {
            assert!(!is_token_byte(b), "{}", char::from(b));
        }
        assert!(!is_token_byte(b'['));
        assert!(!is_token_byte(b'{'));
        assert!(!is_token_byte(0x7f));
        assert!(!is_token_byte(0xc3));
    }

    #[test]
    fn query_values_are_decoded_once_with_plus_kept() {
        assert_eq!(&*percent_decode("a%2Bb+c%zz%4"), b"a+b+c%zz%4");
        assert_eq!(&*percent_decode("plain"), b"plain");
        assert!(matches!(percent_decode("plain"), Cow::Borrowed(_)));
        assert_eq!(&*percent_decode("%252e"), b"%2e");
        assert_eq!(&*percent_decode("%u002e%"), b"%u002e%");
        assert_eq!(&*percent_decode("%e9"), [0xe9]);
        assert_eq!(&*percent_decode("%+f%-f"), b"%+f%-f");
    }

    #[test]
    fn screening_decodes_leniently_up_to_three_times() {
        assert_eq!(percent_decode_lenient(b"%2e%2E%2f", false), b"../");
        assert_eq!(percent_decode_lenient(b"%252e", false), b"%2e");
        assert_eq!(percent_decode_lenient(b"%u002e%zz%", false), b".%zz%");
        assert_eq!(percent_decode_lenient(b"%U00e9%4", false), "é%4".as_bytes());
        assert_eq!(percent_decode_lenient(b"%ud800%u12", false), b"%ud800%u12");
        assert_eq!(percent_decode_lenient(b"a+b", true), b"a b");
        assert_eq!(percent_decode_lenient(b"a+b", false), b"a+b");
        let forms = decodings(b"%25252e+", true, 3);
        let forms: Vec<&[u8]> = forms.iter().map(|f| f.as_ref()).collect();
        assert_eq!(forms, [&b"%25252e+"[..], b"%252e ", b"%2e ", b". "]);
        // Three rounds at most: a fourth encoding is left as it is.
        let forms = decodings(b"%2525252e", false, 3);
        assert_eq!(forms.last().map(|f| f.as_ref()), Some(&b"%2e"[..]));
        assert_eq!(decodings(b"plain", true, 3).len(), 1);
        // `+` is a space in the first round only: `%2B` stays a `+`.
        let forms = decodings(b"%2B", true, 3);
        assert_eq!(forms.last().map(|f| f.as_ref()), Some(&b"+"[..]));
    }

    #[test]
    fn query_pairs_are_split_raw() {
        let pairs: Vec<_> = query_pairs("a=1&b&=2&c=3=4&&d%3D=%26").collect();
        assert_eq!(
            pairs,
            [
                ("a", "1"),
                ("b", ""),
                ("", "2"),
                ("c", "3=4"),
                ("", ""),
                ("d%3D", "%26")
            ]
        );
    }

    #[test]
    fn parameter_names_are_compared_decoded_once() {
        let names = vec!["api_key".to_string()];
        assert!(param_name_is("api_key", &names));
        assert!(param_name_is("api%5Fkey", &names));
        assert!(param_name_is("api%5fkey", &names));
        assert!(!param_name_is("api%255Fkey", &names));
        assert!(!param_name_is("api.key", &names), "PHP names only strip");
        assert!(!param_name_is("API_KEY", &names));
    }

    #[test]
    fn query_parameters_are_stripped_by_decoded_name() {
        let names = vec!["api_key".to_string()];
        let strip = |path| strip_query_params(path, &names);
        assert_eq!(strip("/a?api_key=k").as_deref(), Some("/a"));
        assert_eq!(strip("/a?x=1&api_key=k&y").as_deref(), Some("/a?x=1&y"));
        assert_eq!(strip("/a?api%5Fkey=k&api%5fkey&x").as_deref(), Some("/a?x"));
        assert_eq!(
            strip("/a?api%255Fkey=k"),
            None,
            "decoded once, as a framework does"
        );
        assert_eq!(strip("/a?x=1"), None);
        // PHP reads these as `api_key` too.
        assert_eq!(
            strip("/a?api.key=1&api+key=2&api%20key=3&api_key[]=4&api_key%5Bx%5D=5&api[key=6&b=7")
                .as_deref(),
            Some("/a?b=7")
        );
        assert_eq!(strip("/a?apikey=1&api_keys=2&api-key=3"), None);
        assert_eq!(strip("/a"), None);
        assert_eq!(strip("/a?&api_key=k&&x=1&").as_deref(), Some("/a?x=1"));
    }

    #[test]
    fn cookies_are_split_and_removed_by_trimmed_name() {
        let pairs: Vec<_> = cookies(" a=1;b = 2 ;;c").collect();
        assert_eq!(pairs, ["a=1", "b = 2", "", "c"]);
        // The JWT source reads names untrimmed after the split: `b ` is not `b`.
        assert_eq!(split_pair("b = 2"), ("b ", " 2"));
        let names = vec!["b".to_string(), "c".to_string()];
        let headers = ["a=1; b = 2", "c; d=4;"];
        assert_eq!(
            cookies_without(headers.iter().copied(), &names),
            ["a=1", "d=4"]
        );
        assert!(cookies_without(["b=1; ;c=2"].iter().copied(), &names).is_empty());
    }

    #[test]
    fn logged_paths_lose_query_fragment_and_length() {
        assert_eq!(logged_path("/a/b?api_key=k"), "/a/b");
        assert_eq!(logged_path("/a#f?x"), "/a");
        assert_eq!(logged_path("?q"), "");
        let long = format!("/{}", "é".repeat(300));
        assert_eq!(logged_path(&long).chars().count(), 256);
    }
}
