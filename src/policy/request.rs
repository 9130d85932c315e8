//! A read-only view of a request's headers as the core sees them.

use std::cell::OnceCell;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// The downstream peer's address (`ip:port`), asked of the host only when a stage needs it:
/// the question costs a host call that most requests (no rate limit or IP list keyed on the
/// address, nothing logged) never need.
pub struct SourceAddress {
    value: OnceCell<Option<String>>,
    fetch: fn() -> Option<String>,
}

impl SourceAddress {
    /// An address that `fetch` reads from the host the first time it is asked for.
    pub fn lazy(fetch: fn() -> Option<String>) -> Self {
        SourceAddress {
            value: OnceCell::new(),
            fetch,
        }
    }

    pub fn get(&self) -> Option<&str> {
        self.value.get_or_init(self.fetch).as_deref()
    }
}

impl fmt::Debug for SourceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SourceAddress")
            .field(&self.value.get())
            .finish()
    }
}

/// Where a [`Request`] gets its source address from.
#[derive(Debug, Clone, Copy)]
enum Source<'a> {
    Known(Option<&'a str>),
    Lazy(&'a SourceAddress),
}

/// The request as Envoy presents it: header names are lower case, with the HTTP/2
/// pseudo-headers `:method`, `:path`, `:authority` and `:scheme` among them.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    headers: &'a [(String, String)],
    /// The downstream peer as Envoy reports it (`ip:port`), if known.
    source: Source<'a>,
    /// Whether the headers ended the stream (no body follows), when the host says so.
    end_of_stream: Option<bool>,
}

impl<'a> Request<'a> {
    pub fn new(headers: &'a [(String, String)], source_address: Option<&'a str>) -> Self {
        Request {
            headers,
            source: Source::Known(source_address),
            end_of_stream: None,
        }
    }

    /// A request whose source address is read from the host only if a stage asks for it.
    pub fn with_lazy_source(headers: &'a [(String, String)], source: &'a SourceAddress) -> Self {
        Request {
            headers,
            source: Source::Lazy(source),
            end_of_stream: None,
        }
    }

    /// Records whether the headers ended the stream (Envoy's `end_of_stream`).
    pub fn with_end_of_stream(mut self, end_of_stream: bool) -> Self {
        self.end_of_stream = Some(end_of_stream);
        self
    }

    /// Whether a body follows the headers: as the host said, else from the framing headers.
    pub fn body_expected(&self) -> bool {
        match self.end_of_stream {
            Some(end) => !end,
            None => {
                self.header("transfer-encoding").is_some()
                    || self
                        .header_values("content-length")
                        .any(|v| v.trim().parse::<u64>().map_or(true, |n| n > 0))
            }
        }
    }

    pub fn headers(&self) -> &'a [(String, String)] {
        self.headers
    }

    /// The first value of a header (names are lower case).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in order.
    pub fn header_values<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a str> + 'n
    where
        'a: 'n,
    {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn method(&self) -> &'a str {
        self.header(":method").unwrap_or("")
    }

    /// The request target as received, query included.
    pub fn path(&self) -> &'a str {
        self.header(":path").unwrap_or("")
    }

    pub fn path_without_query(&self) -> &'a str {
        let path = self.path();
        path.split_once('?').map_or(path, |(p, _)| p)
    }

    /// The raw query string (without `?`), if any.
    pub fn query(&self) -> Option<&'a str> {
        self.path().split_once('?').map(|(_, q)| q)
    }

    pub fn authority(&self) -> Option<&'a str> {
        self.header(":authority").filter(|a| !a.is_empty())
    }

    pub fn source_address(&self) -> Option<&'a str> {
        match self.source {
            Source::Known(address) => address,
            Source::Lazy(source) => source.get(),
        }
    }

    /// The downstream peer's IP address.
    pub fn client_ip(&self) -> Option<IpAddr> {
        let address = self.source_address()?;
        address
            .parse::<SocketAddr>()
            .map(|s| s.ip())
            .or_else(|_| address.parse::<IpAddr>())
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::testing::headers;

    #[test]
    fn views_the_pseudo_headers_and_source() {
        let h = headers(&[
            (":method", "POST"),
            (":path", "/a/b?x=1&y"),
            ("x-a", "1"),
            ("x-a", "2"),
        ]);
        let r = Request::new(&h, Some("[2001:db8::1]:443"));
        assert_eq!(r.method(), "POST");
        assert_eq!(r.path_without_query(), "/a/b");
        assert_eq!(r.query(), Some("x=1&y"));
        assert_eq!(r.header_values("x-a").collect::<Vec<_>>(), vec!["1", "2"]);
        assert_eq!(
            r.client_ip().map(|i| i.to_string()).as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(
            Request::new(&h, Some("10.1.2.3"))
                .client_ip()
                .map(|i| i.to_string())
                .as_deref(),
            Some("10.1.2.3")
        );
        assert_eq!(Request::new(&h, None).client_ip(), None);
    }

    thread_local! {
        static FETCHES: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }

    fn fetch_counted() -> Option<String> {
        FETCHES.with(|n| n.set(n.get() + 1));
        Some("192.0.2.4:80".into())
    }

    #[test]
    fn a_lazy_source_is_fetched_once_and_only_when_asked() {
        let h = headers(&[(":path", "/")]);
        let source = SourceAddress::lazy(fetch_counted);
        let r = Request::with_lazy_source(&h, &source);
        assert_eq!(r.path(), "/");
        assert_eq!(FETCHES.with(|n| n.get()), 0);
        assert_eq!(
            r.client_ip().map(|i| i.to_string()).as_deref(),
            Some("192.0.2.4")
        );
        assert_eq!(r.source_address(), Some("192.0.2.4:80"));
        assert_eq!(FETCHES.with(|n| n.get()), 1);
    }
}
