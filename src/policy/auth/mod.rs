//! Authentication: the credentials a rule accepts (`auth`: any one must succeed) and the
//! scopes it demands. Each method lives in its own module and answers with a [`Credential`].

pub mod api_key;
pub mod jwt;

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

/// Runs the rule's methods; the first valid credential wins. With none valid, the answer is
/// the first presented credential's failure, else the first method's "missing" denial.
pub fn authenticate<F>(methods: &[AuthMethod], mut check: F) -> Result<Principal, Denial>
where
    F: FnMut(AuthMethod) -> (Credential, Reason),
{
    let mut failure: Option<Denial> = None;
    let mut missing: Option<Reason> = None;
    for &method in methods {
        let (credential, missing_reason) = check(method);
        match credential {
            Credential::Valid(principal) => return Ok(principal),
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

/// A CORS preflight (OPTIONS with Origin and Access-Control-Request-Method): browsers never send
/// credentials with it, so it passes authentication (as Envoy's jwt_authn lets it by default).
pub fn is_cors_preflight(request: &super::Request) -> bool {
    request.method() == "OPTIONS"
        && request.header("origin").is_some()
        && request.header("access-control-request-method").is_some()
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
        assert_eq!(ok.map(|p| p.client), Ok("api_key:a".to_string()));

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
