//! Native signature verification through Envoy's `verify_signature` foreign function
//! (BoringSSL), detected once per VM with a known-answer check.

use std::cell::Cell;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use crate::policy::auth::jwt::native::{decode_result, encode_arguments};
use crate::policy::{HashAlg, NativeVerify};

/// A fixed RSA-2048 public key, a message and its RSA PKCS#1 v1.5 SHA-256 signature, made
/// offline by tests/data/jwt/generate.py.
const KAT_SPKI: &[u8] = include_bytes!("kat/rsa_spki.der");
const KAT_MESSAGE: &[u8] = include_bytes!("kat/message.txt");
const KAT_SIGNATURE: &[u8] = include_bytes!("kat/rsa_sha256.sig");

/// Test-only switch: `API_GUARD_JWT_NATIVE=off` in the VM's environment forces the pure-Rust
/// path (Envoy passes `vm_config.environment_variables` to the module).
const ENV_SWITCH: &str = "API_GUARD_JWT_NATIVE";

thread_local! {
    /// None until detected; then whether the native path is in use.
    static NATIVE: Cell<Option<bool>> = const { Cell::new(None) };
    static COUNTER: Cell<Option<u32>> = const { Cell::new(None) };
}

fn call(hash: HashAlg, spki: &[u8], signature: &[u8], text: &[u8]) -> NativeVerify {
    let arguments = encode_arguments(hash, spki, signature, text);
    match hostcalls::call_foreign_function("verify_signature", Some(&arguments)) {
        Ok(Some(answer)) => match decode_result(&answer) {
            Some(true) => NativeVerify::Valid,
            Some(false) => NativeVerify::Invalid,
            None => NativeVerify::Unavailable,
        },
        // An empty answer is an encoded `result: false`.
        Ok(None) => NativeVerify::Invalid,
        Err(_) => NativeVerify::Unavailable,
    }
}

/// Detects the native verifier once per VM: it must accept the known-good signature and
/// refuse a tampered one. Logs the outcome.
pub fn detect_once() {
    if NATIVE.with(Cell::get).is_some() {
        return;
    }
    let forced_off = std::env::var(ENV_SWITCH).is_ok_and(|v| v.eq_ignore_ascii_case("off"));
    let available = !forced_off && {
        let good = call(HashAlg::Sha256, KAT_SPKI, KAT_SIGNATURE, KAT_MESSAGE);
        let mut tampered = KAT_MESSAGE.to_vec();
        tampered.push(b'!');
        let bad = call(HashAlg::Sha256, KAT_SPKI, KAT_SIGNATURE, &tampered);
        good == NativeVerify::Valid && bad == NativeVerify::Invalid
    };
    NATIVE.with(|n| n.set(Some(available)));
    COUNTER.with(|c| {
        c.set(hostcalls::define_metric(MetricType::Counter, "api_guard.jwt.native_verify").ok())
    });
    let how = match (available, forced_off) {
        (true, _) => "native (host verify_signature)",
        (false, true) => "pure Rust (native turned off by API_GUARD_JWT_NATIVE)",
        (false, false) => "pure Rust (the host has no working verify_signature)",
    };
    log::info!("api-guard: JWT RS*/ES* signatures are verified with {how}");
}

/// The host's answer, or Unavailable when the native path is not in use.
pub fn verify(hash: HashAlg, spki: &[u8], signature: &[u8], text: &[u8]) -> NativeVerify {
    if NATIVE.with(Cell::get) != Some(true) {
        return NativeVerify::Unavailable;
    }
    let answer = call(hash, spki, signature, text);
    if answer != NativeVerify::Unavailable {
        if let Some(id) = COUNTER.with(Cell::get) {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }
    answer
}
