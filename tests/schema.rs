//! The published JSON Schema (schema/api-guard.schema.json) is the one the Rust config types
//! generate; every shipped example config validates against it; configs the filter refuses
//! for reasons a schema can express (unknown keys, wrong types, bad enum values, ranges,
//! patterns) are refused by it too.

use std::path::PathBuf;

use api_guard::config::schema::{config_schema, config_schema_text};
use serde::Deserialize;
use serde_json::{json, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("schema/api-guard.schema.json")).unwrap(),
    )
    .unwrap();
    jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema")
}

#[test]
fn committed_schema_is_the_generated_one() {
    let committed =
        std::fs::read_to_string(root().join("schema/api-guard.schema.json")).unwrap_or_default();
    assert!(
        committed == config_schema_text(),
        "schema/api-guard.schema.json is out of date: run `make schema` and commit it"
    );
    assert_eq!(
        config_schema()["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
}

/// Plugin configurations in shipped files: manifests, the demo envoy.yaml, README and
/// docs/global-rate-limits.md examples.
fn shipped_examples() -> Vec<(String, Value)> {
    let mut found = Vec::new();
    for dir in ["envoy/istio", "envoy/gateway"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap();
            for doc in serde_norway::Deserializer::from_str(&text) {
                let doc = Value::deserialize(doc).unwrap();
                let config = match doc["kind"].as_str().unwrap_or_default() {
                    "WasmPlugin" => doc["spec"]["pluginConfig"].clone(),
                    "TrafficExtension" => doc["spec"]["wasm"]["pluginConfig"].clone(),
                    "EnvoyExtensionPolicy" => doc["spec"]["wasm"][0]["config"].clone(),
                    _ => continue,
                };
                found.push((path.display().to_string(), config));
            }
        }
    }
    let envoy_yaml = std::fs::read_to_string(root().join("envoy/envoy.yaml")).unwrap();
    let bootstrap: Value = serde_norway::from_str(&envoy_yaml).unwrap();
    let filter = &bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"][0];
    let text = filter["typed_config"]["config"]["configuration"]["value"]
        .as_str()
        .unwrap();
    found.push((
        "envoy/envoy.yaml".into(),
        serde_json::from_str(text).unwrap(),
    ));
    for doc in ["README.md", "docs/global-rate-limits.md"] {
        let text = std::fs::read_to_string(root().join(doc)).unwrap();
        for block in text.split("```json\n").skip(1) {
            let body = block.split("```").next().unwrap();
            if let Ok(value @ Value::Object(_)) = serde_json::from_str::<Value>(body) {
                if value.get("rules").is_some() || value.get("headers").is_some() {
                    found.push((doc.into(), value));
                }
            }
        }
    }
    found.push(("the empty config".into(), json!({})));
    found
}

#[test]
fn every_shipped_example_validates() {
    let validator = validator();
    let examples = shipped_examples();
    assert!(examples.len() >= 8, "{}", examples.len());
    for (origin, config) in &examples {
        let errors: Vec<String> = validator
            .iter_errors(config)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{origin}: {errors:#?}");
    }
}

#[test]
fn configs_the_filter_refuses_are_refused_by_the_schema_where_it_can_say_so() {
    let validator = validator();
    let refused = [
        r#"{"bogus": 1}"#,
        r#"{"mode": "maybe"}"#,
        r#"{"mode": 3}"#,
        r#"{"threat_scan_max_bytes": 10}"#,
        r#"{"threat_scan_max_bytes": 67108865}"#,
        r#"{"threat_scan_max_bytes": "1MiB"}"#,
        r#"{"rules": "x"}"#,
        r#"{"rules": [{}]}"#,
        r#"{"rules": [{"match": {"prefix": 5}}]}"#,
        r#"{"rules": [{"match": {"prefix": "/a", "regex": "x"}}]}"#,
        r#"{"rules": [{"match": {"prefix": "a"}}]}"#,
        r#"{"rules": [{"match": {"path": "/a?b"}}]}"#,
        r#"{"rules": [{"match": {"prefix": "/", "methods": ["get"]}}]}"#,
        r#"{"rules": [{"match": {"prefix": "/"}, "name": "a b"}]}"#,
        r#"{"rules": [{"match": {"prefix": "/"}, "name": 12}]}"#,
        r#"{"rules": [{"match": {"prefix": "/"}, "mode": "loud"}]}"#,
        r#"{"rules": [{"match": {"prefix": "/"}, "auth": "corp"}]}"#,
        r#"{"rules": [{"match": {"prefix": "/"}, "extra": true}]}"#,
        r#"{"headers": {"profile": "lax"}}"#,
        r#"{"headers": {"extra": 1}}"#,
        r#"{"headers": {"response_remove": "server"}}"#,
        r#"{"headers": {"response_set": {"x-a": 1}}}"#,
        r#"{"headers": {"require_https": "yes"}}"#,
        r#"{"headers": {"require_https": 1}}"#,
        r#"{"log": {"decisions": "some"}}"#,
        r#"{"log": {"level": "debug"}}"#,
        r#"{"client_ip": {"xff_trusted_hops": 17}}"#,
        r#"{"client_ip": {"xff_trusted_hops": -1}}"#,
        r#"{"client_ip": {"hops": 1}}"#,
        r#"{"default": "block"}"#,
        r#"{"default": true}"#,
        r#"{"rules": [{"match": {"prefix": "/", "ignore_case": "yes"}}]}"#,
        r#"{"rules": [{"match": {"prefix": "/", "methods": ["GET"]}, "other_methods": "block"}]}"#,
        r#"{"rules": [{"match": {"prefix": "/api;v=1"}}]}"#,
        r#"{"rules": [{"match": {"prefix": "/a\\b"}}]}"#,
    ];
    for text in refused {
        assert!(
            api_guard::config::compile(text.as_bytes()).is_err(),
            "the filter accepts {text}: the sample is wrong"
        );
        let value: Value = serde_json::from_str(text).unwrap();
        assert!(
            !validator.is_valid(&value),
            "the schema accepts {text}, which the filter refuses"
        );
    }
    // What only the compile step can know (references, duplicates, header semantics) is
    // left to it; the schema accepts these.
    for text in [
        r#"{"rules": [{"match": {"prefix": "/"}, "auth": ["nobody"]}]}"#,
        r#"{"rules": [{"match": {"prefix": "/"}, "name": "a"}, {"match": {"prefix": "/"}, "name": "a"}]}"#,
        r#"{"headers": {"response_set": {"content-length": "1"}}}"#,
        r#"{"rules": [{"match": {"prefix": "/"}, "other_methods": "deny"}]}"#,
        r#"{"rules": [{"match": {"prefix": "/a//b/../c"}}]}"#,
    ] {
        assert!(
            api_guard::config::compile(text.as_bytes()).is_err(),
            "{text}"
        );
        assert!(
            validator.is_valid(&serde_json::from_str(text).unwrap()),
            "{text}"
        );
    }
}
