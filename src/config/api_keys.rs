//! `api_keys`: where keys come from, the header carrying the client id upstream, and the
//! clients with the SHA-256 digests of their keys.

use serde::Deserialize;

use super::validate::{self, header_name, HeaderUse};
use super::{ConfigError, JsonPath};
use crate::policy::auth::api_key::{ApiClient, ApiKeys, DEFAULT_CLIENT_HEADER, DEFAULT_KEY_HEADER};
use crate::policy::limit::RateLimitPolicy;

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawApiKeys {
    #[cfg_attr(
        feature = "schema",
        schemars(inner(regex(pattern = super::validate::HEADER_NAME_PATTERN)))
    )]
    pub from_headers: Option<Vec<String>>,
    #[serde(default)]
    #[cfg_attr(
        feature = "schema",
        schemars(inner(regex(pattern = super::validate::PARAM_NAME_PATTERN)))
    )]
    pub from_params: Vec<String>,
    #[cfg_attr(feature = "schema", schemars(regex(pattern = super::validate::HEADER_NAME_PATTERN)))]
    pub client_header: Option<String>,
    #[serde(default)]
    pub forward: bool,
    pub clients: Vec<RawClient>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    #[cfg_attr(
        feature = "schema",
        schemars(regex(pattern = super::validate::LONG_NAME_PATTERN))
    )]
    pub id: String,
    pub sha256: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub rate_limit: Option<String>,
    pub not_after: Option<String>,
}

pub fn compile(
    raw: &RawApiKeys,
    at: &JsonPath,
    rate_limits: &[RateLimitPolicy],
) -> Result<ApiKeys, ConfigError> {
    let from_headers = match &raw.from_headers {
        Some(names) => {
            let mut out: Vec<String> = Vec::with_capacity(names.len());
            for (i, name) in names.iter().enumerate() {
                let name = header_name(name, HeaderUse::Source, &at.key("from_headers").index(i))?;
                if !out.contains(&name) {
                    out.push(name);
                }
            }
            out
        }
        None if raw.from_params.is_empty() => vec![DEFAULT_KEY_HEADER.to_string()],
        None => Vec::new(),
    };
    let mut from_params: Vec<String> = Vec::with_capacity(raw.from_params.len());
    for (i, name) in raw.from_params.iter().enumerate() {
        let name = validate::param_name(name, &at.key("from_params").index(i))?;
        if !from_params.contains(&name) {
            from_params.push(name);
        }
    }
    if from_headers.is_empty() && from_params.is_empty() {
        return Err(at
            .key("from_headers")
            .error("expected at least one key source in `from_headers` or `from_params`"));
    }
    let client_header = match &raw.client_header {
        Some(name) => header_name(name, HeaderUse::Upstream, &at.key("client_header"))?,
        None => DEFAULT_CLIENT_HEADER.to_string(),
    };
    if from_headers.contains(&client_header) {
        return Err(at
            .key("client_header")
            .error("the client id header cannot also be a key header"));
    }

    let clients_at = at.key("clients");
    let mut clients: Vec<ApiClient> = Vec::with_capacity(raw.clients.len());
    for (i, raw_client) in raw.clients.iter().enumerate() {
        let client = compile_client(raw_client, &clients_at.index(i), rate_limits)?;
        if clients.iter().any(|c| c.id == client.id) {
            return Err(clients_at
                .index(i)
                .key("id")
                .error("duplicate client id; ids must be unique"));
        }
        if let Some(j) = clients.iter().position(|c| c.sha256 == client.sha256) {
            return Err(clients_at.index(i).key("sha256").error(format!(
                "the same key digest as clients[{j}]; every client needs its own key"
            )));
        }
        clients.push(client);
    }
    Ok(ApiKeys {
        from_headers,
        from_params,
        client_header,
        forward: raw.forward,
        clients,
    })
}

fn compile_client(
    raw: &RawClient,
    at: &JsonPath,
    rate_limits: &[RateLimitPolicy],
) -> Result<ApiClient, ConfigError> {
    let id = validate::name(&raw.id, validate::MAX_LONG_NAME, &at.key("id"))?;
    let sha256 = parse_digest(&raw.sha256).ok_or_else(|| {
        at.key("sha256").error(
            "expected 64 lowercase hex characters, the SHA-256 of the key \
             (e.g. printf %s \"$KEY\" | sha256sum); never put the key itself here",
        )
    })?;
    let scopes = validate::scopes(Some(&raw.scopes), &at.key("scopes"))?;
    let rate_limit = match &raw.rate_limit {
        Some(name) => Some(super::rate_limits::resolve(
            rate_limits,
            name,
            &at.key("rate_limit"),
        )?),
        None => None,
    };
    let not_after = match &raw.not_after {
        Some(text) => Some(parse_rfc3339(text).ok_or_else(|| {
            at.key("not_after")
                .error("expected an RFC 3339 date-time such as 2027-01-01T00:00:00Z")
        })?),
        None => None,
    };
    Ok(ApiClient {
        id,
        sha256,
        scopes,
        rate_limit,
        not_after,
    })
}

