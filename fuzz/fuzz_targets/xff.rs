//! The X-Forwarded-For reader (`client_ip.xff_trusted_hops`): any header values and any
//! number of trusted hops. Never a panic; the answer is exactly the Nth entry from the right
//! of the values joined as one list (or unknown); and whatever stands left of the last N
//! entries never changes it.
#![no_main]

use api_guard::policy::client_ip::parse_address;
use api_guard::policy::{ClientIpSource, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte is the number of hops (0-16); the rest is one header value a line.
    let Some((&hops, rest)) = data.split_first() else {
        return;
    };
    let hops = u32::from(hops % 17);
    let text = String::from_utf8_lossy(rest);
    let values: Vec<&str> = text.split('\n').collect();
    let headers: Vec<(String, String)> = values
        .iter()
        .map(|v| ("x-forwarded-for".to_string(), v.to_string()))
        .collect();
    let source = ClientIpSource {
        xff_trusted_hops: hops,
    };
    let peer = "192.0.2.200:1";
    let resolved = source.resolve(&Request::new(&headers, Some(peer)));
    if hops == 0 {
        assert_eq!(resolved, "192.0.2.200".parse().ok());
        return;
    }

    // The reference: join the values into one list, split it, count from the right.
    let joined = values.join(",");
    let entries: Vec<&str> = joined.split(',').collect();
    let expected = entries
        .len()
        .checked_sub(hops as usize)
        .and_then(|i| entries.get(i))
        .and_then(|entry| parse_address(entry.trim_matches([' ', '\t'])));
    assert_eq!(resolved, expected, "{values:?} hops {hops}");

    // What a client writes to the left changes nothing (once N entries stand right of it).
    if entries.len() >= hops as usize {
        let mut longer = vec![(
            "x-forwarded-for".to_string(),
            "1.1.1.1,, garbage,".repeat(40),
        )];
        longer.extend(headers.iter().cloned());
        let again = source.resolve(&Request::new(&longer, Some(peer)));
        assert_eq!(again, resolved, "{values:?} hops {hops}");
    }
});
