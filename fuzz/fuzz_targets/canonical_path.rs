//! Any bytes as a request path through the canonical path (src/policy/path.rs): a form or a
//! refusal, never a panic; and every form is one rules can trust: a fixed point, starting
//! with '/', with no empty or dot segment, no parameter, no backslash, no escaped separator
//! and no escape of an unreserved character left.
#![no_main]

use api_guard::policy::path::canonical_path;
use libfuzzer_sys::fuzz_target;

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    let Ok(path) = canonical_path(&raw) else {
        return;
    };
    assert!(path.starts_with('/'), "{raw:?} -> {path:?}");
    assert_eq!(
        canonical_path(&path).map(|p| p.into_owned()),
        Ok(path.to_string()),
        "not a fixed point: {raw:?}"
    );
    let body = path.strip_suffix('/').unwrap_or(&path);
    for segment in body.split('/').skip(1) {
        assert!(
            !matches!(segment, "" | "." | ".."),
            "{raw:?} -> {path:?}"
        );
    }
    let bytes = path.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        assert!(b > 0x20 && b < 0x7f, "{raw:?} -> {path:?}");
        assert!(!matches!(b, b';' | b'\\' | b'#' | b'?'), "{raw:?} -> {path:?}");
        if b == b'%' {
            let high = bytes.get(i + 1).copied().and_then(hex);
            let low = bytes.get(i + 2).copied().and_then(hex);
            let (Some(high), Some(low)) = (high, low) else {
                panic!("a bad escape in {path:?} from {raw:?}");
            };
            let value = high << 4 | low;
            assert!(
                !(value.is_ascii_alphanumeric() || b"-._~/\\;".contains(&value)),
                "{raw:?} -> {path:?}"
            );
        }
    }
    // Lower-casing (match.ignore_case) keeps a canonical path canonical.
    let lower = path.to_ascii_lowercase();
    assert!(canonical_path(&lower).is_ok(), "{raw:?}");
});
