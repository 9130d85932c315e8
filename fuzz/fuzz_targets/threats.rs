//! Any bytes as a path, a query, a header value and a body of every kind (form, multipart,
//! text, JSON, UTF-16) through the threat detector (URL decoding, double encoding,
//! libinjection): a verdict, never a panic.
#![no_main]

use api_guard::policy::http;
use api_guard::policy::screen::threats;
use api_guard::policy::testing::headers;
use api_guard::policy::Request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = threats::Scanner::new(threats::DEFAULT_SCAN_BUDGET).scan_text(&text);
    let _ = threats::scan_form(data);
    let _ = threats::has_traversal(data);
    let _ = http::percent_decode_lenient(data, true);
    for content_type in [None, Some("multipart/form-data; boundary=b"), Some("text/plain")] {
        let _ = threats::Scanner::new(threats::DEFAULT_SCAN_BUDGET).scan_body(content_type, data);
    }
    let target: String = text.chars().filter(|c| !c.is_control() && *c != ' ').collect();
    let path = format!("/{target}?q={target}");
    let user_agent = text.replace(['\r', '\n'], "");
    let cookie = format!("a={target}");
    let headers = headers(&[
        (":method", "GET"),
        (":path", &path),
        ("user-agent", &user_agent),
        ("cookie", &cookie),
    ]);
    let _ = threats::scan_request(&Request::new(&headers, None));
});
