// Validates Kubernetes manifests against the CRD schemas of Istio and Envoy Gateway, as
// published on npm by kubernetes-models (@kubernetes-models/istio: Istio 1.29's
// crd-all.gen.yaml; @kubernetes-models/envoy-gateway: Envoy Gateway's API types), and
// Kubernetes' own Deployment, Service and ConfigMap (kubernetes-models).
//
// Input (stdin): a JSON array of {"file": "...", "doc": {...}}. Output (stdout): one JSON
// object {"results": [{"file", "kind", "name", "errors": [...]}]}. Exit 1 if any has errors.
//
// Two checks per document:
//  1. schema: the package's validator, compiled from the CRD's openAPIV3Schema (types,
//     enums, patterns, required fields, lengths, ranges);
//  2. fields: the document as a TypeScript object literal typed with the package's generated
//     interface, so that a field the CRD does not define is an error, as the API server's
//     strict field validation (kubectl's default) makes it.
// TrafficExtension (Istio >= 1.30) is not in the packages yet: its `wasm` block has the
// fields of a WasmPlugin spec with the same schema, so it is checked as the WasmPlugin made of
// `wasm` plus the targeting fields, and its own top-level fields and one-of rule are checked
// here.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const here = path.dirname(fileURLToPath(import.meta.url));

const MODELS = {
  "extensions.istio.io/v1alpha1/WasmPlugin": "@kubernetes-models/istio",
  "networking.istio.io/v1/ServiceEntry": "@kubernetes-models/istio",
  "networking.istio.io/v1/DestinationRule": "@kubernetes-models/istio",
  "gateway.envoyproxy.io/v1alpha1/EnvoyExtensionPolicy": "@kubernetes-models/envoy-gateway",
  "gateway.envoyproxy.io/v1alpha1/EnvoyPatchPolicy": "@kubernetes-models/envoy-gateway",
  // Kubernetes' own kinds (the rate limit service's manifests), from the API's OpenAPI.
  "apps/v1/Deployment": "kubernetes-models",
  "v1/Service": "kubernetes-models",
  "v1/ConfigMap": "kubernetes-models",
};

// The TrafficExtension spec of Istio 1.30+ (extensions.istio.io/v1alpha1): top-level fields,
// and the fields it shares with WasmPlugin's spec.
const TRAFFIC_EXTENSION_FIELDS = ["lua", "match", "phase", "priority", "selector", "targetRefs", "wasm"];
const TRAFFIC_EXTENSION_TARGETING = ["match", "phase", "priority", "selector", "targetRefs"];
const TRAFFIC_EXTENSION_WASM_FIELDS = [
  "failStrategy", "imagePullPolicy", "imagePullSecret", "pluginConfig", "pluginName",
  "sha256", "type", "url", "verificationKey", "vmConfig",
];

function asWasmPlugin(doc) {
  const spec = doc.spec ?? {};
  const errors = [];
  for (const key of Object.keys(spec)) {
    if (!TRAFFIC_EXTENSION_FIELDS.includes(key)) errors.push(`spec.${key}: unknown field`);
  }
  for (const key of Object.keys(spec.wasm ?? {})) {
    if (!TRAFFIC_EXTENSION_WASM_FIELDS.includes(key)) errors.push(`spec.wasm.${key}: unknown field`);
  }
  if (("wasm" in spec) === ("lua" in spec)) errors.push("spec: exactly one of wasm or lua must be set");
  if ("selector" in spec && "targetRefs" in spec) errors.push("spec: only one of targetRefs or selector can be set");
  const wasmSpec = { ...(spec.wasm ?? {}) };
  for (const key of TRAFFIC_EXTENSION_TARGETING) {
    if (key in spec) wasmSpec[key] = spec[key];
  }
  const plugin = { apiVersion: "extensions.istio.io/v1alpha1", kind: "WasmPlugin", metadata: doc.metadata, spec: wasmSpec };
  return { plugin, errors };
}

// `group/version/kind`, or `version/kind` for the core group: also the module's path.
const kindOf = (key) => key.split("/").pop();

async function schemaErrors(key, doc) {
  const pkg = MODELS[key];
  const kind = kindOf(key);
  const module = await import(`${pkg}/${key}`);
  try {
    new module[kind](doc).validate();
    return [];
  } catch (e) {
    const details = e.errors ?? e.details ?? [];
    if (details.length) {
      return details.map((d) => `${d.instancePath || "(root)"}: ${d.message ?? d.keyword} ${JSON.stringify(d.params ?? {})}`);
    }
    return [String(e.message ?? e)];
  }
}

// Type-checks every document as a literal of its CRD's interface; returns errors by index.
function fieldErrors(checks) {
  const dir = path.join(here, "node_modules", ".api-guard-check");
  fs.mkdirSync(dir, { recursive: true });
  // One file per run: tests run validations in parallel.
  const file = path.join(dir, `manifests-${process.pid}.ts`);
  const lines = [];
  checks.forEach(({ key, doc }, i) => {
    const pkg = MODELS[key];
    const kind = kindOf(key);
    lines.push(`import type { I${kind} as T${i} } from "${pkg}/${key}";`);
    lines.push(`export const doc${i}: T${i} = ${JSON.stringify(doc, null, 1)};`);
  });
  fs.writeFileSync(file, lines.join("\n") + "\n");
  const program = ts.createProgram([file], {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
  });
  const byDoc = checks.map(() => []);
  const source = program.getSourceFile(file);
  for (const diagnostic of ts.getPreEmitDiagnostics(program)) {
    const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n");
    if (diagnostic.file !== source) {
      throw new Error(`type declarations did not load: ${message}`);
    }
    const text = source.text.slice(0, diagnostic.start);
    const match = [...text.matchAll(/export const doc(\d+)/g)].pop();
    const index = match ? Number(match[1]) : 0;
    byDoc[index].push(message.split("\n").slice(-1)[0]);
  }
  fs.rmSync(file, { force: true });
  return byDoc;
}

const input = JSON.parse(fs.readFileSync(0, "utf8"));
const results = [];
const checks = [];
for (const { file, doc } of input) {
  const result = { file, kind: doc.kind, name: doc.metadata?.name, errors: [] };
  let key = `${doc.apiVersion}/${doc.kind}`;
  let target = doc;
  if (key === "extensions.istio.io/v1alpha1/TrafficExtension") {
    const { plugin, errors } = asWasmPlugin(doc);
    result.errors.push(...errors);
    result.checkedAs = "WasmPlugin (TrafficExtension's wasm block)";
    key = "extensions.istio.io/v1alpha1/WasmPlugin";
    target = plugin;
  }
  if (!(key in MODELS)) {
    result.errors.push(`no CRD schema known for ${doc.apiVersion} ${doc.kind}`);
  } else {
    result.errors.push(...(await schemaErrors(key, target)));
    checks.push({ key, doc: target, result });
  }
  results.push(result);
}
if (checks.length) {
  fieldErrors(checks).forEach((errors, i) => checks[i].result.errors.push(...errors));
}
process.stdout.write(JSON.stringify({ results }, null, 1) + "\n");
process.exit(results.some((r) => r.errors.length) ? 1 : 0);
