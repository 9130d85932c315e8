//! A rule's `body` block: size, media types, JSON depth and JSON Schema.

use serde::Deserialize;
use serde_json::Value;

use super::validate::Range;
use super::{ConfigError, JsonPath};
use crate::policy::body::{
    BodyRules, MediaRange, Schema, DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, MAX_MAX_DEPTH,
};

/// The largest `max_bytes` accepted (bodies are buffered in Envoy's memory).
pub const MAX_MAX_BYTES: u64 = 64 * 1024 * 1024;
const MAX_BYTES: Range = Range::new(1, MAX_MAX_BYTES, "bytes");
const MAX_DEPTH: Range = Range::new(1, MAX_MAX_DEPTH as u64, "levels of nesting");

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawBody {
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 67_108_864)))]
    pub max_bytes: Option<u64>,
    pub content_types: Option<Vec<String>>,
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 100)))]
    pub max_depth: Option<u64>,
    pub json_schema: Option<Value>,
}

pub fn compile(raw: &RawBody, at: &JsonPath) -> Result<BodyRules, ConfigError> {
    let max_bytes = MAX_BYTES
        .check_or(raw.max_bytes, DEFAULT_MAX_BYTES, &at.key("max_bytes"))
        .map_err(|e| e.with_fix("Envoy buffers the body in memory"))?;
    let max_depth = MAX_DEPTH.check_or(
        raw.max_depth,
        DEFAULT_MAX_DEPTH as u64,
        &at.key("max_depth"),
    )?;
    // In range, so it fits.
    let max_depth = usize::try_from(max_depth).unwrap_or(MAX_MAX_DEPTH);
    let schema = match &raw.json_schema {
        None => None,
        Some(value) => {
            Some(Schema::compile(value).map_err(|message| at.key("json_schema").error(message))?)
        }
    };
    let mut content_types: Vec<MediaRange> = Vec::new();
    match &raw.content_types {
        None => {
            // A schema without a media-type list admits JSON only: a body declared as
            // something else would otherwise pass unchecked.
            if schema.is_some() {
                content_types.extend(MediaRange::parse("application/json"));
            }
        }
        Some(list) => {
            let at = at.key("content_types");
            if list.is_empty() {
                return Err(at.error(
                    "expected at least one media type; leave `content_types` out to accept any",
                ));
            }
            for (i, entry) in list.iter().enumerate() {
                let range = MediaRange::parse(entry).ok_or_else(|| {
                    at.index(i).error(
                        "expected a media type such as \"application/json\" or \"text/*\", \
                         without parameters",
                    )
                })?;
                if schema.is_some() && !range.is_json_only() {
                    return Err(at.index(i).error(
                        "`json_schema` checks JSON bodies only: list only application/json \
                         or +json media types here",
                    ));
                }
                if !content_types.contains(&range) {
                    content_types.push(range);
                }
            }
        }
    }
    Ok(BodyRules {
        max_bytes,
        content_types,
        max_depth,
        schema,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::compile;

    fn refusal(body: &str) -> String {
        let json = format!(r#"{{"rules":[{{"match":{{"prefix":"/"}},"body":{body}}}]}}"#);
        match compile(json.as_bytes()) {
            Ok(_) => panic!("accepted: {json}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn bad_body_blocks_are_refused_with_their_path() {
        let table = [
            (
                r#"{"max_bytes":0}"#,
                "rules[0].body.max_bytes: expected 1 to",
            ),
            (
                r#"{"max_bytes":-1}"#,
                "rules[0].body.max_bytes: expected u64",
            ),
            (
                r#"{"max_bytes":"1k"}"#,
                "rules[0].body.max_bytes: expected u64",
            ),
            (
                r#"{"max_bytes":67108865}"#,
                "rules[0].body.max_bytes: expected 1 to",
            ),
            (
                r#"{"max_depth":0}"#,
                "rules[0].body.max_depth: expected 1 to 100",
            ),
            (
                r#"{"max_depth":101}"#,
                "rules[0].body.max_depth: expected 1 to 100",
            ),
            (
                r#"{"content_types":[]}"#,
                "rules[0].body.content_types: expected at least one",
            ),
            (
                r#"{"content_types":["application/json","json"]}"#,
                "rules[0].body.content_types[1]: expected a media type",
            ),
            (
                r#"{"content_types":["application/json; charset=utf-8"]}"#,
                "rules[0].body.content_types[0]: expected a media type",
            ),
            (
                r#"{"content_types":["*/*"]}"#,
                "rules[0].body.content_types[0]: expected a media type",
            ),
            (
                r#"{"content_types":"application/json"}"#,
                "rules[0].body.content_types: expected a sequence",
            ),
            (
                r#"{"content_types":["text/plain"],"json_schema":{}}"#,
                "rules[0].body.content_types[0]: `json_schema` checks JSON bodies only",
            ),
            (
                r#"{"json_schema":{"type":"objekt"}}"#,
                "rules[0].body.json_schema: the schema does not compile",
            ),
            (
                r#"{"json_schema":{"$ref":"http://example.com/s.json"}}"#,
                "rules[0].body.json_schema: the schema does not compile",
            ),
            (
                r#"{"json_schema":3}"#,
                "rules[0].body.json_schema: the schema does not compile",
            ),
            (r#"{"maxBytes":1}"#, "rules[0].body.maxBytes: unknown field"),
            (
                r#""x""#,
                "rules[0].body: expected struct RawBody, found string",
            ),
        ];
        for (body, want) in table {
            let got = refusal(body);
            assert!(
                got.starts_with(want),
                "body {body}: got {got:?}, want prefix {want:?}"
            );
        }
    }

    #[test]
    fn defaults() {
        let policy =
            compile(br#"{"rules":[{"match":{"prefix":"/"},"body":{"json_schema":true}}]}"#)
                .unwrap();
        let body = policy.rules[0].body.as_ref().unwrap();
        assert_eq!(body.max_bytes, 1024 * 1024);
        assert_eq!(body.max_depth, 32);
        assert_eq!(body.content_types.len(), 1);
        assert_eq!(body.content_types[0].as_string(), "application/json");
    }
}
