//! Any bytes as a JWKS, read strictly (configured) and leniently (fetched), and as a
//! provider's local_jwks: accepted or refused with a path, never a panic.
#![no_main]

use api_guard::policy::auth::jwt::keys::{KeySet, Strictness};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for strictness in [Strictness::Strict, Strictness::Lenient] {
        let _ = KeySet::from_json(data, strictness);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let config = serde_json::json!({ "jwt_providers": { "p": { "local_jwks": text } } });
        if let Err(e) = api_guard::config::compile(config.to_string().as_bytes()) {
            assert!(e.path.starts_with("jwt_providers"));
        }
    }
});
