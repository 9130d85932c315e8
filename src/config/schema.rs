//! The JSON Schema of the plugin configuration, generated from the serde types of this module
//! (feature `schema`, so the wasm module never carries it). `make schema` writes it to
//! schema/api-guard.schema.json; editors and CI pipelines validate a pluginConfig with it
//! before it reaches a proxy. The compile step still checks more than a schema can say
//! (references between keys, header names, duplicates); the schema refuses what it can.

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde_json::Value;

use super::headers::RawRequireHttps;
use super::RawConfig;

impl JsonSchema for RawRequireHttps {
    fn schema_name() -> Cow<'static, str> {
        "RequireHttps".into()
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Requests that did not arrive over HTTPS (per x-forwarded-proto): false or \"off\" (default) lets them through, true or \"reject\" answers 403, \"redirect\" answers 308 to https.",
            "oneOf": [
                { "type": "boolean" },
                { "type": "string", "enum": ["off", "reject", "redirect"] }
            ]
        })
    }
}

/// The schema of the whole plugin configuration, as JSON.
pub fn config_schema() -> Value {
    let mut schema = schemars::schema_for!(RawConfig);
    schema.insert("title".to_string(), "api-guard plugin configuration".into());
    schema.insert(
        "description".to_string(),
        "The JSON configuration of the api-guard proxy-wasm filter (Envoy `configuration`, \
         Istio WasmPlugin/TrafficExtension `pluginConfig`, Envoy Gateway `config`). \
         See DESIGN.md for the meaning of each key."
            .into(),
    );
    schema.to_value()
}

/// The schema as `make schema` writes it: pretty JSON and a final newline.
pub fn config_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&config_schema()).unwrap_or_default();
    text.push('\n');
    text
}
