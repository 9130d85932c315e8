//! Mesh delivery: every plugin configuration shipped in a manifest (envoy/istio, envoy/gateway)
//! or in the demo envoy.yaml loads in a real Envoy and answers requests; the manifests agree
//! on one policy and one pinned image.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use common::{loopback_cluster, root, Envoy, EnvoyOptions};
use serde::Deserialize;
use serde_json::{json, Value};

/// Every YAML document of every manifest under envoy/istio, envoy/gateway and
/// envoy/ratelimit, with its file.
fn manifests() -> Vec<(PathBuf, Value)> {
    let mut files = Vec::new();
    for dir in ["envoy/istio", "envoy/gateway", "envoy/ratelimit"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut docs = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_norway::Deserializer::from_str(&text) {
            let value = Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()));
            if !value.is_null() {
                docs.push((path.clone(), value));
            }
        }
    }
    docs
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The api-guard plugin configuration a manifest document carries, if any: WasmPlugin
/// `spec.pluginConfig`, TrafficExtension `spec.wasm.pluginConfig`, EnvoyExtensionPolicy
/// `spec.wasm[].config` (one per entry).
fn plugin_configs_of(doc: &Value) -> Vec<Value> {
    let spec = &doc["spec"];
    match doc["kind"].as_str().unwrap_or_default() {
        "WasmPlugin" => vec![spec["pluginConfig"].clone()],
        "TrafficExtension" => vec![spec["wasm"]["pluginConfig"].clone()],
        "EnvoyExtensionPolicy" => spec["wasm"]
            .as_array()
            .map(|entries| entries.iter().map(|w| w["config"].clone()).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Envoy clusters that EnvoyPatchPolicy documents add, by name.
fn patched_clusters() -> Vec<Value> {
    let mut clusters = Vec::new();
    for (_, doc) in manifests() {
        if doc["kind"] != "EnvoyPatchPolicy" {
            continue;
        }
        for patch in doc["spec"]["jsonPatches"].as_array().unwrap() {
            if patch["type"] == "type.googleapis.com/envoy.config.cluster.v3.Cluster"
                && patch["operation"]["op"] == "add"
                && patch["operation"]["path"] == ""
            {
                clusters.push(patch["operation"]["value"].clone());
            }
        }
    }
    clusters
}

/// The plugin configuration of every api-guard filter in an Envoy bootstrap.
fn plugin_configs_in_bootstrap(value: &Value, found: &mut Vec<Value>) {
    match value {
        Value::Object(map) => {
            if map.get("name").and_then(Value::as_str) == Some("envoy.filters.http.wasm") {
                let text = map["typed_config"]["config"]["configuration"]["value"]
                    .as_str()
                    .unwrap_or("{}");
                found.push(serde_json::from_str(text).unwrap());
            }
            map.values()
                .for_each(|v| plugin_configs_in_bootstrap(v, found));
        }
        Value::Array(items) => items
            .iter()
            .for_each(|v| plugin_configs_in_bootstrap(v, found)),
        _ => {}
    }
}

/// One shipped configuration: where it comes from, and the plugin configuration.
struct Shipped {
    origin: String,
    config: Value,
    /// From Envoy Gateway manifests, whose JWKS cluster comes from an EnvoyPatchPolicy.
    gateway: bool,
}

/// Every shipped plugin configuration: manifests, and the demo envoy.yaml (which
/// envoy/docker-compose.yaml runs unchanged, as tests/demo.rs checks).
fn shipped_configs() -> Vec<Shipped> {
    let mut shipped = Vec::new();
    for (path, doc) in manifests() {
        for config in plugin_configs_of(&doc) {
            assert!(
                config.is_object(),
                "{}: {} without an object configuration",
                relative(&path),
                doc["kind"]
            );
            shipped.push(Shipped {
                origin: format!("{} ({})", relative(&path), doc["kind"].as_str().unwrap()),
                config,
                gateway: path.starts_with(root().join("envoy/gateway")),
            });
        }
    }
    let text = std::fs::read_to_string(root().join("envoy/envoy.yaml")).unwrap();
    let bootstrap: Value = serde_norway::from_str(&text).unwrap();
    let mut found = Vec::new();
    plugin_configs_in_bootstrap(&bootstrap, &mut found);
    assert_eq!(found.len(), 1, "envoy/envoy.yaml has one api-guard filter");
    for config in found {
        shipped.push(Shipped {
            origin: "envoy/envoy.yaml".to_string(),
            config,
            gateway: false,
        });
    }
    shipped
}

/// Names of the Envoy clusters a plugin configuration sends requests through.
fn clusters_named_by(config: &Value) -> Vec<String> {
    let mut names = Vec::new();
    if let Some(providers) = config["jwt_providers"].as_object() {
        for provider in providers.values() {
            if let Some(name) = provider["remote_jwks"]["cluster"].as_str() {
                names.push(name.to_string());
            }
        }
    }
    if let Some(limits) = config["rate_limits"].as_object() {
        for limit in limits.values() {
            if let Some(name) = limit["global"]["cluster"].as_str() {
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

/// Keys of the config contract whose features are built on other branches (JWT providers;
/// API keys and rate limits; body, threats and IP). Until they land, this build refuses them
/// with "not supported yet"; the load test tolerates exactly those refusals.
fn is_unbuilt_feature_key(path: &str) -> bool {
    let top = ["jwt_providers", "api_keys", "rate_limits", "ip"];
    if top.iter().any(|k| {
        path == *k || path.starts_with(&format!("{k}.")) || path.starts_with(&format!("{k}["))
    }) {
        return true;
    }
    // rules[N].rate_limit, rules[N].body..., rules[N].threats, rules[N].ip...
    if let Some(rest) = path.strip_prefix("rules[") {
        if let Some((index, key)) = rest.split_once("].") {
            let key = key.split(['.', '[']).next().unwrap_or_default();
            return index.bytes().all(|b| b.is_ascii_digit())
                && ["rate_limit", "body", "threats", "ip"].contains(&key);
        }
    }
    false
}

/// The path of a "not supported yet" refusal of an unbuilt feature's key in Envoy's log.
fn unbuilt_feature_refusal(log: &str) -> Option<String> {
    let line = log
        .lines()
        .find(|l| l.contains("api-guard: configuration refused: "))?;
    let detail = line.split("api-guard: configuration refused: ").nth(1)?;
    let (path, message) = detail.split_once(": ")?;
    (message.starts_with("not supported yet") && is_unbuilt_feature_key(path))
        .then(|| path.to_string())
}

#[test]
fn unbuilt_feature_refusals_are_recognised_and_nothing_else() {
    let line =
        |rest: &str| format!("[info][wasm] wasm log api-guard: configuration refused: {rest}");
    for (log, want) in [
        (
            line("jwt_providers: not supported yet by this build"),
            Some("jwt_providers"),
        ),
        (
            line("api_keys: not supported yet by this build"),
            Some("api_keys"),
        ),
        (
            line("rules[1].body: not supported yet"),
            Some("rules[1].body"),
        ),
        (
            line("rules[12].rate_limit: not supported yet"),
            Some("rules[12].rate_limit"),
        ),
        (
            line("jwt_providers.corp.from_cookies: not supported yet"),
            Some("jwt_providers.corp.from_cookies"),
        ),
        (
            line("rules[0].threats: not supported yet"),
            Some("rules[0].threats"),
        ),
        (line("headers.profile: not supported yet"), None),
        (line("rules[0].auth[0]: unknown method `corp`"), None),
        (line("jwt_providers.corp.issuer: expected a URL"), None),
        (line("rules[x].body: not supported yet"), None),
        ("Envoy exited with no api-guard line".to_string(), None),
    ] {
        assert_eq!(unbuilt_feature_refusal(&log).as_deref(), want, "{log}");
    }
}

/// A JWKS endpoint on loopback standing in for the identity provider (no keys: tokens fail,
/// which the load test does not need).
fn start_jwks_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let body = r#"{"keys":[]}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// The Envoy Gateway patch's cluster, unchanged but for its address: loopback instead of DNS.
fn patched_cluster_on_loopback(cluster: &Value, port: u16) -> Value {
    let mut cluster = cluster.clone();
    cluster["type"] = "STATIC".into();
    cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        ["socket_address"] = json!({ "address": "127.0.0.1", "port_value": port });
    cluster
}

/// Requests that the first rule requiring credentials for GET protects, for the strict check.
fn protected_get_path(config: &Value) -> Option<String> {
    config["rules"].as_array()?.iter().find_map(|rule| {
        let methods = rule["match"]["methods"].as_array();
        let gets = methods.is_none_or(|m| m.iter().any(|v| v == "GET"));
        if rule.get("auth").is_none() || !gets {
            return None;
        }
        rule["match"]["prefix"]
            .as_str()
            .or(rule["match"]["path"].as_str())
            .map(str::to_string)
    })
}

#[test]
fn every_shipped_plugin_config_loads_in_envoy_and_answers() {
    let shipped = shipped_configs();
    assert!(
        shipped.len() >= 6,
        "expected the Istio, Envoy Gateway and demo configurations, found {}",
        shipped.len()
    );
    let jwks_port = start_jwks_server();
    let patched = patched_clusters();
    let mut loaded = Vec::new();
    let mut refused = Vec::new();
    for item in &shipped {
        let text = serde_json::to_string(&item.config).unwrap();
        let mut options = EnvoyOptions::new(&text);
        for name in clusters_named_by(&item.config) {
            let cluster = if item.gateway {
                let from_patch = patched
                    .iter()
                    .find(|c| c["name"] == name.as_str())
                    .unwrap_or_else(|| {
                        panic!("{}: no EnvoyPatchPolicy adds cluster `{name}`", item.origin)
                    });
                patched_cluster_on_loopback(from_patch, jwks_port)
            } else {
                // What Istio builds from envoy/istio/serviceentry-idp.yaml, on loopback.
                loopback_cluster(&name, jwks_port)
            };
            options = options.cluster(cluster);
        }
        match Envoy::try_start(options) {
            Ok(envoy) => {
                let r = envoy.client().must_get("/healthz", &[]);
                assert_eq!(r.status, 200, "{}: {}", item.origin, r.text());
                assert_eq!(
                    r.header("x-content-type-options"),
                    Some("nosniff"),
                    "{}: hardened",
                    item.origin
                );
                if let Some(path) = protected_get_path(&item.config) {
                    let r = envoy.client().must_get(&path, &[]);
                    assert_eq!(
                        r.status, 401,
                        "{}: GET {path} without credentials",
                        item.origin
                    );
                }
                loaded.push(item.origin.clone());
            }
            Err(log) => match unbuilt_feature_refusal(&log) {
                Some(path) => refused.push(format!("{} (at `{path}`)", item.origin)),
                None => panic!("{} was refused by Envoy:\n{log}", item.origin),
            },
        }
    }
    eprintln!("loaded and answered: {loaded:#?}");
    if !refused.is_empty() {
        eprintln!(
            "refused as `not supported yet` by this build (features on other branches): {refused:#?}"
        );
    }
    // The headers-only manifest and the demo use built features only: always strict.
    for strict in ["envoy/istio/wasmplugin-hardening.yaml", "envoy/envoy.yaml"] {
        assert!(
            loaded.iter().any(|o| o.starts_with(strict)),
            "{strict} must load: loaded {loaded:?}"
        );
    }
}

/// The realistic deployments (Istio ingress and sidecar, TrafficExtension, Envoy Gateway)
/// carry one and the same policy, so a change to one that is not made to all shows here.
#[test]
fn mesh_manifests_share_one_policy() {
    let shipped = shipped_configs();
    let full: Vec<&Shipped> = shipped
        .iter()
        .filter(|s| s.config.get("jwt_providers").is_some())
        // The demo envoy.yaml has a policy of its own (a local demo issuer).
        .filter(|s| s.origin.starts_with("envoy/istio/") || s.origin.starts_with("envoy/gateway/"))
        .collect();
    let origins: Vec<&str> = full.iter().map(|s| s.origin.as_str()).collect();
    for want in [
        "envoy/istio/wasmplugin-ingress.yaml",
        "envoy/istio/wasmplugin-sidecar.yaml",
        "envoy/istio/trafficextension-ingress.yaml",
        "envoy/gateway/envoyextensionpolicy.yaml",
    ] {
        assert!(
            origins.iter().any(|o| o.starts_with(want)),
            "{want}: {origins:?}"
        );
    }
    for other in &full[1..] {
        assert_eq!(
            other.config, full[0].config,
            "{} differs from {}",
            other.origin, full[0].origin
        );
    }
    // The Istio-style cluster name is what the ServiceEntry makes and the patch adds.
    let clusters = clusters_named_by(&full[0].config);
    assert_eq!(clusters, ["outbound|443||idp.example.com"]);
    let patched = patched_clusters();
    assert!(patched.iter().any(|c| c["name"] == clusters[0].as_str()));
    let entry = manifests()
        .into_iter()
        .find(|(_, d)| d["kind"] == "ServiceEntry")
        .map(|(_, d)| d)
        .unwrap();
    assert_eq!(entry["spec"]["hosts"][0], "idp.example.com");
    assert_eq!(entry["spec"]["ports"][0]["number"], 443);
}

/// Runs tests/crd/validate.mjs (Istio's and Envoy Gateway's CRD schemas from npm, installed
/// by `make crd-validators`) over documents; returns its per-document results.
fn crd_validate(docs: &[(String, Value)]) -> Vec<Value> {
    let dir = root().join("tests/crd");
    assert!(
        dir.join("node_modules/@kubernetes-models/istio").exists(),
        "the CRD schemas are not installed: run `make crd-validators` (make test does)"
    );
    let input: Vec<Value> = docs
        .iter()
        .map(|(file, doc)| json!({ "file": file, "doc": doc }))
        .collect();
    let mut child = std::process::Command::new("node")
        .arg(dir.join("validate.mjs"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("node runs (it installs with npm)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "validate.mjs gave no report ({e}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let results = report["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), docs.len());
    results
}

#[test]
fn manifests_validate_against_istio_and_envoy_gateway_crd_schemas() {
    let docs: Vec<(String, Value)> = manifests()
        .into_iter()
        .map(|(path, doc)| (relative(&path), doc))
        .collect();
    let kinds: Vec<&str> = docs
        .iter()
        .map(|(_, d)| d["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "WasmPlugin",
        "TrafficExtension",
        "ServiceEntry",
        "DestinationRule",
        "EnvoyExtensionPolicy",
        "EnvoyPatchPolicy",
        "Deployment",
        "Service",
        "ConfigMap",
    ] {
        assert!(kinds.contains(&kind), "{kind} shipped: {kinds:?}");
    }
    let results = crd_validate(&docs);
    let failures: Vec<&Value> = results
        .iter()
        .filter(|r| !r["errors"].as_array().unwrap().is_empty())
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The validators are not a no-op: documents that break the CRDs are refused.
#[test]
fn crd_validation_refuses_broken_manifests() {
    let find = |kind: &str| {
        manifests()
            .into_iter()
            .find(|(_, d)| d["kind"] == kind)
            .map(|(_, d)| d)
            .unwrap()
    };
    let plugin = find("WasmPlugin");
    let extension = find("TrafficExtension");
    let policy = find("EnvoyExtensionPolicy");
    let entry = find("ServiceEntry");
    let mut broken = Vec::new();
    let mut add = |what: &str, mut doc: Value, change: &dyn Fn(&mut Value)| {
        change(&mut doc);
        broken.push((what.to_string(), doc));
    };
    add("unknown WasmPlugin field", plugin.clone(), &|d| {
        d["spec"]["failClose"] = true.into()
    });
    add("bad failStrategy", plugin.clone(), &|d| {
        d["spec"]["failStrategy"] = "FAIL_CLOSED".into()
    });
    add("upper-case sha256", plugin.clone(), &|d| {
        d["spec"]["sha256"] = "E".repeat(64).into()
    });
    add("no url", plugin, &|d| {
        d["spec"].as_object_mut().unwrap().remove("url");
    });
    add("unknown TrafficExtension wasm field", extension, &|d| {
        d["spec"]["wasm"]["phase"] = "AUTHN".into()
    });
    add("bad code type", policy.clone(), &|d| {
        d["spec"]["wasm"][0]["code"]["type"] = "OCI".into()
    });
    add("unknown EnvoyExtensionPolicy field", policy, &|d| {
        d["spec"]["wasm"][0]["failClosed"] = true.into()
    });
    add("port as a string", entry, &|d| {
        d["spec"]["ports"][0]["number"] = "443".into()
    });
    for result in crd_validate(&broken) {
        assert!(
            !result["errors"].as_array().unwrap().is_empty(),
            "accepted: {}",
            result["file"]
        );
    }
}
