//! `make oci`: the OCI image layout of the module (Wasm image specification, compat variant,
//! as Istio and Envoy Gateway pull it) is complete, its digests verify, its one layer holds
//! exactly the module, and it is reproducible. The manifests pin one image digest.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::Command;

use common::{module_path, root, scratch_dir};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Runs the script `make oci` runs, into `out`; returns the manifest digest it reports.
fn build_layout(out: &Path) -> String {
    let output = Command::new("python3")
        .arg(root().join("scripts/oci_image.py"))
        .arg("build")
        .arg("--module")
        .arg(module_path())
        .arg("--out")
        .arg(out)
        .output()
        .expect("python3 runs scripts/oci_image.py");
    assert!(
        output.status.success(),
        "oci_image.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let digest_file = format!("{}.digest", out.display());
    std::fs::read_to_string(digest_file)
        .unwrap()
        .trim()
        .to_string()
}

/// Reads a blob named by a descriptor, checking its digest and size.
fn blob(layout: &Path, descriptor: &Value) -> Vec<u8> {
    let digest = descriptor["digest"].as_str().unwrap();
    let hex = digest.strip_prefix("sha256:").expect("sha256 digests");
    let bytes = std::fs::read(layout.join("blobs/sha256").join(hex))
        .unwrap_or_else(|e| panic!("blob {digest}: {e}"));
    assert_eq!(sha256_hex(&bytes), hex, "blob content matches its digest");
    assert_eq!(
        descriptor["size"].as_u64(),
        Some(bytes.len() as u64),
        "descriptor size of {digest}"
    );
    bytes
}

#[test]
fn oci_layout_holds_exactly_the_module_and_its_digests_verify() {
    let layout = scratch_dir("oci").join("oci");
    let digest = build_layout(&layout);
    let module = std::fs::read(module_path()).unwrap();

    let oci_layout: Value =
        serde_json::from_slice(&std::fs::read(layout.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(oci_layout["imageLayoutVersion"], "1.0.0");

    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(entries[0]["digest"], format!("sha256:{digest}"));
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        entries[0]["annotations"]["org.opencontainers.image.ref.name"],
        version
    );

    let manifest: Value = serde_json::from_slice(&blob(&layout, &entries[0])).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    // The compat variant of the Wasm image spec, which Istio and Envoy Gateway both read.
    assert_eq!(
        manifest["annotations"]["module.wasm.image/variant"],
        "compat"
    );
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.version"],
        version
    );

    let config_descriptor = &manifest["config"];
    assert_eq!(
        config_descriptor["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let config: Value = serde_json::from_slice(&blob(&layout, config_descriptor)).unwrap();
    assert_eq!(config["architecture"], "wasm");
    assert_eq!(config["os"], "wasip1");

    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "a single layer");
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let compressed = blob(&layout, &layers[0]);
    let mut tar_bytes = Vec::new();
    flate2::read::GzDecoder::new(compressed.as_slice())
        .read_to_end(&mut tar_bytes)
        .unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        format!("sha256:{}", sha256_hex(&tar_bytes)),
        "the config's diff_id is the uncompressed layer's digest"
    );
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    let mut files = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        files.push((name, content));
    }
    assert_eq!(files.len(), 1, "the layer holds one file");
    assert_eq!(
        files[0].0, "plugin.wasm",
        "the name Istio and Envoy Gateway look for"
    );
    assert_eq!(
        sha256_hex(&files[0].1),
        sha256_hex(&module),
        "the layer's plugin.wasm is the module"
    );

    // Nothing else in the blob store.
    let blobs = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 3, "manifest, config and layer");
}

#[test]
fn oci_layout_is_reproducible() {
    let dir = scratch_dir("oci-twice");
    let first = build_layout(&dir.join("a"));
    let second = build_layout(&dir.join("b"));
    assert_eq!(first, second, "same module, same image digest");
}

