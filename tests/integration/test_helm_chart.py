"""contrib/helm/vcgate without helm: rendered by contrib/helm/render (Go's
text/template + sprig from Debian, Helm 3's semantics for what the chart
uses, pinned by its own go test), then every object validated against the
Kubernetes OpenAPI schemas by tests/integration/k8s_validate.mjs (npm
kubernetes-models: schema and unknown fields), values checked against
values.schema.json, and the two configuration files the chart writes
checked by the servers that read them (nats-server -t, vcgate -t)."""

import json
import os
import re
import shutil
import subprocess

import harness as H

CHART = os.path.join(H.TOP, "contrib", "helm", "vcgate")
RENDER_SRC = os.path.join(H.TOP, "contrib", "helm", "render")
OUT = os.path.join(H.TOP, "_build-helm")
VALIDATE = os.path.join(H.TOP, "tests", "integration", "k8s_validate.mjs")
GOENV = {"GOPATH": "/usr/share/gocode", "GO111MODULE": "off", "GOFLAGS": "",
         "GOCACHE": os.path.join(OUT, "gocache"), "GOTOOLCHAIN": "local"}

_built = []


def _plain_suite_only():
    if H.SANITIZED:
        raise H.Skip("the chart does not involve the sanitized binary; checked in the plain suite")


def renderer():
    if _built:
        return _built[0]
    if not shutil.which("go"):
        raise H.Skip("go is not installed (Debian package golang-go; .ci/run installs it)")
    if not os.path.isdir("/usr/share/gocode/src/github.com/Masterminds/sprig"):
        raise H.Skip("sprig is not installed (golang-github-masterminds-sprig-dev; .ci/run installs it)")
    os.makedirs(OUT, exist_ok=True)
    binary = os.path.join(OUT, "helm-render")
    cp = subprocess.run(["go", "build", "-o", binary, "."], cwd=RENDER_SRC, capture_output=True,
                        text=True, timeout=300, env=dict(os.environ, **GOENV))
    assert cp.returncode == 0, "go build of the renderer failed:\n" + cp.stderr
    _built.append(binary)
    return binary


def render(*args, check=True, fmt="json"):
    cp = subprocess.run([renderer(), "-o", fmt, "--name", "rtc", "--namespace", "media"] +
                        list(args) + [CHART], capture_output=True, text=True, timeout=60)
    if not check:
        return cp
    assert cp.returncode == 0, "render %s failed:\n%s" % (" ".join(args), cp.stderr)
    return json.loads(cp.stdout) if fmt == "json" else cp.stdout


def values_file(text):
    p = os.path.join(H.tmpdir(), "values.yaml")
    with open(p, "w") as f:
        f.write(text)
    return p


