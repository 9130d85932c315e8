//! Stage 5: the request body. Size (declared and counted), media type, JSON structure
//! (syntax, UTF-8, duplicate names, depth) and JSON Schema.

pub mod json;
pub mod media;
pub mod multipart;
pub mod progress;
pub mod schema;

use serde_json::Value;

use super::screen::ThreatMode;
use super::{Denial, Reason, Request};

pub use media::{MediaRange, MediaType};
pub use progress::{BodyProgress, BodyStep};
pub use schema::Schema;

/// `max_bytes` when a `body` block leaves it out: Envoy's default buffer limit.
pub const DEFAULT_MAX_BYTES: u64 = 1024 * 1024;
/// `max_depth` when left out.
pub const DEFAULT_MAX_DEPTH: usize = 32;
/// serde_json parses with a recursion limit of 128; the structure check keeps below it.
pub const MAX_MAX_DEPTH: usize = 100;

/// Whether the request declares a content coding other than `identity` (gzip, br, ...):
/// api-guard does not decompress, so such a body cannot be checked or screened.
pub fn is_compressed(request: &Request) -> bool {
    request
        .header_values("content-encoding")
        .any(|v| !v.trim().is_empty() && !v.trim().eq_ignore_ascii_case("identity"))
}

/// Methods that carry no body by convention: a rule's schema does not demand one of them.
const BODYLESS_METHODS: [&str; 4] = ["GET", "HEAD", "DELETE", "OPTIONS"];

/// A rule's compiled `body` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyRules {
    pub max_bytes: u64,
    /// Allowed media types; empty: any.
    pub content_types: Vec<MediaRange>,
    pub max_depth: usize,
    pub schema: Option<Schema>,
}

/// What the shell does with a request's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyPlan {
    /// Nothing to check.
    Skip,
    /// Count bytes as they stream through; refuse past `max_bytes`.
    Count { max_bytes: u64 },
    /// Buffer the whole body (up to `max_bytes`), then check it.
    Buffer { max_bytes: u64 },
}

impl BodyRules {
    fn too_large() -> Denial {
        Denial::new(Reason::BodyTooLarge).with_detail("the request body is larger than allowed")
    }

    fn invalid(detail: &'static str) -> Denial {
        Denial::new(Reason::BodyInvalid).with_detail(detail)
    }

    /// The request's media type, when it is JSON.
    pub(crate) fn json_media(request: &Request) -> bool {
        request
            .header("content-type")
            .and_then(MediaType::parse)
            .is_some_and(|m| m.is_json())
    }

    /// What can be decided from the headers: the declared length, the media type, and
    /// whether a body that a schema requires is missing.
    pub fn check_headers(&self, request: &Request) -> Result<(), Denial> {
        for length in request.header_values("content-length") {
            // Envoy refuses malformed or conflicting lengths before filters run.
            if length
                .trim()
                .parse::<u64>()
                .is_ok_and(|n| n > self.max_bytes)
            {
                return Err(BodyRules::too_large());
            }
        }
        if !request.body_expected() {
            let needs_body = self.schema.is_some() && !BODYLESS_METHODS.contains(&request.method());
            if needs_body {
                return Err(BodyRules::invalid("a JSON body is required"));
            }
            return Ok(());
        }
        // Two media types: the upstream may read the other one than we check.
        if request.header_values("content-type").nth(1).is_some() {
            return Err(Denial::new(Reason::MediaType)
                .with_detail("the request declares more than one media type"));
        }
        // A compressed JSON body cannot be checked here (and would slip past the checks):
        // 415, as RFC 9110 section 15.5.16 says for an unsupported content coding.
        if is_compressed(request) && BodyRules::json_media(request) {
            return Err(Denial::new(Reason::MediaType)
                .with_detail("compressed request bodies are not accepted here"));
        }
        if !self.content_types.is_empty() {
            let media = request.header("content-type").and_then(MediaType::parse);
            let allowed = media.as_ref().is_some_and(|m| {
                self.content_types.iter().any(|range| range.matches(m))
                    // JSON is UTF-8 (RFC 8259); another declared charset is not JSON.
                    && (!m.is_json() || m.charset.as_deref().is_none_or(|c| c == "utf-8"))
            });
            if !allowed {
                return Err(Denial::new(Reason::MediaType)
                    .with_detail("the request media type is not accepted here"));
            }
        }
        Ok(())
    }