/// Every manifest that loads the module names the same image and pins the same digest,
/// in the form its CRD requires. `make pin` writes them; whether they match this build is
/// reported, not enforced (every code change changes the module; see docs/mesh.md).
#[test]
fn manifests_pin_one_image_digest() {
    let mut pins = Vec::new();
    for dir in ["envoy/istio", "envoy/gateway"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for doc in serde_norway::Deserializer::from_str(&text) {
                let doc = Value::deserialize(doc).unwrap();
                let spec = &doc["spec"];
                let (url, sha) = match doc["kind"].as_str().unwrap_or_default() {
                    "WasmPlugin" => (&spec["url"], &spec["sha256"]),
                    "TrafficExtension" => (&spec["wasm"]["url"], &spec["wasm"]["sha256"]),
                    "EnvoyExtensionPolicy" => (
                        &spec["wasm"][0]["code"]["image"]["url"],
                        &spec["wasm"][0]["code"]["image"]["sha256"],
                    ),
                    _ => continue,
                };
                let url = url
                    .as_str()
                    .unwrap()
                    .trim_start_matches("oci://")
                    .to_string();
                let sha = sha
                    .as_str()
                    .unwrap_or_else(|| panic!("{}: no sha256 pin", path.display()))
                    .to_string();
                assert!(
                    sha.len() == 64
                        && sha
                            .bytes()
                            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
                    "{}: sha256 must be 64 lowercase hex digits",
                    path.display()
                );
                pins.push((path.display().to_string(), url, sha));
            }
        }
    }
    assert!(pins.len() >= 5, "{pins:?}");
    for (path, url, sha) in &pins {
        assert_eq!(url, &pins[0].1, "{path}: same image as {}", pins[0].0);
        assert_eq!(sha, &pins[0].2, "{path}: same digest as {}", pins[0].0);
    }
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        pins[0].1.ends_with(&format!(":{version}")),
        "image tag is the crate version {version}: {}",
        pins[0].1
    );
    let current = build_layout(&scratch_dir("oci-pin").join("oci"));
    if current == pins[0].2 {
        eprintln!("manifests pin the image of this build: sha256:{current}");
    } else {
        eprintln!(
            "note: manifests pin sha256:{}, this build's image is sha256:{current}; \
             run `make pin` when releasing (docs/mesh.md)",
            pins[0].2
        );
    }
}

/// `make pin` rewrites the url and sha256 of every manifest that loads the module, and
/// nothing else (the API-key digests in the policies look alike and must stay).
#[test]
fn pin_rewrites_every_image_reference_and_nothing_else() {
    let scratch = scratch_dir("pin");
    for dir in ["envoy/istio", "envoy/gateway"] {
        std::fs::create_dir_all(scratch.join(dir)).unwrap();
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, scratch.join(dir).join(path.file_name().unwrap())).unwrap();
        }
    }
    let digest = "ab".repeat(32);
    let status = Command::new("python3")
        .arg(root().join("scripts/oci_image.py"))
        .args(["pin", "--image", "oci://registry.test/team/api-guard:9.9.9"])
        .args(["--digest", &format!("sha256:{digest}")])
        .arg("--root")
        .arg(&scratch)
        .status()
        .unwrap();
    assert!(status.success());
    let mut pinned = 0;
    for dir in ["envoy/istio", "envoy/gateway"] {
        for entry in std::fs::read_dir(scratch.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_owned();
            let before = std::fs::read_to_string(root().join(dir).join(&name)).unwrap();
            let after = std::fs::read_to_string(&path).unwrap();
            let changed: Vec<(&str, &str)> = before
                .lines()
                .zip(after.lines())
                .filter(|(b, a)| b != a)
                .collect();
            assert_eq!(before.lines().count(), after.lines().count());
            for (b, a) in &changed {
                let key = b.trim_start().split(':').next().unwrap();
                assert!(
                    key == "url" || key == "sha256",
                    "{name:?}: changed {b:?} to {a:?}"
                );
                assert!(
                    a.ends_with("registry.test/team/api-guard:9.9.9") || a.ends_with(&digest),
                    "{a}"
                );
            }
            if !changed.is_empty() {
                assert_eq!(changed.len(), 2, "{name:?}: url and sha256");
                pinned += 1;
            }
            // Istio keeps its oci:// scheme, Envoy Gateway has none.
            if dir == "envoy/istio" && !changed.is_empty() {
                assert!(after.contains("url: oci://registry.test/team/api-guard:9.9.9"));
            }
            if dir == "envoy/gateway" && !changed.is_empty() {
                assert!(after.contains("url: registry.test/team/api-guard:9.9.9"));
            }
        }
    }
    let loaders = ["envoy/istio", "envoy/gateway"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(root().join(dir)).unwrap())
        .filter(|entry| {
            let text = std::fs::read_to_string(entry.as_ref().unwrap().path()).unwrap();
            ["WasmPlugin", "TrafficExtension", "EnvoyExtensionPolicy"]
                .iter()
                .any(|kind| text.contains(&format!("kind: {kind}\n")))
        })
        .count();
    assert!(loaders >= 5);
    assert_eq!(pinned, loaders, "every manifest that loads the module");
}
