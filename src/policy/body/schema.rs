//! JSON Schema (draft 2020-12 by default; `$schema` may name drafts 4 to 2019-09) with the
//! boon crate, compiled once at configure time. No `$ref` is ever fetched: a schema refers
//! only to itself (and the standard meta-schemas boon carries).

use std::fmt;
use std::sync::Arc;

use serde_json::{json, Value};

/// The most errors a `body_schema` denial lists.
pub const MAX_LISTED_ERRORS: usize = 5;
/// Longest JSON pointer listed (a pointer may hold member names the client chose).
const MAX_POINTER_CHARS: usize = 200;
const ROOT_URL: &str = "urn:api-guard:body-schema";

/// A compiled schema. Compared and printed by its source.
#[derive(Clone)]
pub struct Schema {
    schemas: Arc<boon::Schemas>,
    index: boon::SchemaIndex,
    source: Arc<String>,
}

impl Schema {
    /// Compiles a schema; the error says why (no part of the schema is secret).
    pub fn compile(schema: &Value) -> Result<Schema, String> {
        let mut compiler = boon::Compiler::new();
        compiler.set_default_draft(boon::Draft::V2020_12);
        // Nothing is loaded from files or the network.
        compiler.use_loader(Box::new(boon::SchemeUrlLoader::new()));
        compiler
            .add_resource(ROOT_URL, schema.clone())
            .map_err(|e| describe(&e))?;
        let mut schemas = boon::Schemas::new();
        let index = compiler
            .compile(ROOT_URL, &mut schemas)
            .map_err(|e| describe(&e))?;
        Ok(Schema {
            schemas: Arc::new(schemas),
            index,
            source: Arc::new(schema.to_string()),
        })
    }

    /// Validates an instance; on failure, up to [`MAX_LISTED_ERRORS`] entries of
    /// `{"pointer": <instance location>, "keyword": <schema keyword>}`, never values.
    pub fn validate(&self, instance: &Value) -> Result<(), Vec<Value>> {
        let Err(error) = self.schemas.validate(instance, self.index) else {
            return Ok(());
        };
        let mut listed: Vec<Value> = Vec::new();
        let mut stack = vec![&error];
        while let Some(e) = stack.pop() {
            if e.causes.is_empty() {
                let keyword = match e.kind.keyword_path().map(|path| path.keyword) {
                    // boon names this one in the singular.
                    Some("additionalProperty") => "additionalProperties",
                    Some(keyword) => keyword,
                    None => match e.kind {
                        boon::ErrorKind::FalseSchema => "false",
                        _ => "schema",
                    },
                };
                let pointer: String = e
                    .instance_location
                    .to_string()
                    .chars()
                    .take(MAX_POINTER_CHARS)
                    .collect();
                let entry = json!({ "pointer": pointer, "keyword": keyword });
                if !listed.contains(&entry) {
                    listed.push(entry);
                    if listed.len() == MAX_LISTED_ERRORS {
                        break;
                    }
                }
            }
            // Depth first, in the order boon found them.
            stack.extend(e.causes.iter().rev());
        }
        Err(listed)
    }
}

impl PartialEq for Schema {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Schema {}

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schema({})", self.source)
    }
}

/// boon's compile errors name the schema location; keep the first line, without the URL
/// prefix we made up.
fn describe(error: &boon::CompileError) -> String {
    let text = format!("{error:#}");
    let text = text.lines().next().unwrap_or("invalid schema");
    let text = text.replace(ROOT_URL, "");
    format!("the schema does not compile: {text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_pointers_and_keywords_never_values() {
        let schema = Schema::compile(&json!({
            "type": "object",
            "required": ["id"],
            "properties": {
                "id": {"type": "integer"},
                "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}}
            },
            "additionalProperties": false
        }))
        .unwrap();
        assert_eq!(schema.validate(&json!({"id": 1, "tags": ["a"]})), Ok(()));
        let errors = schema
            .validate(&json!({"tags": ["secret-value", 7], "zzz": 1}))
            .unwrap_err();
        let text = Value::Array(errors.clone()).to_string();
        assert!(!text.contains("secret-value"), "{text}");
        assert!(
            errors.contains(&json!({"pointer": "", "keyword": "required"})),
            "{text}"
        );
        assert!(
            errors.contains(&json!({"pointer": "/tags/0", "keyword": "maxLength"})),
            "{text}"
        );
        assert!(
            errors.contains(&json!({"pointer": "/tags/1", "keyword": "type"})),
            "{text}"
        );
        assert!(
            errors.contains(&json!({"pointer": "", "keyword": "additionalProperties"})),
            "{text}"
        );
    }

    #[test]
    fn lists_at_most_a_few_errors() {
        let schema = Schema::compile(&json!({"items": {"type": "string"}})).unwrap();
        let errors = schema
            .validate(&json!([1, 2, 3, 4, 5, 6, 7, 8]))
            .unwrap_err();
        assert_eq!(errors.len(), MAX_LISTED_ERRORS);
    }

    #[test]
    fn bad_schemas_do_not_compile() {
        for schema in [
            json!({"type": "objekt"}),
            json!({"$ref": "#/$defs/missing"}),
            json!({"$ref": "https://example.com/remote.json"}),
            json!({"minLength": -1}),
            json!({"pattern": "("}),
            json!(5),
        ] {
            let error = Schema::compile(&schema).unwrap_err();
            assert!(error.starts_with("the schema does not compile"), "{error}");
        }
        assert!(Schema::compile(&json!(true)).is_ok());
    }
}
