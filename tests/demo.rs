//! The shipped demo: envoy/envoy.yaml (what `make run` starts) serves with its own plugin
//! configuration, and envoy/docker-compose.yaml runs that same file and module.

mod common;

use std::path::{Path, PathBuf};

use common::{root, scratch_dir, Envoy, Upstream};
use serde_json::Value;

fn yaml_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Listener, admin and demo-upstream ports are the only things a test changes, so that it
/// never collides with a `make run` on the same machine.
fn with_test_ports(mut bootstrap: Value, upstream_port: u16) -> Value {
    bootstrap["admin"]["address"]["socket_address"]["port_value"] = 0.into();
    for listener in bootstrap["static_resources"]["listeners"]
        .as_array_mut()
        .unwrap()
    {
        listener["address"]["socket_address"]["address"] = "127.0.0.1".into();
        listener["address"]["socket_address"]["port_value"] = 0.into();
    }
    for cluster in bootstrap["static_resources"]["clusters"]
        .as_array_mut()
        .unwrap()
    {
        if cluster["name"] == "demo_upstream" {
            let endpoint =
                &mut cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"];
            endpoint["address"]["socket_address"]["port_value"] = upstream_port.into();
        }
    }
    bootstrap
}

fn start(bootstrap: &Value, workdir: &Path, dir: &Path, upstream: Upstream) -> Envoy {
    let config = dir.join("envoy.json");
    std::fs::write(&config, serde_json::to_vec(bootstrap).unwrap()).unwrap();
    // The demo names its module relative to the working directory, as compose does.
    Envoy::launch_in(workdir, &config, dir, 1, &[], upstream).unwrap_or_else(|log| panic!("{log}"))
}

fn check_demo_serves(envoy: &Envoy) {
    let r = envoy
        .client()
        .must_get("/hello", &[("x-api-guard-dry-run", "forged")]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("x-powered-by"), None);
    assert_eq!(r.header("server"), None);
    assert_eq!(
        envoy.upstream.last().unwrap().header("x-api-guard-dry-run"),
        None
    );
    // The access log (stdout) carries api-guard's decision.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !envoy.stdout().contains("api_guard_decision") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let line = envoy
        .stdout()
        .lines()
        .find(|l| l.contains("/hello"))
        .map(str::to_string);
    let entry: Value = serde_json::from_str(&line.expect("an access log line for /hello")).unwrap();
    assert_eq!(entry["api_guard_decision"], "allow");
    assert_eq!(entry["status"], 200);
}

#[test]
fn demo_envoy_yaml_serves_with_its_policy() {
    let upstream = Upstream::start();
    let bootstrap = with_test_ports(yaml_file(&root().join("envoy/envoy.yaml")), upstream.port);
    let dir = scratch_dir("demo");
    // Envoy's working directory is the project root, as with `make run`.
    let config = dir.join("envoy.json");
    std::fs::write(&config, serde_json::to_vec(&bootstrap).unwrap()).unwrap();
    let envoy =
        Envoy::launch(&config, &dir, 1, &[], upstream).unwrap_or_else(|log| panic!("{log}"));
    check_demo_serves(&envoy);
}

