// Validate rendered Kubernetes manifests offline, two ways, against the
// OpenAPI schemas of the Kubernetes API (and of the Prometheus Operator's
// and cert-manager's CRDs) as the npm kubernetes-models packages ship them:
//
// 1. schema validation: each object through its model's validate() (ajv
//    code generated from the OpenAPI schema): types, required fields,
//    enums, formats such as int32;
// 2. unknown fields: the schemas leave additionalProperties open (as the
//    API server does unless asked for strict field validation), so a
//    misspelt field would pass (1).  The same packages' TypeScript
//    interfaces are exact, so each object is written as a typed object
//    literal and `tsc --noEmit` reports every excess property -- what
//    `kubectl apply --validate=strict` would refuse.
//
//   node k8s_validate.mjs MANIFESTS.json   (helm-render -o json output)
// Prints one line per object; exits 1 with the reasons when any fails.
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));

// apiVersion -> the package directory of its models.
function modelPath(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  if (group === "monitoring.coreos.com")
    return `@kubernetes-models/prometheus-operator/${group}/${version}/${kind}`;
  if (group === "cert-manager.io") return `@kubernetes-models/cert-manager/${group}/${version}/${kind}`;
  return group ? `kubernetes-models/${group}/${version}/${kind}` : `kubernetes-models/${version}/${kind}`;
}

const manifests = JSON.parse(readFileSync(process.argv[2], "utf8"));
const problems = [];
const typed = [];
for (const [i, { source, object }] of manifests.entries()) {
  const { apiVersion, kind } = object;
  const what = `${source}: ${kind} ${object.metadata?.name}`;
  const mod = modelPath(apiVersion, kind);
  let Model;
  try {
    Model = (await import(mod))[kind];
  } catch (e) {
    problems.push(`${what}: no schema for ${apiVersion} ${kind} (${e.message.split("\n")[0]})`);
    continue;
  }
  try {
    new Model(object).validate();
    console.log(`ok ${what}`);
  } catch (e) {
    problems.push(`${what}: ${e.message}`);
  }
  typed.push(`// ${what}\nimport type { I${kind} as T${i} } from "${mod}";\n` +
             `export const o${i}: T${i} = ${JSON.stringify(object, null, 1)};\n`);
}

// Unknown fields, through the TypeScript interfaces.
// Inside this directory, so that tsc resolves the packages from node_modules.
const dir = mkdtempSync(path.join(here, ".k8s-validate-"));
try {
  const file = path.join(dir, "manifests.ts");
  writeFileSync(file, typed.join("\n"));
  const require = createRequire(import.meta.url);
  const tsc = require.resolve("typescript/bin/tsc");
  try {
    execFileSync(process.execPath, [tsc, "--noEmit", "--strict", "--skipLibCheck",
      "--target", "es2022", "--module", "nodenext", "--moduleResolution", "nodenext",
      file], { cwd: here, encoding: "utf8", stdio: "pipe" });
  } catch (e) {
    // Name the object each error is in: the comment above its literal.
    const lines = readFileSync(file, "utf8").split("\n");
    for (const l of (e.stdout || e.message).split("\n").filter((x) => /error TS/.test(x))) {
      const m = l.match(/\((\d+),\d+\)/);
      let where = "";
      for (let n = m ? Number(m[1]) - 1 : -1; n >= 0; n--)
        if (lines[n].startsWith("// ")) { where = lines[n].slice(3); break; }
      problems.push(`${where}: ${l.replace(/^.*error TS\d+: /, "")}`);
    }
    if (!problems.length) problems.push(`tsc failed: ${e.stdout || e.message}`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

if (problems.length) {
  for (const p of problems) console.log(`not ok ${p}`);
  process.exit(1);
}
console.log(`${manifests.length} objects valid`);