def validate(manifests):
    if not os.path.isdir(os.path.join(H.TOP, "tests", "integration", "node_modules", "kubernetes-models")):
        raise H.Skip("npm packages missing: cd tests/integration && npm install")
    p = os.path.join(H.tmpdir(), "manifests.json")
    with open(p, "w") as f:
        json.dump(manifests, f)
    cp = subprocess.run(["node", VALIDATE, p], capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, "Kubernetes schema validation:\n%s%s" % (
        "\n".join(l for l in cp.stdout.splitlines() if l.startswith("not ok")), cp.stderr[-2000:])
    assert "%d objects valid" % len(manifests) in cp.stdout, cp.stdout


def objects(manifests, kind):
    return [m["object"] for m in manifests if m["object"]["kind"] == kind]


def one(manifests, kind, name=None):
    found = [o for o in objects(manifests, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, "%d %s %s in %r" % (len(found), kind, name or "", [
        (m["object"]["kind"], m["object"]["metadata"]["name"]) for m in manifests])
    return found[0]


def config_of(manifests, name, key):
    return one(manifests, "ConfigMap", name)["data"][key]


FULL = """
replicaCount: 3
spread: hard
tls:
  enabled: true
  certManager:
    enabled: true
    issuerRef: {name: letsencrypt}
    dnsNames: [media.example.org]
jwt:
  enabled: true
  existingSecret: vcgate-jwt
  issuer: https://auth.example.org
serviceMonitor:
  enabled: true
  labels: {release: prometheus}
config:
  core: {max_connections: 1000000, trusted_addresses: ["10.0.0.0/8"]}
  websocket: {ping_interval: 10000}
  nats: {reconnect_wait: 1000}
"""


def test_helm_renderer_matches_helm_semantics():
    """go test of the renderer: include/nindent, tpl, toYaml, required,
    fail, missing keys, value merging and null, float64 numbers from files,
    the install order, schema validation."""
    _plain_suite_only()
    renderer()
    cp = subprocess.run(["go", "test", "."], cwd=RENDER_SRC, capture_output=True, text=True,
                        timeout=300, env=dict(os.environ, **GOENV))
    assert cp.returncode == 0, cp.stdout + cp.stderr


@H.timeout(180)
def test_helm_chart_default_values_render_valid_objects():
    _plain_suite_only()
    m = render()
    validate(m)
    kinds = sorted(o["object"]["kind"] for o in m)
    assert kinds == sorted(["ConfigMap", "ConfigMap", "Deployment", "PodDisruptionBudget",
                            "PodDisruptionBudget", "Service", "Service", "Service", "Service",
                            "StatefulSet"]), kinds
    dep = one(m, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    admin = [p for p in c["ports"] if p["name"] == "admin"][0]
    assert admin == {"name": "admin", "containerPort": 9090, "protocol": "TCP"}, c["ports"]
    assert c["startupProbe"]["httpGet"] == {"path": "/livez", "port": "admin"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "admin"}
    conf = config_of(m, "rtc-vcgate", "vcgate.conf")
    drain = int(re.search(r"drain_timeout = (\d+);", conf).group(1))
    delay = int(re.search(r"drain_delay = (\d+);", conf).group(1))
    assert delay > 0, "the chart keeps /readyz 503 for a while before closing clients"
    assert pod["terminationGracePeriodSeconds"] * 1000 > delay + drain + 2000, (pod, delay, drain)
    assert pod["securityContext"]["runAsNonRoot"] and c["securityContext"]["readOnlyRootFilesystem"]
    assert {t["topologyKey"] for t in pod["topologySpreadConstraints"]} == \
        {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    sel = dep["spec"]["selector"]["matchLabels"]
    assert all(t["labelSelector"]["matchLabels"] == sel for t in pod["topologySpreadConstraints"])
    svc = one(m, "Service", "rtc-vcgate")
    assert {(p["port"], p["protocol"]) for p in svc["spec"]["ports"]} == {(443, "TCP"), (443, "UDP")}
    assert svc["spec"]["selector"] == sel
    assert one(m, "Service", "rtc-vcgate-admin")["spec"]["type"] == "ClusterIP"
    assert one(m, "PodDisruptionBudget", "rtc-vcgate")["spec"]["selector"]["matchLabels"] == sel
    # The NATS cluster: 3 pods, each routing to all three by stable name.
    sts = one(m, "StatefulSet")
    assert sts["spec"]["replicas"] == 3 and sts["spec"]["serviceName"] == "rtc-vcgate-nats-headless"
    assert one(m, "Service", "rtc-vcgate-nats-headless")["spec"]["publishNotReadyAddresses"] is True
    nconf = config_of(m, "rtc-vcgate-nats", "nats-server.conf")
    routes = re.findall(r"nats://(rtc-vcgate-nats-\d)\.rtc-vcgate-nats-headless\.media\.svc:6222", nconf)
    assert routes == ["rtc-vcgate-nats-0", "rtc-vcgate-nats-1", "rtc-vcgate-nats-2"], nconf
    servers = re.search(r"servers = \[(.*?)\];", conf).group(1)
    assert servers.count("nats://rtc-vcgate-nats-") == 3 and ":4222" in servers, conf


@H.timeout(180)
def test_helm_chart_every_feature_renders_valid_objects():
    """TLS from a cert-manager Secret, the JWT secret as a file and as an
    environment variable, a ServiceMonitor, hard spreading, extra options."""
    _plain_suite_only()
    m = render("-f", values_file(FULL))
    every = list(m)
    cert = one(m, "Certificate")
    assert cert["spec"]["secretName"] == "rtc-vcgate-tls" and cert["spec"]["dnsNames"] == ["media.example.org"]
    sm = one(m, "ServiceMonitor")
    assert sm["spec"]["endpoints"][0]["port"] == "admin" and sm["metadata"]["labels"]["release"] == "prometheus"
    admin_labels = one(m, "Service", "rtc-vcgate-admin")["metadata"]["labels"]
    assert all(admin_labels.get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items()), \
        "the ServiceMonitor selects no admin Service: %r vs %r" % (sm["spec"]["selector"], admin_labels)
    pod = one(m, "Deployment")["spec"]["template"]["spec"]
    mounts = {v["name"]: v["mountPath"] for v in pod["containers"][0]["volumeMounts"]}
    assert mounts["tls"] == "/etc/vcgate/tls" and mounts["jwt"] == "/etc/vcgate/jwt", mounts
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["tls"]["secret"]["secretName"] == "rtc-vcgate-tls"
    assert vols["jwt"]["secret"]["secretName"] == "vcgate-jwt"
    assert all(t["whenUnsatisfiable"] == "DoNotSchedule" for t in pod["topologySpreadConstraints"])
    conf = config_of(m, "rtc-vcgate", "vcgate.conf")
    for want in ('jwt_secret_file = "/etc/vcgate/jwt/jwt-secret";', 'jwt_issuer = "https://auth.example.org";',
                 "require_token = true;", "max_connections = 1000000;",  # not 1e+06
                 'trusted_addresses = ["10.0.0.0/8"];', "ping_interval = 10000;",
                 'tls_cert = "/etc/vcgate/tls/tls.crt";', "reconnect_wait = 1000;"):
        assert want in conf, "%s not in:\n%s" % (want, conf)
    # The environment variant.
    m = render("-f", values_file(FULL), "--set", "jwt.mode=env")
    every += m
    c = one(m, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert c["env"] == [{"name": "JWT_SECRET", "valueFrom": {"secretKeyRef": {"name": "vcgate-jwt", "key": "jwt-secret"}}}], c
    assert "jwt_secret_file" not in config_of(m, "rtc-vcgate", "vcgate.conf")
    assert "jwt" not in {v["name"] for v in c["volumeMounts"]}
    # External NATS, WebTransport off: no StatefulSet, no UDP port.
    m = render("--set", "nats.enabled=false,nats.externalServers={nats://a:4222,nats://b:4222},webtransport.enabled=false")
    every += m
    assert not objects(m, "StatefulSet")
    assert 'servers = ["nats://a:4222", "nats://b:4222"];' in config_of(m, "rtc-vcgate", "vcgate.conf")
    assert {p["protocol"] for p in one(m, "Service", "rtc-vcgate")["spec"]["ports"]} == {"TCP"}
    # One validation run for the three variants (tsc's start-up dominates).
    validate(every)


def test_helm_chart_refuses_bad_values():
    _plain_suite_only()
    cases = [
        (["--set", "replicaCount=two"], "replicaCount: Invalid type"),
        (["--set", "replicaCunt=2"], "Additional property replicaCunt is not allowed"),
        (["--set", "terminationGracePeriodSeconds=7"], "must exceed drainDelayMs + drainTimeoutMs"),
        (["--set", "jwt.enabled=true"], "jwt.enabled needs jwt.existingSecret"),
        (["--set", "config.core.Bad-Key=1"], "Does not match pattern"),
        (["--set", "tls.enabled=true,tls.certManager.enabled=true,tls.certManager.issuerRef.name=x"],
         "tls.certManager.dnsNames"),
        (["--set", "service.type=Ingress"], "service.type"),
        (["--set", "nats.externalServers={http://x}"], "Does not match pattern"),
    ]
    problems = []
    for args, want in cases:
        cp = render(*args, check=False)
        if cp.returncode == 0 or want not in cp.stderr:
            problems.append("%s: exit %d, stderr %r (wanted %r)" % (args, cp.returncode, cp.stderr[-400:], want))
    assert not problems, "\n".join(problems)


def test_helm_nats_config_passes_nats_server_check():
    """nats-server -t reads the rendered nats-server.conf (with $POD_NAME as
    the pod would have it)."""
    _plain_suite_only()
    if not shutil.which("nats-server"):
        raise H.Skip("nats-server is not installed")
    m = render()
    p = os.path.join(H.tmpdir(), "nats-server.conf")
    text = config_of(m, "rtc-vcgate-nats", "nats-server.conf").replace("/var/run/nats/", os.path.dirname(p) + "/")
    with open(p, "w") as f:
        f.write(text)
    cp = subprocess.run(["nats-server", "-c", p, "-t"], capture_output=True, text=True, timeout=30,
                        env=dict(os.environ, POD_NAME="rtc-vcgate-nats-0"))
    assert cp.returncode == 0, cp.stdout + cp.stderr
    # And a broken copy is refused, so the check checks.
    with open(p, "w") as f:
        f.write(text.replace("cluster {", "cluster {\n  bogus_option: [", 1))
    cp = subprocess.run(["nats-server", "-c", p, "-t"], capture_output=True, text=True, timeout=30,
                        env=dict(os.environ, POD_NAME="x"))
    assert cp.returncode != 0, "nats-server -t accepted a broken file"


def test_helm_vcgate_config_passes_vcgate_check():
    """vcgate -t reads the vcgate.conf the chart writes, defaults and every
    feature (TLS and JWT files pointed at real temporary files)."""
    if not re.search(r"^\s+admin[.\s]", H.run_vcgate(["-P", "core"]).stdout, re.M):
        raise H.Skip("this vcgate has no core.admin listener yet, which the chart's vcgate.conf "
                     "configures for its probes")
    H.require_plugins("websocket", "webtransport", "nats")
    d = H.tmpdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "2", "-subj", "/CN=localhost", "-keyout", os.path.join(d, "tls.key"),
                    "-out", os.path.join(d, "tls.crt")], check=True, capture_output=True, timeout=30)
    with open(os.path.join(d, "jwt-secret"), "w") as f:
        f.write("a-test-secret-of-enough-length-0123456789")
    for name, args in (("defaults", []), ("full", ["-f", values_file(FULL)])):
        text = config_of(render(*args), "rtc-vcgate", "vcgate.conf")
        text = text.replace("/etc/vcgate/tls/", d + "/").replace("/etc/vcgate/jwt/", d + "/")
        p = os.path.join(d, name + ".conf")
        with open(p, "w") as f:
            f.write(text)
        cp = H.run_vcgate(["-t", "-c", p])
        assert cp.returncode == 0, "%s:\n%s%s\n%s" % (name, cp.stdout, cp.stderr, text)
