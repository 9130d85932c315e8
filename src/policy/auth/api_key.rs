//! API keys, stored as SHA-256 digests: the presented key is hashed and the digest compared
//! with every configured one in constant time. The key itself is never stored, logged or
//! (by default) forwarded; the upstream gets the client id in `client_header` instead.

use std::borrow::Cow;

use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::{Credential, Principal};
use crate::policy::host::unix_seconds;
use crate::policy::http;
use crate::policy::{Denial, Host, Reason, Request};

/// Longer presented keys are refused without hashing (real keys are 20 to 100 characters).
pub const MAX_KEY_BYTES: usize = 512;
/// The client id header when `client_header` is left out.
pub const DEFAULT_CLIENT_HEADER: &str = "x-api-client";
/// The key header when neither `from_headers` nor `from_params` is given.
pub const DEFAULT_KEY_HEADER: &str = "x-api-key";

/// The compiled `api_keys` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeys {
    /// Lower-case header names a key may come in.
    pub from_headers: Vec<String>,
    /// Query parameters a key may come in.
    pub from_params: Vec<String>,
    /// Set towards the upstream to the client id (incoming copies are always removed).
    pub client_header: String,
    /// Keep the key in the request towards the upstream (default: removed).
    pub forward: bool,
    pub clients: Vec<ApiClient>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct ApiClient {
    pub id: String,
    pub sha256: [u8; 32],
    pub scopes: Vec<String>,
    /// Index into `Policy::rate_limits`: this client's tier, overriding the rule's policy.
    pub rate_limit: Option<usize>,
    /// Unix seconds after which the key is refused.
    pub not_after: Option<u64>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("id", &self.id)
            .field("sha256", &DigestPrefix(&self.sha256))
            .field("scopes", &self.scopes)
            .field("rate_limit", &self.rate_limit)
            .field("not_after", &self.not_after)
            .finish()
    }
}

/// The first 4 bytes of a digest in hex, for logs and debug output.
struct DigestPrefix<'a>(&'a [u8; 32]);

impl std::fmt::Debug for DigestPrefix<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for byte in self.0.iter().take(4) {
            write!(f, "{byte:02x}")?;
        }
        f.write_str("..")
    }
}

impl ApiKeys {
    pub fn authenticate(&self, request: &Request, host: &dyn Host) -> Credential {
        let mut presented: Option<Cow<'_, [u8]>> = None;
        let mut count = 0usize;
        for name in &self.from_headers {
            for value in request.header_values(name) {
                if !value.is_empty() {
                    count += 1;
                    presented.get_or_insert(Cow::Borrowed(value.as_bytes()));
                }
            }
        }
        if let Some(query) = request.query() {
            for (name, value) in http::query_pairs(query) {
                // By decoded name, as the upstream will read it: `api%5Fkey` is `api_key`.
                if !value.is_empty() && http::param_name_is(name, &self.from_params) {
                    count += 1;
                    presented.get_or_insert_with(|| http::percent_decode(value));
                }
            }
        }
        let Some(key) = presented else {
            return Credential::Absent;
        };
        if count > 1 {
            return invalid(Reason::ApiKeyUnknown, "more than one API key was presented");
        }
        if key.len() > MAX_KEY_BYTES {
            return invalid(Reason::ApiKeyUnknown, "the API key is too long");
        }
        let Some(client) = self.lookup(&key) else {
            return invalid(Reason::ApiKeyUnknown, "the API key is not valid");
        };
        if client
            .not_after
            .is_some_and(|deadline| unix_seconds(host.now()) > deadline)
        {
            return invalid(Reason::ApiKeyExpired, "the API key has expired");
        }
        let mut principal = Principal {
            client: format!("api_key:{}", client.id),
            scopes: client.scopes.clone(),
            rate_limit: client.rate_limit,
            upstream_set: vec![(self.client_header.clone(), client.id.clone())],
            ..Principal::default()
        };
        if !self.forward {
            principal.upstream_remove = self.from_headers.clone();
            principal.remove_params = self.from_params.clone();
        }
        Credential::Valid(principal)
    }

