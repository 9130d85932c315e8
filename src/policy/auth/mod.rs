//! Authentication: the credentials a rule accepts (`auth`: any one must succeed) and the
//! scopes it demands. Each method lives in its own module and answers with a [`Credential`].

pub mod api_key;
pub mod jwt;

use serde::Deserialize;

use super::http;
use super::verdict::{Denial, Reason};

/// One entry of a rule's `auth` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A JWT provider, by index into `Policy::jwt_providers`.
    Jwt(usize),
    /// The `api_keys` block.
    ApiKey,
}

/// Who a request authenticated as. Never holds the credential itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Principal {
    /// The client identity for logs and rate limits: `api_key:<id>` or `jwt:<iss>|<sub>`.
    pub client: String,
    /// Scopes the credential grants.
    pub scopes: Vec<String>,
    /// A rate-limit policy that overrides the rule's (an API key's tier), by index.
    pub rate_limit: Option<usize>,
    /// Request headers to set towards the upstream (claims, client id).
    pub upstream_set: Vec<(String, String)>,
    /// Request headers to remove before the upstream (the credential, unless forwarded).
    pub upstream_remove: Vec<String>,
    /// Query parameters to remove before the upstream, by decoded name ([`scrub`] applies them).
    pub remove_params: Vec<String>,
    /// Cookies to remove before the upstream, by name ([`scrub`] applies them).
    pub remove_cookies: Vec<String>,
}

impl Principal {
    /// Adds every place `method` may carry a credential to what is removed before the
    /// upstream: a credential that was presented and failed, or was never looked at because
    /// another method succeeded first, must not ride along to the upstream.
    pub fn remove_locations_of(
        &mut self,
        method: AuthMethod,
        providers: &[jwt::Provider],
        api_keys: Option<&api_key::ApiKeys>,
    ) {
        let (headers, params, cookies): (Vec<&String>, &[String], &[String]) = match method {
            AuthMethod::Jwt(index) => match providers.get(index) {
                Some(p) => (
                    p.sources.headers.iter().map(|h| &h.name).collect(),
                    &p.sources.params,
                    &p.sources.cookies,
                ),
                None => return,
            },
            AuthMethod::ApiKey => match api_keys {
                Some(k) => (k.from_headers.iter().collect(), &k.from_params, &[]),
                None => return,
            },
        };
        push_new(&mut self.upstream_remove, headers);
        push_new(&mut self.remove_params, params.iter());
        push_new(&mut self.remove_cookies, cookies.iter());
    }
}

fn push_new<'a>(list: &mut Vec<String>, names: impl IntoIterator<Item = &'a String>) {
    for name in names {
        if !list.contains(name) {
            list.push(name.clone());
        }
    }
}

/// Turns a principal's `remove_params` and `remove_cookies` into header changes towards the
/// upstream: a new `:path` without those parameters, a `cookie` without those cookies.
pub fn scrub(principal: &mut Principal, request: &super::Request) {
    if !principal.remove_params.is_empty() {
        if let Some(path) = http::strip_query_params(request.path(), &principal.remove_params) {
            principal.upstream_set.push((":path".to_string(), path));
        }
    }
    if !principal.remove_cookies.is_empty() && request.header("cookie").is_some() {
        let names = &principal.remove_cookies;
        let kept = http::cookies_without(request.header_values("cookie"), names);
        if kept.is_empty() {
            principal.upstream_remove.push("cookie".to_string());
        } else {
            principal
                .upstream_set
                .push(("cookie".to_string(), kept.join("; ")));
        }
    }
}

/// What one method found in a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Credential {
    /// The request carries no credential of this kind.
    Absent,
    Valid(Principal),
    /// A credential was presented and failed.
    Invalid(Denial),
}

/// Runs the rule's methods; the first valid credential wins, and is returned with its method.
/// With none valid, the answer is the first presented credential's failure, else the first
/// method's "missing" denial.
pub fn authenticate<F>(
    methods: &[AuthMethod],
    mut check: F,
) -> Result<(AuthMethod, Principal), Denial>
where
    F: FnMut(AuthMethod) -> (Credential, Reason),
{
    let mut failure: Option<Denial> = None;
    let mut missing: Option<Reason> = None;
    for &method in methods {
        let (credential, missing_reason) = check(method);
        match credential {
            Credential::Valid(principal) => return Ok((method, principal)),
            Credential::Invalid(denial) => {
                if failure.is_none() {
                    failure = Some(denial);
                }
            }
            Credential::Absent => {
                if missing.is_none() {
                    missing = Some(missing_reason);
                }
            }
        }
    }
    Err(failure.unwrap_or_else(|| missing_denial(missing.unwrap_or(Reason::JwtMissing))))
}

