//! A read-only view of a request's headers as the core sees them.

use std::net::{IpAddr, SocketAddr};

/// The request as Envoy presents it: header names are lower case, with the HTTP/2
/// pseudo-headers `:method`, `:path`, `:authority` and `:scheme` among them.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    headers: &'a [(String, String)],
    /// The downstream peer as Envoy reports it (`ip:port`), if known.
    source_address: Option<&'a str>,
    /// Whether the headers ended the stream (no body follows), when the host says so.
    end_of_stream: Option<bool>,
}

impl<'a> Request<'a> {
    pub fn new(headers: &'a [(String, String)], source_address: Option<&'a str>) -> Self {
        Request {
            headers,
            source_address,
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
        self.source_address
    }

    /// The downstream peer's IP address.
    pub fn client_ip(&self) -> Option<IpAddr> {
        let address = self.source_address?;
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

    #[test]
    fn views_the_pseudo_headers_and_source() {
        let h = vec![
            (":method".to_string(), "POST".to_string()),
            (":path".to_string(), "/a/b?x=1&y".to_string()),
            ("x-a".to_string(), "1".to_string()),
            ("x-a".to_string(), "2".to_string()),
        ];
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
}
