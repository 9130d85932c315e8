//! The module imports only what Envoy provides: the proxy-wasm ABI 0.2.1 host functions and
//! the WASI calls Envoy implements (proxy-wasm-cpp-host's list). Anything else would make
//! Envoy refuse the module, or trap on first use.

mod common;

/// proxy-wasm ABI 0.2.1 host functions (imported from `env` as `proxy_<name>`).
const PROXY_WASM_0_2_1: &[&str] = &[
    "log",
    "get_log_level",
    "get_status",
    "set_property",
    "get_property",
    "send_local_response",
    "get_shared_data",
    "set_shared_data",
    "register_shared_queue",
    "resolve_shared_queue",
    "dequeue_shared_queue",
    "enqueue_shared_queue",
    "get_header_map_value",
    "add_header_map_value",
    "replace_header_map_value",
    "remove_header_map_value",
    "get_header_map_pairs",
    "set_header_map_pairs",
    "get_header_map_size",
    "get_buffer_status",
    "get_buffer_bytes",
    "set_buffer_bytes",
    "http_call",
    "grpc_call",
    "grpc_stream",
    "grpc_close",
    "grpc_cancel",
    "grpc_send",
    "set_tick_period_milliseconds",
    "get_current_time_nanoseconds",
    "define_metric",
    "increment_metric",
    "record_metric",
    "get_metric",
    "set_effective_context",
    "done",
    "call_foreign_function",
    "continue_stream",
    "close_stream",
    "continue_request",
    "continue_response",
    "clear_route_cache",
    "get_configuration",
];

/// The WASI preview 1 functions Envoy implements.
const ENVOY_WASI: &[&str] = &[
    "fd_write",
    "fd_read",
    "fd_seek",
    "fd_close",
    "fd_fdstat_get",
    "environ_get",
    "environ_sizes_get",
    "args_get",
    "args_sizes_get",
    "clock_time_get",
    "random_get",
    "proc_exit",
    "path_open",
    "fd_prestat_get",
    "fd_prestat_dir_name",
];

#[test]
fn module_imports_only_what_envoy_provides() {
    let bytes = std::fs::read(common::module_path()).unwrap();
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
        match payload.unwrap() {
            wasmparser::Payload::ImportSection(section) => {
                for import in section {
                    let import = import.unwrap();
                    imports.push((import.module.to_string(), import.name.to_string()));
                }
            }
            wasmparser::Payload::ExportSection(section) => {
                for export in section {
                    exports.push(export.unwrap().name.to_string());
                }
            }
            _ => {}
        }
    }
    assert!(!imports.is_empty());
    for (module, name) in &imports {
        let allowed = match module.as_str() {
            "env" => name
                .strip_prefix("proxy_")
                .is_some_and(|f| PROXY_WASM_0_2_1.contains(&f)),
            "wasi_snapshot_preview1" => ENVOY_WASI.contains(&name.as_str()),
            _ => false,
        };
        assert!(
            allowed,
            "the module imports {module}.{name}, which Envoy does not provide"
        );
    }
    // The ABI version Envoy looks for, and the entry points it calls.
    for needed in [
        "proxy_abi_version_0_2_1",
        "proxy_on_context_create",
        "proxy_on_configure",
        "malloc",
    ] {
        assert!(
            exports
                .iter()
                .any(|e| e == needed || (needed == "malloc" && e == "proxy_on_memory_allocate")),
            "missing export {needed}: {exports:?}"
        );
    }
}

/// proxy-wasm is a dependency of the wasm32 build only, so a core file (src/policy,
/// src/config) that imports it fails the native build and its unit tests: the core/shell
/// boundary stays a compile error.
#[test]
fn proxy_wasm_is_a_wasm32_only_dependency() {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .expect("Cargo.toml");
    let mut table = "";
    let mut declared_in = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            table = line;
        } else if line.starts_with("proxy-wasm") {
            declared_in.push(table);
        }
    }
    assert_eq!(
        declared_in,
        [r#"[target.'cfg(target_arch = "wasm32")'.dependencies]"#],
        "proxy-wasm must be declared only for wasm32"
    );
}
