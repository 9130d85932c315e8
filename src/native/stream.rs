//! Safe calls on one HTTP stream of Envoy: each wraps one ABI callback. Every buffer Envoy
//! lends is copied before the call returns, so no borrowed pointer outlives the hook.

use super::abi::{self, BodyType, EnvoyBuffer, EnvoyHttpHeader, HeaderType, ModuleBuffer};

/// Envoy's object for the stream being handled; valid for the hook that received it.
#[derive(Clone, Copy)]
pub struct Stream(abi::FilterEnvoyPtr);

/// Bytes Envoy lent, copied into an owned vector.
///
/// # Safety
/// `ptr` must be null or point to `length` readable bytes for the duration of the call.
unsafe fn copy_envoy_bytes(ptr: *const std::ffi::c_char, length: usize) -> Vec<u8> {
    if ptr.is_null() || length == 0 {
        return Vec::new();
    }
    // SAFETY: the caller guarantees `ptr` points to `length` readable bytes.
    unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), length) }.to_vec()
}

/// Header bytes as text: a value that is not UTF-8 (obs-text) is read with U+FFFD in place
/// of the bad bytes, so it can never match a configured value.
fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

impl Stream {
    pub fn new(ptr: abi::FilterEnvoyPtr) -> Self {
        Stream(ptr)
    }

