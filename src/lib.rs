//! api-guard: an Envoy HTTP filter (proxy-wasm) that secures APIs in one pass.
//!
//! The crate has two halves (see DESIGN.md):
//! - the core (`config` and `policy`): plain Rust with no proxy-wasm types, compiled and
//!   unit-tested natively;
//! - the shell (`filter`): the only code that talks to Envoy through proxy-wasm host calls,
//!   compiled only for wasm32.

// Nothing on the request path may panic: a panic traps the VM for every request of a worker.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod config;
pub mod policy;

#[cfg(target_arch = "wasm32")]
mod filter;

#[cfg(all(feature = "native", not(target_arch = "wasm32")))]
mod native;

#[cfg(any(target_arch = "wasm32", feature = "native"))]
mod test_hooks;