    /// The client whose digest equals SHA-256(key). Every digest is compared, in constant
    /// time, and the match is selected without a data-dependent branch.
    fn lookup(&self, key: &[u8]) -> Option<&ApiClient> {
        let digest: [u8; 32] = Sha256::digest(key).into();
        let mut found = u32::MAX;
        for (index, client) in self.clients.iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            found = u32::conditional_select(&found, &index, client.sha256.ct_eq(&digest));
        }
        usize::try_from(found)
            .ok()
            .and_then(|i| self.clients.get(i))
    }
}

fn invalid(reason: Reason, detail: &str) -> Credential {
    Credential::Invalid(
        Denial::new(reason)
            .with_detail(detail)
            .with_header("www-authenticate", super::API_KEY_CHALLENGE),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::compile;
    use crate::policy::testing::{headers, MemoryHost};
    use crate::policy::{Decision, Verdict};

    fn sha(key: &str) -> String {
        Sha256::digest(key.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn config() -> String {
        format!(
            r#"{{
            "api_keys": {{
                "from_headers": ["x-api-key"], "from_params": ["api_key"],
                "client_header": "x-client-id",
                "clients": [
                    {{"id": "partner-a", "sha256": "{}", "scopes": ["orders:read"]}},
                    {{"id": "old", "sha256": "{}", "not_after": "2027-01-01T00:00:00Z"}}
                ]
            }},
            "rules": [
                {{"name": "read", "match": {{"prefix": "/orders"}}, "auth": ["api_key"],
                  "scopes": ["orders:read"]}},
                {{"name": "admin", "match": {{"prefix": "/admin"}}, "auth": ["api_key"],
                  "scopes": ["admin"]}},
                {{"name": "any", "match": {{"prefix": "/"}}, "auth": ["api_key"]}}
            ]}}"#,
            sha("key-a"),
            sha("key-old")
        )
    }

    fn decide_at(now: u64, path: &str, extra: &[(&str, &str)]) -> Decision {
        let policy = compile(config().as_bytes()).unwrap();
        let mut h = headers(&[(":method", "GET"), (":path", path), (":authority", "api")]);
        h.extend(headers(extra));
        let request = Request::new(&h, Some("198.51.100.9:1234"));
        policy.evaluate(&request, &MemoryHost::at(now))
    }

    fn decide(path: &str, extra: &[(&str, &str)]) -> Decision {
        decide_at(1_790_000_000, path, extra)
    }

    #[test]
    fn a_known_key_names_the_client_upstream_and_is_removed() {
        let d = decide(
            "/orders/1",
            &[("x-api-key", "key-a"), ("x-client-id", "forged")],
        );
        assert_eq!(d.verdict, Verdict::Allow);
        assert_eq!(d.client.as_deref(), Some("api_key:partner-a"));
        assert!(
            d.upstream_remove.contains(&"x-client-id".to_string()),
            "forged copy removed"
        );
        assert!(
            d.upstream_remove.contains(&"x-api-key".to_string()),
            "key not forwarded"
        );
        assert_eq!(
            d.upstream_set,
            vec![("x-client-id".to_string(), "partner-a".to_string())]
        );
    }

    #[test]
    fn a_key_in_the_query_is_decoded_and_stripped() {
        let d = decide("/any?x=1&api_key=key%2Da&y=2", &[]);
        assert_eq!(d.verdict, Verdict::Allow, "{d:?}");
        assert!(d
            .upstream_set
            .contains(&(":path".to_string(), "/any?x=1&y=2".to_string())));
        // The parameter name is decoded too, as the upstream's framework decodes it.
        let d = decide("/any?api%5Fkey=key-a&x=1", &[]);
        assert_eq!(d.verdict, Verdict::Allow, "{d:?}");
        assert!(d
            .upstream_set
            .contains(&(":path".to_string(), "/any?x=1".to_string())));
        // A second key under an encoded name is a second key: refused, never passed on.
        let d = decide("/any?api%5Fkey=EVIL", &[("x-api-key", "key-a")]);
        assert_eq!(d.reason_code(), "api_key_unknown");
    }

    #[test]
    fn failures_are_clean_401s_that_echo_nothing() {
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let table: &[Case] = &[
            ("/any", &[], "api_key_missing"),
            ("/any", &[("x-api-key", "")], "api_key_missing"),
            ("/any", &[("x-api-key", "nope")], "api_key_unknown"),
            ("/any", &[("x-api-key", "KEY-A")], "api_key_unknown"),
            ("/any", &[("x-api-key", &long)], "api_key_unknown"),
            (
                "/any",
                &[("x-api-key", "key-a"), ("x-api-key", "key-a")],
                "api_key_unknown",
            ),
            (
                "/any?api_key=key-a",
                &[("x-api-key", "key-a")],
                "api_key_unknown",
            ),
            ("/any?api_key=key-a&api_key=nope", &[], "api_key_unknown"),
            ("/admin", &[("x-api-key", "key-a")], "insufficient_scope"),
        ];
        for (path, headers, want) in table {
            let d = decide(path, headers);
            assert_eq!(d.reason_code(), *want, "{path} {headers:?}");
            let denial = d.enforced_denial().unwrap();
            let body = denial.problem_json();
            assert!(!body.contains("key-a") && !body.contains("nope") && !body.contains("kkkk"));
        }
        assert_eq!(decide("/any", &[]).enforced_denial().unwrap().status, 401);
    }

    #[test]
    fn keys_expire_after_not_after() {
        let deadline = 1_798_761_600;
        let ok = decide_at(deadline, "/any", &[("x-api-key", "key-old")]);
        assert_eq!(ok.verdict, Verdict::Allow);
        assert_eq!(ok.client.as_deref(), Some("api_key:old"));
        let late = decide_at(deadline + 1, "/any", &[("x-api-key", "key-old")]);
        assert_eq!(late.reason_code(), "api_key_expired");
        assert_eq!(late.enforced_denial().unwrap().status, 401);
    }

    #[test]
    fn forward_keeps_the_key() {
        let config = format!(
            r#"{{"api_keys": {{"forward": true, "clients": [{{"id": "a", "sha256": "{}"}}]}},
                "rules": [{{"match": {{"prefix": "/"}}, "auth": ["api_key"]}}]}}"#,
            sha("k")
        );
        let policy = compile(config.as_bytes()).unwrap();
        let headers = headers(&[(":path", "/"), ("x-api-key", "k")]);
        let d = policy.evaluate(&Request::new(&headers, None), &MemoryHost::default());
        assert_eq!(d.verdict, Verdict::Allow);
        assert!(!d.upstream_remove.contains(&"x-api-key".to_string()));
        // A second key in another spelling of the header is not forwarded next to it.
        let mut spelled = headers.clone();
        spelled.push(("x_api_key".to_string(), "other".to_string()));
        spelled.push(("X-API-KEY".to_string(), "other".to_string()));
        let d = policy.evaluate(&Request::new(&spelled, None), &MemoryHost::default());
        assert_eq!(d.verdict, Verdict::Allow);
        assert_eq!(d.upstream_remove, vec!["x_api_key", "X-API-KEY"]);
        assert!(d
            .upstream_set
            .contains(&("x-api-client".to_string(), "a".to_string())));
    }

    #[test]
    fn debug_output_never_holds_the_whole_digest() {
        let policy = compile(config().as_bytes()).unwrap();
        let text = format!("{:?}", policy.api_keys);
        assert!(!text.contains(&sha("key-a")), "{text}");
        assert!(text.contains(&sha("key-a")[..8]));
    }
}
