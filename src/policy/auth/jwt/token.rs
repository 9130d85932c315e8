//! The compact JWS serialization (RFC 7515 §7.1), parsed strictly and without trusting it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::alg::Alg;
use crate::policy::body::json::{self, JsonError};
use crate::policy::Reason;

/// Deepest nesting read in a token header or payload (serde_json's own limit).
const MAX_DEPTH: usize = 128;

/// A token split and decoded, not yet verified.
#[derive(Debug)]
pub struct Parsed<'t> {
    pub alg: Alg,
    pub kid: Option<String>,
    pub claims: Map<String, Value>,
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: &'t str,
    /// The payload segment as sent (base64url of the claims JSON).
    pub payload_b64: &'t str,
    pub signature: Vec<u8>,
}

/// Why a token could not be parsed: the reason code and a fixed, safe description.
pub type Failure = (Reason, &'static str);

pub const MALFORMED: Failure = (Reason::JwtMalformed, "the token is not a well-formed JWS");

fn decode(segment: &str) -> Result<Vec<u8>, Failure> {
    URL_SAFE_NO_PAD.decode(segment).map_err(|_| {
        (
            Reason::JwtMalformed,
            "the token is not valid unpadded base64url",
        )
    })
}

/// A JSON object from a decoded segment. A repeated member name is refused: serde_json would
/// keep the last one, while an upstream reading the payload (`payload_header`) may take the
/// first (`{"iss":"https://evil.example","iss":"https://idp"}`).
fn object(
    bytes: &[u8],
    what: &'static str,
    duplicate: &'static str,
) -> Result<Map<String, Value>, Failure> {
    match json::parse(bytes, MAX_DEPTH, &mut |_| {}) {
        Ok(Value::Object(map)) => Ok(map),
        Err(JsonError::DuplicateKey) => Err((Reason::JwtMalformed, duplicate)),
        _ => Err((Reason::JwtMalformed, what)),
    }
}

/// Splits and decodes a compact JWS. Header parameters that could bring their own key (`jwk`,
/// `jku`, `x5u`, `x5c`) are never read; an unsupported `crit` extension is refused.
pub fn parse(token: &str) -> Result<Parsed<'_>, Failure> {
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err((
            Reason::JwtMalformed,
            "the token must have three dot-separated segments",
        ));
    };
    if header_b64.is_empty() || payload_b64.is_empty() {
        return Err(MALFORMED);
    }
    let header = object(
        &decode(header_b64)?,
        "the token header is not a JSON object",
        "the token header repeats a member name",
    )?;
    let alg = match header.get("alg") {
        Some(Value::String(name)) => Alg::parse(name).ok_or((
            Reason::JwtAlgNotAllowed,
            "the token algorithm is not allowed",
        ))?,
        _ => return Err((Reason::JwtMalformed, "the token header has no alg")),
    };
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err((Reason::JwtMalformed, "the token kid is not a string")),
    };
    if header.contains_key("crit") {
        return Err((
            Reason::JwtMalformed,
            "the token requires an unsupported critical extension",
        ));
    }
    let claims = object(
        &decode(payload_b64)?,
        "the token payload is not a JSON object",
        "the token payload repeats a member name",
    )?;
    let signature = decode(signature_b64)?;
    let signing_input = token
        .get(..header_b64.len() + 1 + payload_b64.len())
        .ok_or(MALFORMED)?;
    Ok(Parsed {
        alg,
        kid,
        claims,
        signing_input,
        payload_b64,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn token(header: &str, payload: &str, sig: &str) -> String {
        format!("{}.{}.{}", b64(header), b64(payload), sig)
    }

    #[test]
    fn parses_a_token() {
        let t = token(
            r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#,
            r#"{"sub":"a"}"#,
            "AQID",
        );
        let p = parse(&t).unwrap();
        assert_eq!(p.alg, Alg::RS256);
        assert_eq!(p.kid.as_deref(), Some("k1"));
        assert_eq!(p.claims["sub"], "a");
        assert_eq!(p.signature, vec![1, 2, 3]);
        assert_eq!(p.signing_input.len() + 5, t.len());
    }

    #[test]
    fn malformed_and_none_tokens_are_refused() {
        let ok_payload = r#"{"sub":"a"}"#;
        let table: Vec<(String, Reason)> = vec![
            ("".into(), Reason::JwtMalformed),
            ("abc".into(), Reason::JwtMalformed),
            ("a.b".into(), Reason::JwtMalformed),
            ("a.b.c.d".into(), Reason::JwtMalformed),
            ("a.b.c.d.e".into(), Reason::JwtMalformed),
            (".b.c".into(), Reason::JwtMalformed),
            (token("[]", ok_payload, ""), Reason::JwtMalformed),
            (token("{}", ok_payload, ""), Reason::JwtMalformed),
            (token(r#"{"alg":5}"#, ok_payload, ""), Reason::JwtMalformed),
            (
                token(r#"{"alg":"none"}"#, ok_payload, ""),
                Reason::JwtAlgNotAllowed,
            ),
            (
                token(r#"{"alg":"None"}"#, ok_payload, ""),
                Reason::JwtAlgNotAllowed,
            ),
            (
                token(r#"{"alg":"NONE"}"#, ok_payload, ""),
                Reason::JwtAlgNotAllowed,
            ),
            (
                token(r#"{"alg":"nOnE"}"#, ok_payload, "AQID"),
                Reason::JwtAlgNotAllowed,
            ),
            (
                token(r#"{"alg":""}"#, ok_payload, ""),
                Reason::JwtAlgNotAllowed,
            ),
            (
                token(r#"{"alg":"HS256","kid":7}"#, ok_payload, ""),
                Reason::JwtMalformed,
            ),
            (
                token(r#"{"alg":"RS256","crit":["exp"],"exp":1}"#, ok_payload, ""),
                Reason::JwtMalformed,
            ),
            (token(r#"{"alg":"RS256"}"#, "[1]", ""), Reason::JwtMalformed),
            // Repeated member names, at the top or nested, in the header or the payload.
            (
                token(
                    r#"{"alg":"RS256"}"#,
                    r#"{"iss":"https://evil.example","iss":"https://example.com"}"#,
                    "AQID",
                ),
                Reason::JwtMalformed,
            ),
            (
                token(r#"{"alg":"RS256"}"#, r#"{"a":{"b":1,"b":2}}"#, "AQID"),
                Reason::JwtMalformed,
            ),
            (
                token(
                    r#"{"alg":"RS256"}"#,
                    r#"{"s\u0075b":"a","sub":"b"}"#,
                    "AQID",
                ),
                Reason::JwtMalformed,
            ),
            (
                token(r#"{"alg":"HS256","alg":"RS256"}"#, ok_payload, "AQID"),
                Reason::JwtMalformed,
            ),
            (
                token(r#"{"alg":"RS256","kid":"a","kid":"b"}"#, ok_payload, "AQID"),
                Reason::JwtMalformed,
            ),
            (
                token(r#"{"alg":"RS256"}"#, "not json", ""),
                Reason::JwtMalformed,
            ),
            (
                token(r#"{"alg":"RS256"}"#, ok_payload, "AQ=="),
                Reason::JwtMalformed,
            ),
            (
                token(r#"{"alg":"RS256"}"#, ok_payload, "A+/"),
                Reason::JwtMalformed,
            ),
            (
                format!("{}=.{}.AQID", b64(r#"{"alg":"RS256"}"#), b64(ok_payload)),
                Reason::JwtMalformed,
            ),
        ];
        for (t, want) in table {
            assert_eq!(parse(&t).map(|_| ()).map_err(|e| e.0), Err(want), "{t}");
        }
    }
}