    /// Every header of a map, pseudo-headers included, in Envoy's order.
    pub fn headers(self, header_type: HeaderType) -> Vec<(String, String)> {
        // SAFETY: `self.0` is the stream Envoy passed to the running hook.
        let count = unsafe {
            abi::envoy_dynamic_module_callback_http_get_headers_size(self.0, header_type)
        };
        if count == 0 {
            return Vec::new();
        }
        let mut raw = vec![EnvoyHttpHeader::EMPTY; count];
        // SAFETY: `raw` has room for the `count` headers Envoy just reported, and the
        // pointers it fills stay valid until this hook returns; we copy them below.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_get_headers(
                self.0,
                header_type,
                raw.as_mut_ptr(),
            )
        };
        if !ok {
            return Vec::new();
        }
        raw.iter()
            .map(|h| {
                // SAFETY: Envoy filled each entry with pointers to `*_length` bytes of its
                // header map, valid until the hook returns (nothing is set in between).
                let (key, value) = unsafe {
                    (
                        copy_envoy_bytes(h.key_ptr, h.key_length),
                        copy_envoy_bytes(h.value_ptr, h.value_length),
                    )
                };
                (text(key), text(value))
            })
            .collect()
    }

    /// Replaces every value of `name` by `value`, or removes the header (`None`).
    pub fn set_header(self, header_type: HeaderType, name: &str, value: Option<&str>) {
        let value = value.map_or(ModuleBuffer::NULL, |v| ModuleBuffer::of(v.as_bytes()));
        // SAFETY: both buffers borrow live Rust strings for the duration of the call; Envoy
        // copies them into its header map.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_header(
                self.0,
                header_type,
                ModuleBuffer::of(name.as_bytes()),
                value,
            );
        }
    }

    /// Adds a value of `name` (the header is created if absent).
    pub fn add_header(self, header_type: HeaderType, name: &str, value: &str) {
        // SAFETY: as in `set_header`: borrowed strings, copied by Envoy during the call.
        unsafe {
            abi::envoy_dynamic_module_callback_http_add_header(
                self.0,
                header_type,
                ModuleBuffer::of(name.as_bytes()),
                ModuleBuffer::of(value.as_bytes()),
            );
        }
    }

    /// Answers the request locally; later filters and the upstream see nothing of it.
    pub fn send_response(self, status: u16, headers: &[(&str, &str)], body: &[u8], details: &str) {
        let mut raw: Vec<abi::ModuleHttpHeader> = headers
            .iter()
            .map(|(name, value)| abi::ModuleHttpHeader {
                key_ptr: name.as_ptr().cast(),
                key_length: name.len(),
                value_ptr: value.as_ptr().cast(),
                value_length: value.len(),
            })
            .collect();
        // SAFETY: `raw` points into `headers`, and `body` and `details` are borrowed; all
        // outlive the call, during which Envoy copies them into its reply.
        unsafe {
            abi::envoy_dynamic_module_callback_http_send_response(
                self.0,
                u32::from(status),
                raw.as_mut_ptr(),
                raw.len(),
                ModuleBuffer::of(body),
                ModuleBuffer::of(details.as_bytes()),
            );
        }
    }

    /// Size in bytes of a body view.
    pub fn body_size(self, body_type: BodyType) -> usize {
        // SAFETY: `self.0` is the stream of the running hook.
        unsafe { abi::envoy_dynamic_module_callback_http_get_body_size(self.0, body_type) }
    }

    /// Appends a body view's bytes to `out`.
    pub fn read_body(self, body_type: BodyType, out: &mut Vec<u8>) {
        // SAFETY: `self.0` is the stream of the running hook.
        let count = unsafe {
            abi::envoy_dynamic_module_callback_http_get_body_chunks_size(self.0, body_type)
        };
        if count == 0 {
            return;
        }
        let mut chunks = vec![EnvoyBuffer::EMPTY; count];
        // SAFETY: `chunks` has room for the `count` slices Envoy just reported; they stay
        // valid until the hook returns and are copied right below.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_get_body_chunks(
                self.0,
                body_type,
                chunks.as_mut_ptr(),
            )
        };
        if !ok {
            return;
        }
        for chunk in &chunks {
            // SAFETY: each chunk points to `length` bytes of Envoy's buffer (see above).
            out.extend_from_slice(&unsafe { copy_envoy_bytes(chunk.ptr, chunk.length) });
        }
    }

    /// Whether the latest body data handed to us is the buffer Envoy already holds (a filter
    /// before us buffered the body), rather than a new chunk to count on top of it.
    pub fn received_is_buffered(self) -> bool {
        // SAFETY: `self.0` is the stream of the running hook.
        unsafe { abi::envoy_dynamic_module_callback_http_received_buffered_request_body(self.0) }
    }

    /// The downstream peer's `ip:port` (Envoy's `source.address`).
    pub fn source_address(self) -> Option<String> {
        let mut value = EnvoyBuffer::EMPTY;
        // SAFETY: `value` is a valid out-pointer; Envoy points it at bytes valid until the
        // hook returns, copied right below.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.0,
                abi::ATTRIBUTE_SOURCE_ADDRESS,
                &mut value,
            )
        };
        if !ok {
            return None;
        }
        // SAFETY: as above.
        let bytes = unsafe { copy_envoy_bytes(value.ptr, value.length) };
        String::from_utf8(bytes).ok()
    }

    /// Publishes a value to the stream's filter state (readable in the access log).
    pub fn set_filter_state(self, key: &str, value: &str) {
        // SAFETY: both buffers borrow live strings for the call; Envoy copies them.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_filter_state_bytes(
                self.0,
                ModuleBuffer::of(key.as_bytes()),
                ModuleBuffer::of(value.as_bytes()),
            );
        }
    }

    /// Adds one to a counter defined in the filter's configuration.
    pub fn increment_counter(self, id: usize) {
        // SAFETY: `id` came from `define_counter` on the configuration that created this
        // stream's filter; a counter without labels takes no label values.
        unsafe {
            abi::envoy_dynamic_module_callback_http_filter_increment_counter(
                self.0,
                id,
                std::ptr::null_mut(),
                0,
                1,
            );
        }
    }
}

/// Writes a line to Envoy's log (the `dynamic_modules` component).
pub fn log(level: abi::LogLevel, message: &str) {
    // SAFETY: the buffer borrows `message` for the call; Envoy copies it into its log.
    unsafe { abi::envoy_dynamic_module_callback_log(level, ModuleBuffer::of(message.as_bytes())) }
}

/// Defines a counter without labels on a filter configuration (only in `config_new`).
pub fn define_counter(config: abi::ConfigEnvoyPtr, name: &str) -> Option<usize> {
    let mut id = 0usize;
    // SAFETY: `config` is the configuration object Envoy passed to the running
    // `config_new`; `name` is borrowed for the call and `id` is a valid out-pointer.
    let result = unsafe {
        abi::envoy_dynamic_module_callback_http_filter_config_define_counter(
            config,
            ModuleBuffer::of(name.as_bytes()),
            std::ptr::null_mut(),
            0,
            &mut id,
        )
    };
    (result == abi::METRICS_SUCCESS).then_some(id)
}
