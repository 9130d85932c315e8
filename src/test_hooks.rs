//! Hooks that only tests switch on, through the environment: the wasm VM's (Envoy's
//! `vm_config.environment_variables`) or, for the native build, Envoy's own process
//! environment. A production configuration never sets them. Shared by both shells.

use std::sync::OnceLock;

/// `API_GUARD_TEST_PANIC_PATH`: a request to exactly this path panics, so that tests can
/// watch each shell fail closed (the wasm VM's failure policy; the native hooks' catch).
fn panic_path() -> Option<&'static str> {
    static PATH: OnceLock<Option<String>> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::var("API_GUARD_TEST_PANIC_PATH")
            .ok()
            .filter(|p| !p.is_empty())
    })
    .as_deref()
}

/// Panics when the test hook names this path; does nothing otherwise.
#[allow(clippy::panic)]
pub fn crash_if_asked(path: &str) {
    if panic_path() == Some(path) {
        panic!("test hook API_GUARD_TEST_PANIC_PATH: deliberate panic");
    }
}
