//! Any bytes as a plugin configuration: compiled or refused with a path, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(error) = api_guard::config::compile(data) {
        // A refusal always says something.
        assert!(!error.message.is_empty());
    }
});
