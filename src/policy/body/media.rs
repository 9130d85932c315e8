//! Media types (RFC 9110 section 8.3.1): `type "/" subtype *( OWS ";" OWS parameter )`.

use crate::policy::http::is_token;

/// A parsed `Content-Type`: type and subtype lower-cased, the charset parameter if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType {
    pub kind: String,
    pub subtype: String,
    /// The `charset` parameter, lower-cased, without quotes.
    pub charset: Option<String>,
}

impl MediaType {
    /// Parses a Content-Type value; `None` when it is malformed.
    pub fn parse(value: &str) -> Option<MediaType> {
        let mut parts = value.split(';');
        let essence = parts.next()?.trim();
        let (kind, subtype) = essence.split_once('/')?;
        if !is_token(kind) || !is_token(subtype) {
            return None;
        }
        let mut charset = None;
        for parameter in parts {
            let parameter = parameter.trim();
            if parameter.is_empty() {
                // `text/plain;` and `a/b; ; c=d` are tolerated, as browsers send them.
                continue;
            }
            let (name, value) = parameter.split_once('=')?;
            let name = name.trim_end();
            let value = value.trim_start();
            if !is_token(name) {
                return None;
            }
            let value = if let Some(quoted) = value.strip_prefix('"') {
                // Quoted values with escapes are not needed for charset names: refused.
                let inner = quoted.strip_suffix('"')?;
                if inner.contains(['"', '\\']) {
                    return None;
                }
                inner.to_string()
            } else if is_token(value) {
                value.to_string()
            } else {
                return None;
            };
            if name.eq_ignore_ascii_case("charset") {
                if charset.is_some() {
                    return None;
                }
                charset = Some(value.to_ascii_lowercase());
            }
        }
        Some(MediaType {
            kind: kind.to_ascii_lowercase(),
            subtype: subtype.to_ascii_lowercase(),
            charset,
        })
    }

    /// `application/json` or any `+json` structured syntax suffix (RFC 6839).
    pub fn is_json(&self) -> bool {
        (self.kind == "application" && self.subtype == "json") || self.subtype.ends_with("+json")
    }
}

/// An entry of `content_types`: `type/subtype`, `type/*` or `*/*+json`-free plain forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRange {
    pub kind: String,
    /// `None` for `type/*`.
    pub subtype: Option<String>,
}

impl MediaRange {
    /// Parses a configured range: `application/json` or `text/*`, without parameters.
    pub fn parse(value: &str) -> Option<MediaRange> {
        let (kind, subtype) = value.trim().split_once('/')?;
        if !is_token(kind) || kind == "*" {
            return None;
        }
        let subtype = if subtype == "*" {
            None
        } else if is_token(subtype) && !subtype.contains('*') {
            Some(subtype.to_ascii_lowercase())
        } else {
            return None;
        };
        Some(MediaRange {
            kind: kind.to_ascii_lowercase(),
            subtype,
        })
    }

    pub fn matches(&self, media: &MediaType) -> bool {
        self.kind == media.kind
            && self
                .subtype
                .as_ref()
                .is_none_or(|subtype| *subtype == media.subtype)
    }

    /// True when every media type this range admits is JSON.
    pub fn is_json_only(&self) -> bool {
        match &self.subtype {
            Some(subtype) => {
                (self.kind == "application" && subtype == "json") || subtype.ends_with("+json")
            }
            None => false,
        }
    }

    #[cfg(test)]
    pub fn as_string(&self) -> String {
        format!("{}/{}", self.kind, self.subtype.as_deref().unwrap_or("*"))
    }
}

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_types() {
        let table: &[(&str, Option<(&str, &str, Option<&str>)>)] = &[
            ("application/json", Some(("application", "json", None))),
            ("Application/JSON", Some(("application", "json", None))),
            (
                "application/json; charset=UTF-8",
                Some(("application", "json", Some("utf-8"))),
            ),
            (
                "application/json;charset=\"utf-8\"",
                Some(("application", "json", Some("utf-8"))),
            ),
            (
                "application/merge-patch+json ; q=1",
                Some(("application", "merge-patch+json", None)),
            ),
            ("text/plain;", Some(("text", "plain", None))),
            ("application/json;charset=utf-8;charset=latin1", None),
            ("application", None),
            ("application/", None),
            ("/json", None),
            ("application/json x", None),
            ("application/json; charset", None),
            ("application/json; charset=a b", None),
            ("", None),
        ];
        for (input, want) in table {
            let got = MediaType::parse(input);
            let got = got
                .as_ref()
                .map(|m| (m.kind.as_str(), m.subtype.as_str(), m.charset.as_deref()));
            assert_eq!(got, *want, "{input:?}");
        }
    }

    #[test]
    fn ranges_match_type_and_subtype_only() {
        let json = MediaRange::parse("application/json").unwrap();
        let text = MediaRange::parse("text/*").unwrap();
        let table = [
            (&json, "application/json", true),
            (&json, "application/json; charset=utf-8", true),
            (&json, "APPLICATION/Json", true),
            (&json, "application/jsonp", false),
            (&json, "application/problem+json", false),
            (&json, "text/json", false),
            (&text, "text/plain; charset=latin1", true),
            (&text, "text/csv", true),
            (&text, "application/text", false),
        ];
        for (range, input, want) in table {
            let media = MediaType::parse(input).unwrap();
            assert_eq!(range.matches(&media), want, "{input}");
        }
        assert!(MediaRange::parse("*/*").is_none());
        assert!(MediaRange::parse("application/json; charset=utf-8").is_none());
        assert!(MediaRange::parse("application/*json").is_none());
        assert!(json.is_json_only());
        assert!(MediaRange::parse("application/vnd.x+json")
            .unwrap()
            .is_json_only());
        assert!(!text.is_json_only());
    }

    #[test]
    fn json_types() {
        for (input, want) in [
            ("application/json", true),
            ("application/vnd.api+json", true),
            ("text/json", false),
            ("application/x-www-form-urlencoded", false),
        ] {
            assert_eq!(MediaType::parse(input).unwrap().is_json(), want, "{input}");
        }
    }
}
