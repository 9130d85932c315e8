//! Registered claims (RFC 7519 §4.1) checked against a provider, scopes, and claim lookup.

use serde_json::{Map, Value};

use super::token::Failure;
use crate::policy::Reason;

/// What a provider demands of a token's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRules {
    pub issuer: Option<String>,
    /// Any one must be in `aud`; empty: `aud` is not checked.
    pub audiences: Vec<String>,
    pub require_expiration: bool,
    pub clock_skew_seconds: u64,
    pub max_lifetime_seconds: Option<u64>,
}

/// A NumericDate claim: absent, or a finite number of seconds.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, Failure> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) if v.is_finite() => Ok(Some(v)),
            _ => Err(bad_date()),
        },
        Some(_) => Err(bad_date()),
    }
}

fn bad_date() -> Failure {
    (
        Reason::JwtMalformed,
        "a time claim (exp, nbf, iat) is not a number",
    )
}

impl ClaimRules {
    /// Checks iss, aud, exp, nbf and the lifetime at `now` (Unix seconds).
    pub fn check(&self, claims: &Map<String, Value>, now: u64) -> Result<Option<u64>, Failure> {
        if let Some(issuer) = &self.issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
                return Err((Reason::JwtIssuer, "the token issuer is not accepted"));
            }
        }
        if !self.audiences.is_empty() {
            let accepted = |aud: &Value| {
                aud.as_str()
                    .is_some_and(|a| self.audiences.iter().any(|want| want == a))
            };
            let ok = match claims.get("aud") {
                Some(Value::Array(list)) => list.iter().any(accepted),
                Some(aud) => accepted(aud),
                None => false,
            };
            if !ok {
                return Err((Reason::JwtAudience, "the token audience is not accepted"));
            }
        }
        let now = now as f64;
        let skew = self.clock_skew_seconds as f64;
        let exp = numeric_date(claims, "exp")?;
        let nbf = numeric_date(claims, "nbf")?;
        let iat = numeric_date(claims, "iat")?;
        match exp {
            Some(exp) if now > exp + skew => {
                return Err((Reason::JwtExpired, "the token has expired"));
            }
            None if self.require_expiration => {
                return Err((Reason::JwtMalformed, "the token has no exp claim"));
            }
            _ => {}
        }
        if let Some(nbf) = nbf {
            if now + skew < nbf {
                return Err((Reason::JwtNotYetValid, "the token is not valid yet"));
            }
        }
        if let Some(max) = self.max_lifetime_seconds {
            let (Some(exp), Some(start)) = (exp, iat.or(nbf)) else {
                return Err((
                    Reason::JwtMalformed,
                    "the token needs exp and iat to bound its lifetime",
                ));
            };
            if exp - start > max as f64 {
                return Err((
                    Reason::JwtExpired,
                    "the token lifetime exceeds the accepted maximum",
                ));
            }
        }
        // The instant after which a cached verification must be dropped.
        Ok(exp.map(|e| if e <= 0.0 { 0 } else { e as u64 }))
    }
}

/// Scopes granted by `scope` (space-delimited, RFC 8693) and `scp` (string or array).
pub fn scopes(claims: &Map<String, Value>) -> Vec<String> {
    let mut scopes: Vec<String> = Vec::new();
    let mut add = |s: &str| {
        for scope in s.split_whitespace() {
            if !scopes.iter().any(|have| have == scope) {
                scopes.push(scope.to_string());
            }
        }
    };
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(s)) => add(s),
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).for_each(&mut add),
            _ => {}
        }
    }
    scopes
}

/// A claim by name, or by dotted path into nested objects (`realm_access.roles`). A claim
/// whose own name contains dots (`https://example.com/roles`) is found first.
pub fn lookup<'c>(claims: &'c Map<String, Value>, path: &str) -> Option<&'c Value> {
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    let mut parts = path.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

