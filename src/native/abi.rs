//! The Envoy dynamic-module C ABI, declared by hand: only the types and callbacks this shell
//! uses, with the signatures of `source/extensions/dynamic_modules/abi/abi.h` as Envoy 1.40
//! ships it (ABI version string `v0.2.0`). Every callback declared here is linked at load
//! time: one the running Envoy lacks fails the load, so declare nothing unused.
//!
//! Enums are passed as C `int`-sized values; the variants are in the header's order.
#![allow(non_camel_case_types, dead_code)]

use std::ffi::{c_char, c_void};

/// The ABI version Envoy 1.40 expects from `envoy_dynamic_module_on_program_init`.
pub const ABI_VERSION: &std::ffi::CStr = c"v0.2.0";

/// Envoy's per-config object (`DynamicModuleHttpFilterConfig`).
pub type ConfigEnvoyPtr = *mut c_void;
/// Envoy's per-stream object (`DynamicModuleHttpFilter`).
pub type FilterEnvoyPtr = *mut c_void;
/// Our per-config object, handed back to us by Envoy.
pub type ConfigModulePtr = *const c_void;
/// Our per-stream object, handed back to us by Envoy.
pub type FilterModulePtr = *const c_void;

/// Bytes Envoy owns (valid until the hook returns, unless a setter is called).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    pub ptr: *const c_char,
    pub length: usize,
}

impl EnvoyBuffer {
    pub const EMPTY: EnvoyBuffer = EnvoyBuffer {
        ptr: std::ptr::null(),
        length: 0,
    };
}

/// Bytes we own, lent to Envoy for the duration of one call.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleBuffer {
    pub ptr: *const c_char,
    pub length: usize,
}

impl ModuleBuffer {
    pub fn of(bytes: &[u8]) -> Self {
        ModuleBuffer {
            ptr: bytes.as_ptr().cast(),
            length: bytes.len(),
        }
    }

    /// The null buffer: "no value" (a header setter then removes the header).
    pub const NULL: ModuleBuffer = ModuleBuffer {
        ptr: std::ptr::null(),
        length: 0,
    };
}

/// A header we own (local replies).
#[repr(C)]
pub struct ModuleHttpHeader {
    pub key_ptr: *const c_char,
    pub key_length: usize,
    pub value_ptr: *const c_char,
    pub value_length: usize,
}

/// A header Envoy owns.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyHttpHeader {
    pub key_ptr: *const c_char,
    pub key_length: usize,
    pub value_ptr: *const c_char,
    pub value_length: usize,
}

impl EnvoyHttpHeader {
    pub const EMPTY: EnvoyHttpHeader = EnvoyHttpHeader {
        key_ptr: std::ptr::null(),
        key_length: 0,
        value_ptr: std::ptr::null(),
        value_length: 0,
    };
}

#[repr(C)]
#[derive(Clone, Copy)]
pub enum HeaderType {
    RequestHeader,
    RequestTrailer,
    ResponseHeader,
    ResponseTrailer,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Critical,
    Off,
}

/// Which view of a body: the latest data handed to the hook, or what Envoy buffered.
#[repr(C)]
#[derive(Clone, Copy)]
#[allow(clippy::enum_variant_names)] // the header's names
pub enum BodyType {
    ReceivedRequestBody,
    BufferedRequestBody,
    ReceivedResponseBody,
    BufferedResponseBody,
}

/// `envoy_dynamic_module_type_attribute_id`: only the value used, at its position in the
/// header's list (request.* 0..=14, response.* 15..=23, then source.address).
pub type AttributeId = u32;
pub const ATTRIBUTE_SOURCE_ADDRESS: AttributeId = 24;

/// `FilterHeadersStatus` (request and response headers).
pub type HeadersStatus = u32;
pub const HEADERS_CONTINUE: HeadersStatus = 0;
pub const HEADERS_STOP_ITERATION: HeadersStatus = 1;

/// `FilterDataStatus` (request and response bodies).
pub type BodyStatus = u32;
pub const BODY_CONTINUE: BodyStatus = 0;
pub const BODY_STOP_ITERATION_AND_BUFFER: BodyStatus = 1;
pub const BODY_STOP_ITERATION_NO_BUFFER: BodyStatus = 3;

/// `FilterTrailersStatus`.
pub type TrailersStatus = u32;
pub const TRAILERS_CONTINUE: TrailersStatus = 0;
pub const TRAILERS_STOP_ITERATION: TrailersStatus = 1;

/// `envoy_dynamic_module_type_metrics_result`.
pub type MetricsResult = u32;
pub const METRICS_SUCCESS: MetricsResult = 0;

extern "C" {
    pub fn envoy_dynamic_module_callback_log(level: LogLevel, message: ModuleBuffer);

    pub fn envoy_dynamic_module_callback_http_get_headers_size(
        filter: FilterEnvoyPtr,
        header_type: HeaderType,
    ) -> usize;

    pub fn envoy_dynamic_module_callback_http_get_headers(
        filter: FilterEnvoyPtr,
        header_type: HeaderType,
        result_headers: *mut EnvoyHttpHeader,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_add_header(
        filter: FilterEnvoyPtr,
        header_type: HeaderType,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_set_header(
        filter: FilterEnvoyPtr,
        header_type: HeaderType,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_send_response(
        filter: FilterEnvoyPtr,
        status_code: u32,
        headers: *mut ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );

    pub fn envoy_dynamic_module_callback_http_get_body_size(
        filter: FilterEnvoyPtr,
        body_type: BodyType,
    ) -> usize;

    pub fn envoy_dynamic_module_callback_http_get_body_chunks_size(
        filter: FilterEnvoyPtr,
        body_type: BodyType,
    ) -> usize;

    pub fn envoy_dynamic_module_callback_http_get_body_chunks(
        filter: FilterEnvoyPtr,
        body_type: BodyType,
        result: *mut EnvoyBuffer,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_received_buffered_request_body(
        filter: FilterEnvoyPtr,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: FilterEnvoyPtr,
        attribute_id: AttributeId,
        result: *mut EnvoyBuffer,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_set_filter_state_bytes(
        filter: FilterEnvoyPtr,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: ConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        counter_id: *mut usize,
    ) -> MetricsResult;

    pub fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: FilterEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> MetricsResult;
}
