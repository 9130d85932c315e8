//! Response header hardening (OWASP Secure Headers Project values), stack-revealing header
//! removal, the `require_https` check, and the request headers api-guard owns towards the
//! upstream (removed from requests in every spelling an upstream folds together).

use serde::Deserialize;

use super::{Denial, Reason, Request};

/// A preset of response security headers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// Headers for JSON APIs (default).
    #[default]
    Api,
    /// `api` plus cross-origin isolation, a deny-all Permissions-Policy and no caching at all.
    Strict,
    /// No preset headers; `response_set` and `response_remove` still apply.
    Off,
}

/// What to do with a request that did not arrive over HTTPS (per `x-forwarded-proto`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum HttpsPolicy {
    #[default]
    Off,
    /// 403 problem+json `https_required`.
    Reject,
    /// 308 to the same URL with `https://` (the method and body are kept).
    Redirect,
}

/// One change to a response header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderAction {
    /// Replace any value the upstream sent.
    Set(String, String),
    /// Add only when the upstream sent none (keeps an upstream's deliberate choice).
    SetIfAbsent(String, String),
    Remove(String),
}

/// One host call on a response's headers, planned from the names it already has: the shells
/// make exactly these calls (a set, add or removal costs a host call only when it changes
/// something).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderEdit<'a> {
    /// Replace the value the response has.
    Replace(&'a str, &'a str),
    /// Add a header the response does not have (cheaper for Envoy than a replace).
    Add(&'a str, &'a str),
    Remove(&'a str),
}

/// Headers that reveal the server stack (OWASP Secure Headers Project, headers_remove list).
pub const DEFAULT_REMOVE: &[&str] = &[
    "server",
    "x-powered-by",
    "x-aspnet-version",
    "x-aspnetmvc-version",
    "x-generator",
    "x-runtime",
    "x-version",
    "x-powered-cms",
    "x-drupal-cache",
    "x-drupal-dynamic-cache",
    "x-varnish",
    "x-backend-server",
    "x-server",
    "x-sourcemap",
    "sourcemap",
    "liferay-portal",
    "x-nextjs-cache",
    "x-php-version",
];

const API: &[(&str, &str)] = &[
    (
        "strict-transport-security",
        "max-age=31536000; includeSubDomains",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-resource-policy", "same-origin"),
    ("x-permitted-cross-domain-policies", "none"),
];

const STRICT_EXTRA: &[(&str, &str)] = &[
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-embedder-policy", "require-corp"),
    (
        "permissions-policy",
        "accelerometer=(), autoplay=(), camera=(), display-capture=(), encrypted-media=(), \
         fullscreen=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), midi=(), \
         payment=(), picture-in-picture=(), publickey-credentials-get=(), screen-wake-lock=(), \
         sync-xhr=(), usb=(), web-share=(), xr-spatial-tracking=()",
    ),
    ("x-dns-prefetch-control", "off"),
];

/// The compiled `headers` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hardening {
    /// In order: removals, then sets; applied to every response.
    actions: Vec<HeaderAction>,
    /// What a local reply (a denial) carries: every header the actions set.
    local_reply: Vec<(String, String)>,
    pub require_https: HttpsPolicy,
}

impl Hardening {
    pub fn new(
        profile: Profile,
        overrides: Vec<(String, String)>,
        remove: Option<Vec<String>>,
        require_https: HttpsPolicy,
    ) -> Self {
        let mut actions = Vec::new();
        let remove: Vec<String> =
            remove.unwrap_or_else(|| DEFAULT_REMOVE.iter().map(|s| s.to_string()).collect());
        for name in remove {
            actions.push(HeaderAction::Remove(name));
        }
        let mut preset: Vec<(&str, &str)> = Vec::new();
        match profile {
            Profile::Off => {}
            Profile::Api => preset.extend_from_slice(API),
            Profile::Strict => {
                preset.extend_from_slice(API);
                preset.extend_from_slice(STRICT_EXTRA);
            }
        }
        for (name, value) in preset {
            if overrides.iter().any(|(n, _)| n == name) {
                continue;
            }
            actions.push(HeaderAction::Set(name.to_string(), value.to_string()));
        }
        // Caching: an API answer is private by default, but an upstream's explicit choice
        // stands under `api`; `strict` forbids storing any answer.
        if !overrides.iter().any(|(n, _)| n == "cache-control") {
            match profile {
                Profile::Off => {}
                Profile::Api => actions.push(HeaderAction::SetIfAbsent(
                    "cache-control".into(),
                    "no-store".into(),
                )),
                Profile::Strict => actions.push(HeaderAction::Set(
                    "cache-control".into(),
                    "no-store, max-age=0".into(),
                )),
            }
        }
        for (name, value) in overrides {
            actions.push(HeaderAction::Set(name, value));
        }
        let local_reply = actions
            .iter()
            .filter_map(|a| match a {
                HeaderAction::Set(n, v) | HeaderAction::SetIfAbsent(n, v) => {
                    Some((n.clone(), v.clone()))
                }
                HeaderAction::Remove(_) => None,
            })
            .collect();
        Hardening {
            actions,
            local_reply,
            require_https,
        }
    }