/// A claim as a header value: strings as they are, numbers and booleans as JSON, arrays of
/// those as a JSON array (`["a","b,c"]`: an element holding a `,` stays one element, which a
/// `,`-joined list could not say). Objects, nulls, and anything with control characters are
/// not sent.
pub fn header_value(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(_) | Value::Bool(_) => value.to_string(),
        Value::Array(items) => {
            let scalars = items
                .iter()
                .all(|item| matches!(item, Value::String(_) | Value::Number(_) | Value::Bool(_)));
            if !scalars {
                return None;
            }
            value.to_string()
        }
        _ => return None,
    };
    // serde_json escapes control characters inside JSON strings, so they never reach a header.
    let safe = text.len() <= 4096 && !text.chars().any(|c| c.is_control());
    safe.then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn rules() -> ClaimRules {
        ClaimRules {
            issuer: Some("https://idp".into()),
            audiences: vec!["api".into(), "other".into()],
            require_expiration: true,
            clock_skew_seconds: 60,
            max_lifetime_seconds: None,
        }
    }

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn claims_table() {
        let base = json!({"iss": "https://idp", "aud": "api", "exp": NOW + 10});
        let with = |k: &str, v: Value| {
            let mut m = map(base.clone());
            m.insert(k.into(), v);
            m
        };
        let without = |k: &str| {
            let mut m = map(base.clone());
            m.remove(k);
            m
        };
        let r = rules();
        let table: Vec<(Map<String, Value>, Result<(), Reason>)> = vec![
            (map(base.clone()), Ok(())),
            (with("iss", json!("https://idp/")), Err(Reason::JwtIssuer)),
            (with("iss", json!(["https://idp"])), Err(Reason::JwtIssuer)),
            (without("iss"), Err(Reason::JwtIssuer)),
            (with("aud", json!(["x", "other"])), Ok(())),
            (with("aud", json!(["x"])), Err(Reason::JwtAudience)),
            (with("aud", json!("API")), Err(Reason::JwtAudience)),
            (without("aud"), Err(Reason::JwtAudience)),
            (with("exp", json!(NOW - 60)), Ok(())),
            (with("exp", json!(NOW - 61)), Err(Reason::JwtExpired)),
            (with("exp", json!((NOW + 5) as f64 + 0.5)), Ok(())),
            (with("exp", json!("soon")), Err(Reason::JwtMalformed)),
            (without("exp"), Err(Reason::JwtMalformed)),
            (with("nbf", json!(NOW + 60)), Ok(())),
            (with("nbf", json!(NOW + 61)), Err(Reason::JwtNotYetValid)),
            (with("nbf", json!(null)), Err(Reason::JwtMalformed)),
            (with("iat", json!(true)), Err(Reason::JwtMalformed)),
        ];
        for (claims, want) in table {
            let got = r.check(&claims, NOW).map(|_| ()).map_err(|e| e.0);
            assert_eq!(got, want, "{claims:?}");
        }
        let open = ClaimRules {
            issuer: None,
            audiences: vec![],
            require_expiration: false,
            clock_skew_seconds: 0,
            max_lifetime_seconds: None,
        };
        assert_eq!(open.check(&map(json!({})), NOW), Ok(None));
        assert_eq!(
            open.check(&map(json!({"exp": NOW - 1})), NOW)
                .map_err(|e| e.0),
            Err(Reason::JwtExpired)
        );
        let bounded = ClaimRules {
            max_lifetime_seconds: Some(3600),
            ..open
        };
        let ok = map(json!({"iat": NOW, "exp": NOW + 3600}));
        assert_eq!(bounded.check(&ok, NOW), Ok(Some(NOW + 3600)));
        let long = map(json!({"iat": NOW, "exp": NOW + 3601}));
        assert_eq!(
            bounded.check(&long, NOW).map_err(|e| e.0),
            Err(Reason::JwtExpired)
        );
        let no_iat = map(json!({"exp": NOW + 10}));
        assert_eq!(
            bounded.check(&no_iat, NOW).map_err(|e| e.0),
            Err(Reason::JwtMalformed)
        );
    }

    #[test]
    fn scopes_from_scope_and_scp() {
        assert_eq!(scopes(&map(json!({"scope": "a  b a"}))), vec!["a", "b"]);
        assert_eq!(scopes(&map(json!({"scp": ["c", "d", 5]}))), vec!["c", "d"]);
        assert_eq!(
            scopes(&map(json!({"scp": "e f", "scope": "a"}))),
            vec!["a", "e", "f"]
        );
        assert!(scopes(&map(json!({"scope": 5}))).is_empty());
    }

    #[test]
    fn lookup_and_header_values() {
        let c = map(json!({"sub": "u", "realm": {"roles": ["a", "b"], "n": 3},
                           "https://x.io/tenant": "t", "obj": {"a": {}}, "bad": "a\r\nb"}));
        let get = |p: &str| lookup(&c, p).and_then(header_value);
        assert_eq!(get("sub").as_deref(), Some("u"));
        assert_eq!(get("realm.roles").as_deref(), Some(r#"["a","b"]"#));
        assert_eq!(get("realm.n").as_deref(), Some("3"));
        assert_eq!(get("https://x.io/tenant").as_deref(), Some("t"));
        assert_eq!(get("obj"), None);
        assert_eq!(get("bad"), None);
        assert_eq!(get("missing.x"), None);
        let arrays = map(
            json!({"one": ["a,b"], "two": ["a", "b"], "mixed": ["x", 1, true],
                                "empty": [], "nested": [["a"]], "obj": [{"a": 1}],
                                "ctl": ["a\nb"], "quote": ["say \"hi\""]}),
        );
        let get = |p: &str| lookup(&arrays, p).and_then(header_value);
        assert_eq!(get("one").as_deref(), Some(r#"["a,b"]"#));
        assert_eq!(get("two").as_deref(), Some(r#"["a","b"]"#));
        assert_ne!(
            get("one"),
            get("two"),
            "one element with ',' is not two elements"
        );
        assert_eq!(get("mixed").as_deref(), Some(r#"["x",1,true]"#));
        assert_eq!(get("empty").as_deref(), Some("[]"));
        assert_eq!(get("nested"), None);
        assert_eq!(get("obj"), None);
        assert_eq!(get("ctl").as_deref(), Some(r#"["a\nb"]"#));
        assert_eq!(get("quote").as_deref(), Some(r#"["say \"hi\""]"#));
    }
}