fn parse_digest(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(text.as_bytes().chunks(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *slot = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// RFC 3339 `date-time` (section 5.6) to Unix seconds: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
/// Strict: every field has its fixed width and range (February 29 only in leap years; a
/// leap second `:60` counts as the next second); fractions are truncated. Written here
/// rather than pulled from a date crate because this one config-time conversion is all
/// api-guard needs, and a date crate would add tens of KiB to the module.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let digits = b.get(from..from + len)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    let sep = |at: usize, allowed: &[u8]| b.get(at).is_some_and(|c| allowed.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if !(1..=days_in_month).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = b.get(19..)?;
    if let Some((b'.', fraction)) = rest.split_first() {
        let digits = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        rest = fraction.get(digits..)?;
    }
    let offset = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let two = |x: u8, y: u8| -> Option<i64> {
                (x.is_ascii_digit() && y.is_ascii_digit())
                    .then(|| i64::from(x - b'0') * 10 + i64::from(y - b'0'))
            };
            let (h, m) = (two(*h1, *h2)?, two(*m1, *m2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let minutes = h * 60 + m;
            if *sign == b'+' {
                minutes
            } else {
                -minutes
            }
        }
        _ => return None,
    };
    // Days from the civil date (H. Hinnant's algorithm), proleptic Gregorian.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset * 60;
    u64::try_from(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_strict() {
        let good = [
            ("1970-01-01T00:00:00Z", 0),
            ("2027-01-01T00:00:00Z", 1_798_761_600),
            ("2027-01-01t00:00:00z", 1_798_761_600),
            ("2027-01-01T01:00:00+01:00", 1_798_761_600),
            ("2026-12-31T23:00:00-01:00", 1_798_761_600),
            ("2027-01-01T00:00:00.999Z", 1_798_761_600),
            ("2024-02-29T12:00:00Z", 1_709_208_000),
            ("2016-12-31T23:59:60Z", 1_483_228_800),
        ];
        for (text, want) in good {
            assert_eq!(parse_rfc3339(text), Some(want), "{text}");
        }
        let bad = [
            "",
            "2027-01-01",
            "2027-01-01 00:00:00Z",
            "2027-01-01T00:00:00",
            "2027-1-01T00:00:00Z",
            "2027-13-01T00:00:00Z",
            "2027-00-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2027-04-31T00:00:00Z",
            "2027-01-01T24:00:00Z",
            "2027-01-01T00:60:00Z",
            "2027-01-01T00:00:61Z",
            "2027-01-01T00:00:00.Z",
            "2027-01-01T00:00:00+0100",
            "2027-01-01T00:00:00+24:00",
            "2027-01-01T00:00:00Zjunk",
            "+027-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "2027-01-01T00:00:00.5+01:0",
        ];
        for text in bad {
            assert_eq!(parse_rfc3339(text), None, "{text}");
        }
    }

    #[test]
    fn the_documented_example_compiles() {
        let doc = include_str!("../../docs/api-keys-and-rate-limits.md");
        let start = doc.find("```json").unwrap() + "```json".len();
        let end = start + doc[start..].find("```").unwrap();
        let policy = crate::config::compile(&doc.as_bytes()[start..end]).unwrap();
        assert_eq!(policy.api_keys.unwrap().clients.len(), 2);
        assert_eq!(policy.rate_limits.len(), 3);
        assert_eq!(policy.rate_limit_table.slots, 65_536);
    }

    #[test]
    fn digests_are_64_lowercase_hex() {
        let d = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(parse_digest(d).map(|x| x[0]), Some(0xe3));
        assert_eq!(parse_digest(&d.to_uppercase()), None);
        assert_eq!(parse_digest(&d[..63]), None);
        assert_eq!(parse_digest(&format!("{d}0")), None);
        assert_eq!(parse_digest(&d.replace('e', "g")), None);
    }
}