    /// The changes to make to every upstream response.
    pub fn response_actions(&self) -> &[HeaderAction] {
        &self.actions
    }

    /// The edits that harden a response whose header names `has` answers for (any case).
    pub fn response_edits<'a>(
        &'a self,
        has: impl Fn(&str) -> bool + 'a,
    ) -> impl Iterator<Item = HeaderEdit<'a>> + 'a {
        self.actions.iter().filter_map(move |action| match action {
            HeaderAction::Remove(name) => has(name).then_some(HeaderEdit::Remove(name)),
            HeaderAction::Set(name, value) if has(name) => Some(HeaderEdit::Replace(name, value)),
            HeaderAction::Set(name, value) => Some(HeaderEdit::Add(name, value)),
            HeaderAction::SetIfAbsent(name, value) => {
                (!has(name)).then_some(HeaderEdit::Add(name, value))
            }
        })
    }

    /// The hardening headers for a response api-guard makes itself.
    pub fn local_reply_headers(&self) -> &[(String, String)] {
        &self.local_reply
    }
}

impl Default for Hardening {
    fn default() -> Self {
        Hardening::new(Profile::Api, Vec::new(), None, HttpsPolicy::Off)
    }
}

/// Header prefix that api-guard owns towards the upstream; incoming copies are always removed.
pub const OWNED_HEADER_PREFIX: &str = "x-api-guard-";
/// Set towards the upstream when a dry-run policy would have denied the request.
pub const DRY_RUN_HEADER: &str = "x-api-guard-dry-run";

/// A header name as an upstream may read it: any case, `_` and `-` alike (CGI, WSGI, Rack and
/// PHP turn both into `HTTP_X_NAME`).
fn fold_header_byte(b: u8) -> u8 {
    if b == b'_' {
        b'-'
    } else {
        b.to_ascii_lowercase()
    }
}

/// Whether two header names are one to an upstream that folds case and `_`/`-`.
pub(crate) fn same_header_name(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .all(|(x, y)| fold_header_byte(x) == fold_header_byte(y))
}

/// Whether a header name starts with `prefix` to an upstream that folds case and `_`/`-`.
pub(crate) fn header_name_starts_with(name: &str, prefix: &str) -> bool {
    name.get(..prefix.len())
        .is_some_and(|head| same_header_name(head, prefix))
}

/// Every request header an upstream would read as one of `names` (any case, `_` for `-`),
/// that `names` does not list already.
pub(crate) fn other_spellings(request: &Request, names: &[String]) -> Vec<String> {
    let mut extra: Vec<String> = Vec::new();
    for (name, _) in request.headers() {
        if name.starts_with(':') || names.contains(name) || extra.contains(name) {
            continue;
        }
        if names.iter().any(|n| same_header_name(n, name)) {
            extra.push(name.clone());
        }
    }
    extra
}

/// Incoming request headers that api-guard owns towards the upstream (its own prefix and
/// `owned`), in every spelling an upstream may fold into one of them (`x_jwt_sub` is
/// `HTTP_X_JWT_SUB` to a WSGI or CGI upstream, as `x-jwt-sub` is).
pub(crate) fn spoofed_headers(owned: &[String], request: &Request) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (name, _) in request.headers() {
        let is_owned = header_name_starts_with(name, OWNED_HEADER_PREFIX)
            || owned.iter().any(|h| same_header_name(h, name));
        if is_owned && !names.iter().any(|n| n == name) {
            names.push(name.clone());
        }
    }
    names
}

/// `require_https`: a plain-HTTP request is refused (403), or redirected (308) to its
/// HTTPS address when its authority is one to redirect to.
pub(crate) fn check_https(require: HttpsPolicy, request: &Request) -> Result<(), Denial> {
    if require == HttpsPolicy::Off {
        return Ok(());
    }
    // Envoy sets x-forwarded-proto from the downstream connection at the edge; a request
    // without it, or with several values, is treated as plain HTTP.
    let https = request
        .header("x-forwarded-proto")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    if https {
        return Ok(());
    }
    let denial =
        Denial::new(Reason::HttpsRequired).with_detail("this API is served over HTTPS only");
    // The Host is the client's: redirect only to an authority that is one (a host name
    // or IP, an optional port), never to `evil.example/x`, `a@b` or a header-splitting
    // value; anything else gets the plain 403.
    let path = request.path();
    match (require, request.authority()) {
        (HttpsPolicy::Redirect, Some(authority))
            if is_redirect_authority(authority) && path.starts_with('/') =>
        {
            let location = format!("https://{authority}{path}");
            Err(denial.redirect(308, location))
        }
        _ => Err(denial),
    }
}

