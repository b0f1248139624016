"""README.md's configuration reference against the option tables vcgate
prints with -P: every option the binary accepts is documented under its
section, nothing documented is unknown to the binary, and the defaults
written in the README are the binary's defaults."""

import os
import re

import harness as H

README = os.path.join(H.TOP, "README.md")

# README heading -> the name -P takes.
SECTIONS = {
    "### `core`": "core",
    "### `transports`: `websocket`": "websocket",
    "### `transports`: `webtransport`": "webtransport",
    "### `bus`: `nats`": "nats",
}

# Defaults the README states in words because they depend on the install
# or the worker, or that the plugin applies when the list is empty (-P
# prints the empty list): checked by name only.
DESCRIBED = {("core", "plugin_dir"), ("nats", "connection_name"), ("nats", "servers"),
             ("websocket", "webroot")}


def readme_tables():
    """{section: {option: default text}} from the README's option tables."""
    out, cur = {}, None
    with open(README, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("#"):
                cur = SECTIONS.get(line.strip())
                if cur:
                    out[cur] = {}
                continue
            if cur is None or not line.startswith("| `"):
                continue
            cells = [c.strip() for c in line.strip("|").split("|")]
            default = cells[1]
            # "`user`, `password` / `token`" documents several options at once.
            for name in re.findall(r"`([a-z_0-9]+)`", cells[0]):
                out[cur][name] = default
    return out


def binary_table(section):
    """{option: default text} from `vcgate -P section`."""
    cp = H.run_vcgate(["-P", section])
    assert cp.returncode == 0, (section, cp.returncode, cp.stderr)
    opts = {}
    for line in cp.stdout.splitlines():
        m = re.match(r"  ([a-z_0-9]+) = (.*?);\s+#", line)
        if m and m.group(1) != "plugin":
            opts[m.group(1)] = m.group(2)
    assert opts, (section, cp.stdout)
    return opts


def normalise(v):
    v = v.strip().strip("`")
    if v in ('""', "unset", "[]"):
        return "unset"
    return re.sub(r"\s+", "", v)


def test_readme_documents_every_option_with_its_default():
    """Each section's table lists exactly the binary's options, with its defaults."""
    H.require_plugins("websocket")
    tables = readme_tables()
    problems = []
    for section in SECTIONS.values():
        if section != "core" and not H.plugin_built(section):
            continue  # a plugin this build does not have
        assert section in tables, "README.md has no option table for %s" % section
        doc, real = tables[section], binary_table(section)
        for name in sorted(set(real) - set(doc)):
            problems.append("%s.%s is accepted but not documented" % (section, name))
        for name in sorted(set(doc) - set(real)):
            problems.append("%s.%s is documented but unknown to vcgate" % (section, name))
        for name in sorted(set(doc) & set(real)):
            if (section, name) in DESCRIBED:
                continue
            d, r = normalise(doc[name]), normalise(real[name])
            if d != r:
                problems.append("%s.%s: README says %s, vcgate -P says %s"
                                % (section, name, doc[name], real[name]))
    assert not problems, "\n".join(problems)


SAMPLE = os.path.join(H.TOP, "conf", "vcgate.conf")
# Sample values that are examples, not defaults (checked by name only).
SAMPLE_EXAMPLES = {("core", "plugin_dir"), ("websocket", "webroot"), ("nats", "servers")}


def sample_sections():
    """{section: {option: value text}} from conf/vcgate.conf, commented
    options included (they document defaults that are "unset")."""
    out = {"core": {}, "websocket": {}, "webtransport": {}, "nats": {}}
    cur = None
    text = open(SAMPLE, encoding="utf-8").read()
    for line in text.splitlines():
        s = line.strip().lstrip("#").strip()
        if line.startswith("core = {"):
            cur = "core"
        elif line.startswith("transports"):
            cur = None
        elif 'plugin = "websocket"' in s:
            cur = "websocket"
        elif 'plugin = "webtransport"' in s:
            cur = "webtransport"
        elif 'plugin = "nats"' in s:
            cur = "nats"
        elif line.startswith("bus = {"):
            cur = None
        if cur is None:
            continue
        for name, value in re.findall(r"\b([a-z_0-9]+) = ([^;]*);", s):
            if name in ("plugin", "admin"):
                continue
            out[cur].setdefault(name, value)
        if cur == "core" and "admin = { listen" in s:
            out[cur]["admin.listen"] = "example"
    return out


def test_sample_config_shows_every_option_with_its_default():
    """conf/vcgate.conf lists every option of the binary, with its default
    (unset ones as commented examples), and nothing unknown."""
    H.require_plugins("websocket")
    sample = sample_sections()
    problems = []
    for section in ("core", "websocket", "webtransport", "nats"):
        if section != "core" and not H.plugin_built(section):
            continue
        real = binary_table(section)
        doc = sample[section]
        for name in sorted(set(real) - set(doc)):
            problems.append("%s.%s is missing from conf/vcgate.conf" % (section, name))
        for name in sorted(set(doc) - set(real) - {"admin.listen"}):
            problems.append("%s.%s in conf/vcgate.conf is unknown to vcgate" % (section, name))
        for name in sorted(set(doc) & set(real)):
            if (section, name) in SAMPLE_EXAMPLES or normalise(real[name]) == "unset":
                continue
            if normalise(doc[name]) != normalise(real[name]):
                problems.append("%s.%s: conf/vcgate.conf says %s, vcgate -P says %s"
                                % (section, name, doc[name], real[name]))
    cp = H.run_vcgate(["-t", "-c", SAMPLE])
    if cp.returncode != 0 and "not found" not in cp.stderr:
        problems.append("vcgate -t refuses the sample: " + cp.stderr.strip())
    assert not problems, "\n".join(problems)