    /// How the shell handles the body of a request that passed the header checks: JSON
    /// bodies are buffered; so are form bodies when they are screened (`log`), and every body
    /// under `threats: block`, which screens bodies whatever their media type. Under `log`,
    /// other bodies keep streaming: buffering them could break large uploads that passed
    /// before (Envoy's buffer limit).
    pub fn plan(&self, request: &Request, threats: ThreatMode) -> BodyPlan {
        let form = request
            .header("content-type")
            .is_some_and(|c| multipart::essence(c) == "application/x-www-form-urlencoded");
        if !request.body_expected() {
            BodyPlan::Skip
        } else if BodyRules::json_media(request)
            || threats == ThreatMode::Block
            || (threats == ThreatMode::Log && form)
        {
            BodyPlan::Buffer {
                max_bytes: self.max_bytes,
            }
        } else {
            BodyPlan::Count {
                max_bytes: self.max_bytes,
            }
        }
    }

    /// The answer for a body that passed `max_bytes` while it arrived.
    pub fn overflow(&self) -> Denial {
        BodyRules::too_large()
    }

    /// Checks a complete body. JSON bodies (by media type) are checked for structure and
    /// against the schema; every member name and string value is passed to `on_string`.
    pub fn check_body(
        &self,
        request: &Request,
        body: &[u8],
        on_string: &mut dyn FnMut(&str),
    ) -> Result<(), Denial> {
        if u64::try_from(body.len()).map_or(true, |n| n > self.max_bytes) {
            return Err(BodyRules::too_large());
        }
        if !BodyRules::json_media(request) {
            return Ok(());
        }
        if body.is_empty() {
            if self.schema.is_some() {
                return Err(BodyRules::invalid("a JSON body is required"));
            }
            return Ok(());
        }
        let invalid = |e: json::JsonError| BodyRules::invalid(e.detail());
        let Some(schema) = &self.schema else {
            return json::check(body, self.max_depth, on_string).map_err(invalid);
        };
        // One pass checks the structure and builds the document the schema sees.
        let instance = json::parse(body, self.max_depth, on_string).map_err(invalid)?;
        schema.validate(&instance).map_err(|errors| {
            let mut denial = Denial::new(Reason::BodySchema)
                .with_detail("the body does not match the schema of this API");
            denial
                .extensions
                .insert("errors".into(), Value::Array(errors));
            denial
        })
    }
}

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod tests {
    use super::*;
    use crate::policy::testing::headers as h;
    use serde_json::json;

    fn rules(content_types: &[&str], schema: Option<Value>) -> BodyRules {
        BodyRules {
            max_bytes: 100,
            content_types: content_types
                .iter()
                .map(|c| MediaRange::parse(c).unwrap())
                .collect(),
            max_depth: 3,
            schema: schema.map(|s| Schema::compile(&s).unwrap()),
        }
    }

    fn request<'a>(headers: &'a [(String, String)], eos: bool) -> Request<'a> {
        Request::new(headers, None).with_end_of_stream(eos)
    }

    fn code(result: Result<(), Denial>) -> &'static str {
        result.err().map_or("-", |d| d.reason.code())
    }

    #[test]
    fn header_checks() {
        let json_only = rules(&["application/json"], None);
        let with_schema = rules(&["application/json"], Some(json!({"type": "object"})));
        let any = rules(&[], None);
        let table: &[(&BodyRules, &[(&str, &str)], bool, &str)] = &[
            (
                &json_only,
                &[("content-length", "101")],
                false,
                "body_too_large",
            ),
            (
                &json_only,
                &[
                    ("content-length", "100"),
                    ("content-type", "application/json"),
                ],
                false,
                "-",
            ),
            (
                &json_only,
                &[("content-type", "text/plain")],
                false,
                "media_type",
            ),
            (&json_only, &[], false, "media_type"),
            (
                &json_only,
                &[("content-type", "application/json;;")],
                false,
                "-",
            ),
            (
                &json_only,
                &[("content-type", "application/json x")],
                false,
                "media_type",
            ),
            (
                &json_only,
                &[("content-type", "application/json; charset=utf-16")],
                false,
                "media_type",
            ),
            (
                &json_only,
                &[("content-type", "Application/JSON; charset=\"UTF-8\"")],
                false,
                "-",
            ),
            // No body: the media type does not matter.
            (&json_only, &[(":method", "POST")], true, "-"),
            (&with_schema, &[(":method", "POST")], true, "body_invalid"),
            (&with_schema, &[(":method", "GET")], true, "-"),
            (&any, &[("content-type", "image/png")], false, "-"),
            (
                &any,
                &[
                    ("content-type", "application/json"),
                    ("content-encoding", "gzip"),
                ],
                false,
                "media_type",
            ),
            (
                &any,
                &[
                    ("content-type", "application/json"),
                    ("content-encoding", "identity"),
                ],
                false,
                "-",
            ),
            (
                &any,
                &[("content-type", "image/png"), ("content-encoding", "gzip")],
                false,
                "-",
            ),
            (
                &any,
                &[
                    ("content-type", "text/plain"),
                    ("content-type", "application/json"),
                ],
                false,
                "media_type",
            ),
            (&any, &[], false, "-"),
        ];
        for (rules, pairs, eos, want) in table {
            let headers = h(pairs);
            assert_eq!(
                code(rules.check_headers(&request(&headers, *eos))),
                *want,
                "{pairs:?} eos {eos}"
            );
        }
    }

    #[test]
    fn plans_buffer_only_what_is_inspected() {
        let r = rules(&[], None);
        let json = h(&[("content-type", "application/json")]);
        let text = h(&[("content-type", "text/plain")]);
        let (block, log, off) = (ThreatMode::Block, ThreatMode::Log, ThreatMode::Off);
        assert_eq!(
            r.plan(&request(&json, false), off),
            BodyPlan::Buffer { max_bytes: 100 }
        );
        // `block` buffers every body (screened whatever its media type); `log` only JSON
        // and forms, so that other bodies keep streaming.
        assert_eq!(
            r.plan(&request(&text, false), block),
            BodyPlan::Buffer { max_bytes: 100 }
        );
        for threats in [log, off] {
            assert_eq!(
                r.plan(&request(&text, false), threats),
                BodyPlan::Count { max_bytes: 100 }
            );
        }
        assert_eq!(r.plan(&request(&json, true), block), BodyPlan::Skip);
        let form = h(&[("content-type", "application/x-www-form-urlencoded; x")]);
        for threats in [block, log] {
            assert_eq!(
                r.plan(&request(&form, false), threats),
                BodyPlan::Buffer { max_bytes: 100 }
            );
        }
        assert_eq!(
            r.plan(&request(&form, false), off),
            BodyPlan::Count { max_bytes: 100 }
        );
    }

    #[test]
    fn body_checks() {
        let plain = rules(&["application/json"], None);
        let typed = rules(
            &["application/json"],
            Some(json!({"type": "object", "required": ["a"]})),
        );
        let json = h(&[("content-type", "application/json")]);
        let text = h(&[("content-type", "text/plain")]);
        let table: &[(&BodyRules, &Vec<(String, String)>, &[u8], &str)] = &[
            (&plain, &json, b"{\"a\":1}", "-"),
            (&plain, &json, b"{\"a\":1", "body_invalid"),
            (&plain, &json, b"[\"\xff\"]", "body_invalid"),
            (&plain, &json, b"{\"a\":1,\"a\":1}", "body_invalid"),
            (&plain, &json, b"[[[[]]]]", "body_invalid"),
            (&plain, &json, b"", "-"),
            (&plain, &json, &[b' '; 101], "body_too_large"),
            (&plain, &text, b"{not json", "-"),
            (&typed, &json, b"{\"a\":1}", "-"),
            (&typed, &json, b"{\"b\":1}", "body_schema"),
            (&typed, &json, b"", "body_invalid"),
        ];
        for (rules, headers, body, want) in table {
            let got = rules.check_body(&request(headers, false), body, &mut |_| {});
            assert_eq!(code(got), *want, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn schema_denials_list_errors() {
        let typed = rules(&[], Some(json!({"required": ["a"]})));
        let json = h(&[("content-type", "application/json")]);
        let denial = typed
            .check_body(&request(&json, false), b"{\"b\":\"v\"}", &mut |_| {})
            .unwrap_err();
        let body: Value = serde_json::from_str(&denial.problem_json()).unwrap();
        assert_eq!(body["status"], 400);
        assert_eq!(body["reason"], "body_schema");
        assert_eq!(
            body["errors"],
            json!([{"pointer": "", "keyword": "required"}])
        );
    }
}