/// Whether `authority` is `host[:port]` as RFC 3986 section 3.2 writes it, with `host` an
/// IP literal (`[2001:db8::1]`), or a reg-name of letters, digits, `-`, `.`, `_` and `~` (an
/// IPv4 address is one too). The reg-name's percent-escapes and sub-delimiters, legal but
/// never part of a real host name, are refused, as are userinfo (`@`) and an empty port.
fn is_redirect_authority(authority: &str) -> bool {
    const MAX_BYTES: usize = 261; // a 255-byte DNS name and `:65535`
    if authority.is_empty() || authority.len() > MAX_BYTES {
        return false;
    }
    let (host_ok, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let Some((ip, after)) = rest.split_once(']') else {
                return false;
            };
            let port = match after {
                "" => None,
                after => match after.strip_prefix(':') {
                    Some(port) => Some(port),
                    None => return false,
                },
            };
            (ip.parse::<std::net::Ipv6Addr>().is_ok(), port)
        }
        None => {
            let (host, port) = match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            };
            let reg_name = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
            (reg_name, port)
        }
    };
    let port_ok = port.is_none_or(|port| {
        (1..=5).contains(&port.len())
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok()
    });
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_edits_touch_only_what_changes() {
        let h = Hardening::default();
        let planned = |present: &[&str]| -> Vec<HeaderEdit<'_>> {
            let present: Vec<String> = present.iter().map(|n| n.to_string()).collect();
            h.response_edits(move |name| present.iter().any(|n| n.eq_ignore_ascii_case(name)))
                .collect()
        };
        // Nothing present: every set and set-if-absent is an add, no removal.
        let bare = planned(&[]);
        assert!(
            bare.iter().all(|e| matches!(e, HeaderEdit::Add(..))),
            "{bare:?}"
        );
        assert_eq!(
            bare.len(),
            h.response_actions()
                .iter()
                .filter(|a| !matches!(a, HeaderAction::Remove(_)))
                .count()
        );
        // Present (any case): removals happen, sets replace, set-if-absent is left alone.
        let names: Vec<&str> = h
            .response_actions()
            .iter()
            .map(|a| match a {
                HeaderAction::Set(n, _)
                | HeaderAction::SetIfAbsent(n, _)
                | HeaderAction::Remove(n) => n.as_str(),
            })
            .collect();
        let upper: Vec<String> = names.iter().map(|n| n.to_ascii_uppercase()).collect();
        let upper: Vec<&str> = upper.iter().map(String::as_str).collect();
        for (action, edit) in h
            .response_actions()
            .iter()
            .filter(|a| !matches!(a, HeaderAction::SetIfAbsent(..)))
            .zip(planned(&upper))
        {
            match (action, edit) {
                (HeaderAction::Remove(n), HeaderEdit::Remove(m)) => assert_eq!(n, m),
                (HeaderAction::Set(n, v), HeaderEdit::Replace(m, w)) => {
                    assert_eq!((n.as_str(), v.as_str()), (m, w))
                }
                other => panic!("{other:?}"),
            }
        }
    }

    fn set_value<'a>(h: &'a Hardening, name: &str) -> Option<&'a str> {
        h.local_reply_headers()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn api_profile_sets_owasp_headers_and_removes_stack_headers() {
        let h = Hardening::default();
        assert_eq!(set_value(&h, "x-content-type-options"), Some("nosniff"));
        assert_eq!(set_value(&h, "x-frame-options"), Some("DENY"));
        assert_eq!(set_value(&h, "cache-control"), Some("no-store"));
        assert!(set_value(&h, "permissions-policy").is_none());
        assert!(h
            .response_actions()
            .contains(&HeaderAction::Remove("x-powered-by".into())));
        assert!(h.response_actions().contains(&HeaderAction::SetIfAbsent(
            "cache-control".into(),
            "no-store".into()
        )));
    }

    #[test]
    fn profiles_differ_as_documented() {
        let strict = Hardening::new(Profile::Strict, vec![], None, HttpsPolicy::Off);
        assert_eq!(
            set_value(&strict, "cross-origin-opener-policy"),
            Some("same-origin")
        );
        assert!(strict.response_actions().contains(&HeaderAction::Set(
            "cache-control".into(),
            "no-store, max-age=0".into()
        )));
        let off = Hardening::new(Profile::Off, vec![], None, HttpsPolicy::Off);
        assert!(off.local_reply_headers().is_empty());
        assert!(off
            .response_actions()
            .contains(&HeaderAction::Remove("server".into())));
    }

    #[test]
    fn overrides_replace_presets_and_remove_list_replaces_default() {
        let h = Hardening::new(
            Profile::Api,
            vec![("x-frame-options".into(), "SAMEORIGIN".into())],
            Some(vec!["x-custom".into()]),
            HttpsPolicy::Off,
        );
        assert_eq!(set_value(&h, "x-frame-options"), Some("SAMEORIGIN"));
        let frame_sets = h
            .local_reply_headers()
            .iter()
            .filter(|(n, _)| n == "x-frame-options")
            .count();
        assert_eq!(frame_sets, 1);
        assert!(!h
            .response_actions()
            .contains(&HeaderAction::Remove("x-powered-by".into())));
        assert!(h
            .response_actions()
            .contains(&HeaderAction::Remove("x-custom".into())));
    }
}
