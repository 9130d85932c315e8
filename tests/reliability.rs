//! Faults and operations in a real Envoy: configuration pushed through a watched LDS file
//! under load (a valid update switches policy with no failed request, an invalid one is
//! rejected while the old policy keeps serving), a crashed VM under each failure policy,
//! and an unreachable upstream.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{bootstrap, free_port, scratch_dir, Client, Envoy, EnvoyOptions, Upstream};
use serde_json::{json, Value};

/// The api-guard entry (`config` of the Wasm filter) inside a harness bootstrap or listener.
fn wasm_config(listener: &mut Value) -> &mut Value {
    let filters = listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
        .as_array_mut()
        .unwrap();
    let wasm = filters
        .iter_mut()
        .find(|f| f["name"] == "envoy.filters.http.wasm")
        .unwrap();
    &mut wasm["typed_config"]["config"]
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts Envoy from the harness bootstrap after `patch` changed api-guard's Wasm config.
fn start_patched(plugin_config: &str, patch: impl FnOnce(&mut Value)) -> Envoy {
    let upstream = Upstream::start();
    let dir = scratch_dir("reliability");
    let mut boot = bootstrap(
        &EnvoyOptions::new(plugin_config),
        upstream.port,
        &dir.join("access.log"),
    );
    patch(wasm_config(&mut boot["static_resources"]["listeners"][0]));
    let path = dir.join("envoy.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&boot).unwrap()).unwrap();
    Envoy::launch(&path, &dir, 1, &[], upstream).unwrap_or_else(|log| panic!("{log}"))
}

fn panic_hook(config: &mut Value) {
    config["vm_config"]["environment_variables"] =
        json!({ "key_values": { "API_GUARD_TEST_PANIC_PATH": "/__crash" } });
}

#[test]
fn a_crashed_vm_fails_closed_and_fail_reload_brings_it_back() {
    // FAIL_RELOAD: the recommended policy. Requests are refused while the VM is down, and a
    // fresh VM takes over after the backoff.
    let envoy = start_patched("{}", |c| {
        panic_hook(c);
        c["failure_policy"] = "FAIL_RELOAD".into();
        c["reload_config"] =
            json!({ "backoff": { "base_interval": "0.2s", "max_interval": "1s" } });
    });
    let client = envoy.client();
    assert_eq!(client.must_get("/before", &[]).status, 200);
    let crashed = client.must_get("/__crash", &[]);
    assert!(
        crashed.status >= 500,
        "a crashed VM never lets the request through: {}",
        crashed.status
    );
    let before = envoy.upstream.count();
    wait_until("the VM to be reloaded", || {
        let r = client.must_get("/after", &[]);
        assert!(r.status == 200 || r.status >= 500, "{}", r.status);
        r.status == 200 && r.header("x-content-type-options") == Some("nosniff")
    });
    // Every request the upstream saw after the crash went through a working api-guard.
    assert!(envoy.upstream.received()[before..]
        .iter()
        .all(|r| r.path == "/after"));
    assert!(envoy.prometheus_value("envoy_wasm_api_guard_vm_reload_success") >= 1);
    assert!(
        envoy.log().contains("deliberate panic"),
        "the panic hook logs at critical first"
    );

    // FAIL_CLOSED (Envoy's default): the worker's requests fail until Envoy restarts;
    // none passes unguarded.
    let closed = start_patched("{}", panic_hook);
    let client = closed.client();
    client.must_get("/__crash", &[]);
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..5 {
        let r = client.must_get("/after", &[]);
        assert!(r.status >= 500, "fail closed: {}", r.status);
    }
    assert_eq!(
        closed
            .upstream
            .received()
            .iter()
            .filter(|r| r.path == "/after")
            .count(),
        0
    );
}

#[test]
fn an_unreachable_upstream_is_envoys_503_and_still_hardened() {
    let upstream = Upstream::start();
    let dir = scratch_dir("no-upstream");
    let mut boot = bootstrap(
        &EnvoyOptions::new("{}"),
        free_port(),
        &dir.join("access.log"),
    );
    boot["static_resources"]["clusters"][0]["connect_timeout"] = "0.25s".into();
    let path = dir.join("envoy.json");
    std::fs::write(&path, serde_json::to_vec(&boot).unwrap()).unwrap();
    let envoy = Envoy::launch(&path, &dir, 1, &[], upstream).unwrap_or_else(|log| panic!("{log}"));
    let r = envoy.client().must_get("/x", &[]);
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(envoy.prometheus_value("api_guard_allow"), 1);
}

/// Every answer seen under load: status and the `x-policy` header naming the policy.
type Answers = Arc<Mutex<Vec<(u16, Option<String>)>>>;

/// A listener served from a watched LDS file, with api-guard configured by `plugin_config`.
fn lds_listener(template: &Value, port: u16, plugin_config: &str) -> Value {
    let mut listener = template.clone();
    listener["address"]["socket_address"]["port_value"] = port.into();
    wasm_config(&mut listener)["configuration"]["value"] = plugin_config.into();
    listener["@type"] = "type.googleapis.com/envoy.config.listener.v3.Listener".into();
    listener
}

fn push_lds(dir: &Path, listener: &Value) {
    // Written aside and moved in: Envoy reloads on the move, never on a half-written file.
    let staged = dir.join("lds.staged.json");
    std::fs::write(
        &staged,
        serde_json::to_vec(&json!({ "resources": [listener] })).unwrap(),
    )
    .unwrap();
    std::fs::rename(&staged, dir.join("lds.json")).unwrap();
}

#[test]
fn configuration_pushed_under_load_switches_without_failures_and_bad_pushes_are_rejected() {
    let upstream = Upstream::start();
    let dir = scratch_dir("lds");
    let mut boot = bootstrap(
        &EnvoyOptions::new("{}"),
        upstream.port,
        &dir.join("access.log"),
    );
    let template = boot["static_resources"]["listeners"][0].clone();
    boot["static_resources"]["listeners"] = json!([]);
    boot["node"] = json!({ "id": "api-guard-test", "cluster": "api-guard-test" });
    boot["dynamic_resources"] = json!({
        "lds_config": {
            "resource_api_version": "V3",
            "path_config_source": { "path": dir.join("lds.json").display().to_string() }
        }
    });
    let port = free_port();
    let policy =
        |name: &str| format!(r#"{{"headers":{{"response_set":{{"x-policy":"{name}"}}}}}}"#);
    push_lds(&dir, &lds_listener(&template, port, &policy("a")));
    let path = dir.join("envoy.json");
    std::fs::write(&path, serde_json::to_vec(&boot).unwrap()).unwrap();
    let envoy = Envoy::launch(&path, &dir, 2, &[], upstream).unwrap_or_else(|log| panic!("{log}"));
    let client = Client::new(port);
    assert_eq!(client.must_get("/", &[]).header("x-policy"), Some("a"));

    // Load: four clients, each a fresh connection per request, recording every answer.
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Answers = Arc::default();
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, seen, failures) = (stop.clone(), seen.clone(), failures.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match client.request("GET", "/load", &[], None) {
                        Ok(r) => seen
                            .lock()
                            .unwrap()
                            .push((r.status, r.header("x-policy").map(str::to_string))),
                        Err(e) => failures.lock().unwrap().push(e.to_string()),
                    }
                }
            })
        })
        .collect();
    let policy_seen = |name: &str| {
        seen.lock()
            .unwrap()
            .last()
            .and_then(|(_, p)| p.clone())
            .as_deref()
            == Some(name)
    };

    std::thread::sleep(Duration::from_millis(300));
    push_lds(&dir, &lds_listener(&template, port, &policy("b")));
    wait_until("policy b to serve", || policy_seen("b"));
    std::thread::sleep(Duration::from_millis(300));
    // By now every worker serves b: whatever is answered from here on must be b.
    let settled = seen.lock().unwrap().len();

    // An invalid update is rejected by Envoy (api-guard refuses it) and b keeps serving.
    let rejected_before = envoy.prometheus_value("envoy_listener_manager_lds_update_rejected");
    push_lds(&dir, &lds_listener(&template, port, r#"{"mode":"bogus"}"#));
    wait_until("the bad update to be rejected", || {
        envoy.prometheus_value("envoy_listener_manager_lds_update_rejected") > rejected_before
    });
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }

    let seen = seen.lock().unwrap();
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "requests failed during the pushes: {failures:?}"
    );
    assert!(seen.len() > 20, "the load ran: {} requests", seen.len());
    let bad: Vec<_> = seen.iter().filter(|(s, _)| *s != 200).collect();
    assert!(bad.is_empty(), "unexpected statuses: {bad:?}");
    // Every answer came from policy a or b: never from the refused one, never from none.
    // Around the switch, answers from both may interleave (workers take the update one after
    // the other, and concurrent requests finish out of order); once settled, only b.
    assert!(seen
        .iter()
        .all(|(_, p)| matches!(p.as_deref(), Some("a") | Some("b"))));
    assert_eq!(seen[0].1.as_deref(), Some("a"));
    assert!(seen[settled..]
        .iter()
        .all(|(_, p)| p.as_deref() == Some("b")));
    assert!(
        seen.len() > settled + 10,
        "the load went on through the bad push"
    );
    assert!(envoy
        .wait_for_log("mode: unknown variant `bogus`")
        .iter()
        .any(|l| l.contains("configuration refused")));
    assert_eq!(client.must_get("/", &[]).header("x-policy"), Some("b"));
}