/// The answer to a request with no credential at all (RFC 6750: no error code).
pub fn missing_denial(reason: Reason) -> Denial {
    let denial = Denial::new(reason).with_detail("no credential was presented");
    match reason {
        Reason::JwtMissing => denial.with_header("www-authenticate", "Bearer realm=\"api-guard\""),
        Reason::ApiKeyMissing => denial.with_header("www-authenticate", API_KEY_CHALLENGE),
        _ => denial,
    }
}

/// RFC 9110 requires a challenge on every 401; API keys have no registered scheme, so this
/// names the usual one.
pub const API_KEY_CHALLENGE: &str = "APIKey realm=\"api-guard\"";

/// `cors_preflight` (rule or top level): whether a CORS preflight must authenticate.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum CorsPreflight {
    /// A preflight is authenticated like any request (the default, as Envoy's jwt_authn with
    /// `bypass_cors_preflight: false`): the upstream answers CORS only for credentialed ones.
    #[default]
    Authenticate,
    /// A preflight without a body passes authentication and scopes (browsers send none with
    /// it); the rule's credential locations are removed from it. A preflight with a body is
    /// not one a browser sends: it is authenticated.
    Allow,
}

/// A CORS preflight: OPTIONS (in any case, as methods are matched) with Origin and
/// Access-Control-Request-Method.
pub fn is_cors_preflight(request: &super::Request) -> bool {
    request.method().eq_ignore_ascii_case("OPTIONS")
        && request.header("origin").is_some()
        && request.header("access-control-request-method").is_some()
}

/// A preflight that `cors_preflight: "allow"` lets past authentication: one without a body,
/// so that nothing but headers reaches the upstream uncredentialed.
pub fn is_bodiless_cors_preflight(request: &super::Request) -> bool {
    is_cors_preflight(request) && !request.body_expected()
}

/// Every scope the rule demands must be granted; else 403 insufficient_scope.
pub fn check_scopes(required: &[String], principal: &Principal) -> Result<(), Denial> {
    if required
        .iter()
        .all(|scope| principal.scopes.iter().any(|granted| granted == scope))
    {
        return Ok(());
    }
    let wanted = required.join(" ");
    Err(Denial::new(Reason::InsufficientScope)
        .with_detail("the credential does not grant every scope this route requires")
        .with_header(
            "www-authenticate",
            format!("Bearer realm=\"api-guard\", error=\"insufficient_scope\", scope=\"{wanted}\""),
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(client: &str, scopes: &[&str]) -> Principal {
        Principal {
            client: client.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            ..Principal::default()
        }
    }

    #[test]
    fn any_valid_method_wins_and_failures_beat_absence() {
        let methods = [AuthMethod::Jwt(0), AuthMethod::ApiKey];
        let ok = authenticate(&methods, |m| match m {
            AuthMethod::Jwt(_) => (
                Credential::Invalid(Denial::new(Reason::JwtExpired)),
                Reason::JwtMissing,
            ),
            AuthMethod::ApiKey => (
                Credential::Valid(principal("api_key:a", &[])),
                Reason::ApiKeyMissing,
            ),
        });
        assert_eq!(
            ok.map(|(m, p)| (m, p.client)),
            Ok((AuthMethod::ApiKey, "api_key:a".to_string()))
        );

        let failed = authenticate(&methods, |m| match m {
            AuthMethod::Jwt(_) => (Credential::Absent, Reason::JwtMissing),
            AuthMethod::ApiKey => (
                Credential::Invalid(Denial::new(Reason::ApiKeyUnknown)),
                Reason::ApiKeyMissing,
            ),
        });
        assert_eq!(failed.map_err(|d| d.reason), Err(Reason::ApiKeyUnknown));

        let missing = authenticate(&methods, |m| match m {
            AuthMethod::Jwt(_) => (Credential::Absent, Reason::JwtMissing),
            AuthMethod::ApiKey => (Credential::Absent, Reason::ApiKeyMissing),
        });
        let denial = missing.unwrap_err();
        assert_eq!(denial.reason, Reason::JwtMissing);
        assert!(denial.headers.contains(&(
            "www-authenticate".to_string(),
            "Bearer realm=\"api-guard\"".to_string()
        )));
    }

    #[test]
    fn scopes_must_all_be_granted() {
        let p = principal("c", &["orders:read", "orders:write"]);
        assert!(check_scopes(&["orders:write".into()], &p).is_ok());
        assert!(check_scopes(&[], &p).is_ok());
        let denial = check_scopes(&["orders:write".into(), "admin".into()], &p).unwrap_err();
        assert_eq!(denial.status, 403);
        assert!(denial.headers[0].1.contains("scope=\"orders:write admin\""));
    }
}