/// The demo buffers request bodies between api-guard and the router (tests/upstream.rs shows
/// why there), with room for the largest body api-guard accepts.
#[test]
fn demo_buffers_bodies_after_api_guard() {
    let envoy_yaml = yaml_file(&root().join("envoy/envoy.yaml"));
    let filters = envoy_yaml["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"]
        .as_array()
        .unwrap();
    let names: Vec<&str> = filters
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "envoy.filters.http.wasm",
            "envoy.filters.http.buffer",
            "envoy.filters.http.router"
        ]
    );
    let buffer_max = filters[1]["typed_config"]["max_request_bytes"]
        .as_u64()
        .unwrap();
    let policy: Value = serde_json::from_str(
        filters[0]["typed_config"]["config"]["configuration"]["value"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let largest_body = policy["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["body"]["max_bytes"].as_u64())
        .max()
        .unwrap();
    assert!(buffer_max >= largest_body, "{buffer_max} < {largest_body}");
}

/// No Docker engine runs here, so this test reads the compose file, checks that it mounts the
/// project's envoy.yaml and module where that envoy.yaml expects them and publishes its
/// listener, then lays out the container's files as the mounts say and runs Envoy there.
#[test]
fn compose_runs_the_same_envoy_yaml_and_module() {
    let compose = yaml_file(&root().join("envoy/docker-compose.yaml"));
    let envoy_yaml = yaml_file(&root().join("envoy/envoy.yaml"));
    let service = &compose["services"]["envoy"];

    // The image is the Envoy version the tests run.
    let makefile = std::fs::read_to_string(root().join("Makefile")).unwrap();
    let version = makefile
        .lines()
        .find_map(|l| l.strip_prefix("ENVOY_VERSION ?= "))
        .unwrap()
        .trim();
    assert_eq!(service["image"], format!("envoyproxy/envoy:v{version}"));

    // Mounts: host path (relative to envoy/) -> container path.
    let mounts: Vec<(PathBuf, String)> = service["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let parts: Vec<&str> = v.as_str().unwrap().split(':').collect();
            (root().join("envoy").join(parts[0]), parts[1].to_string())
        })
        .collect();
    let mounted_at = |host: &Path| {
        let host = host.canonicalize().unwrap();
        mounts
            .iter()
            .find(|(h, _)| h.canonicalize().ok().as_deref() == Some(&host))
            .map(|(_, c)| c.clone())
            .unwrap_or_else(|| panic!("compose does not mount {}", host.display()))
    };
    let workdir = service["working_dir"].as_str().unwrap();
    let command: Vec<&str> = service["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let config_in_container = command[command.iter().position(|a| *a == "-c").unwrap() + 1];
    assert_eq!(
        mounted_at(&root().join("envoy/envoy.yaml")),
        config_in_container
    );

    let filters = &envoy_yaml["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"];
    let module = filters[0]["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"]
        .as_str()
        .unwrap();
    assert_eq!(
        mounted_at(&common::module_path()),
        format!("{workdir}/{module}"),
        "the module is mounted where envoy.yaml looks for it"
    );

    // The listener's port is published.
    let listen = envoy_yaml["static_resources"]["listeners"][0]["address"]["socket_address"]
        ["port_value"]
        .as_u64()
        .unwrap();
    let ports: Vec<String> = service["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    assert!(ports.contains(&format!("{listen}:{listen}")), "{ports:?}");

    // The upstream shares Envoy's network, so envoy.yaml's loopback cluster reaches it.
    let upstream_service = &compose["services"]["upstream"];
    assert_eq!(upstream_service["network_mode"], "service:envoy");
    assert_eq!(
        upstream_service["volumes"][0],
        "./demo_upstream.py:/demo_upstream.py:ro"
    );
    assert_eq!(upstream_service["command"][1], "/demo_upstream.py");

    // Lay out the container's files as the mounts say, and run Envoy there.
    let container = scratch_dir("compose-root");
    for (host, inside) in &mounts {
        let target = container.join(inside.trim_start_matches('/'));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(host, &target).unwrap();
    }
    let upstream = Upstream::start();
    let config = yaml_file(&container.join(config_in_container.trim_start_matches('/')));
    let bootstrap = with_test_ports(config, upstream.port);
    let dir = scratch_dir("compose");
    let envoy = start(
        &bootstrap,
        &container.join(workdir.trim_start_matches('/')),
        &dir,
        upstream,
    );
    check_demo_serves(&envoy);
}

/// A demo token from the comments of envoy/envoy.yaml (`#   DEMO_READER=...`).
fn demo_token(name: &str) -> String {
    let text = std::fs::read_to_string(root().join("envoy/envoy.yaml")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("#   {name}=")))
        .unwrap_or_else(|| panic!("envoy/envoy.yaml has no {name}"))
        .trim()
        .to_string()
}

/// The reader's token cannot write through a method the write rule does not list: PATCH and
/// DELETE on /api/orders are 405, not the read rule's, with the demo's connection-manager
/// path settings and with Envoy's defaults (the settings removed).
#[test]
fn demo_policy_keeps_other_methods_from_the_read_rule() {
    let reader = format!("Bearer {}", demo_token("DEMO_READER"));
    for envoy_defaults in [false, true] {
        let upstream = Upstream::start();
        let mut bootstrap =
            with_test_ports(yaml_file(&root().join("envoy/envoy.yaml")), upstream.port);
        if envoy_defaults {
            let hcm = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
                [0]["typed_config"]
                .as_object_mut()
                .unwrap();
            for key in [
                "normalize_path",
                "merge_slashes",
                "path_with_escaped_slashes_action",
            ] {
                assert!(hcm.remove(key).is_some(), "the demo sets {key}");
            }
        }
        let dir = scratch_dir("demo-methods");
        let envoy = start(&bootstrap, &root(), &dir, upstream);
        let client = envoy.client();
        for method in ["PATCH", "DELETE", "PUT"] {
            for path in ["/api/orders", "/api/orders/1", "/api//orders;x/1"] {
                let r = client
                    .request(
                        method,
                        path,
                        &[
                            ("authorization", &reader),
                            ("content-type", "application/json"),
                        ],
                        Some(br#"{"qty":100000,"admin":true}"#),
                    )
                    .unwrap();
                let want = if method == "PUT" { 403 } else { 405 };
                assert_eq!(r.status, want, "{method} {path}: {}", r.text());
                if want == 405 {
                    assert_eq!(r.header("allow"), Some("GET, HEAD"));
                    assert_eq!(r.json()["reason"], "method_not_allowed");
                }
            }
        }
        assert_eq!(envoy.upstream.count(), 0, "defaults={envoy_defaults}");
        let r = client.must_get("/api/orders", &[("authorization", &reader)]);
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            !envoy.log().contains("configuration warning"),
            "{}",
            envoy.log()
        );
    }
}
